"""The train job and the cached stages it trains first: a teacher (AGKD-BML, ATAT), a transfer
source (the suites' black-box column) and the Cascade source whose iter_FGSM images cascade
training injects. A stage is an ordinary run, trained once per setting and reused."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from robustlab.config import STAGE_SEEDS, Config, config_from_dict
from robustlab.data import ClassIndex, Dataset, Split
from robustlab.defenses import FrozenTeacher
from robustlab.errors import UserError
from robustlab.experiment.build import (
    build_defense,
    build_model,
    check_model,
    load_data,
    load_run,
    make_batches,
    model_from_checkpoint,
    robust_monitor,
    seed_everything,
    training_eps,
)
from robustlab.experiment.rundir import RunDir
from robustlab.io import atomic_write_text
from robustlab.models import Classifier
from robustlab.models.own import EXTERNAL
from robustlab.train import (
    DistInfo,
    Run,
    dist_from_env,
    fit,
    init_distributed,
    load_checkpoint,
    load_weights,
    resolve_device,
)
from robustlab.train.fit import say
from robustlab.train.metrics import tensorboard_writer


def train(cfg: Config, *, resume: bool = False, force: bool = False,
          log: Callable[[str], None] = say, callbacks=()) -> Run:
    """Train the run `cfg` describes (single process or one rank under torchrun)."""
    dist = dist_from_env()
    device = resolve_device(cfg.train.device, dist.local_rank)
    init_distributed(dist, device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.tensorboard:
        tensorboard_writer()  # a missing package fails before anything is trained or written
    run_dir = RunDir(cfg.run_dir)
    run_dir.check(cfg, resume=resume, force=force, dist=dist)
    ds = load_data(cfg)
    objective = build_defense(cfg, ds)
    probe = build_model(cfg, ds)  # a bad model name or option fails here, before the run directory exists
    if cfg.model.name == EXTERNAL:  # your own model: it must fit the data and the recipe's terms
        check_model(probe, objective, ds, cfg)
    run_dir.prepare(cfg, resume=resume, force=force, dist=dist)
    quiet = log if dist.is_main else (lambda _: None)  # one process speaks
    # Before seeding: a teacher trained here must not change the student's initialisation.
    teacher = build_teacher(cfg, ds, objective, device, quiet, resume=resume, write=dist.is_main)
    data = make_batches(cfg, ds, dist, device)
    bank = None
    if objective.needs_bank:  # before seeding too: it may train the source stage
        bank = cascade_bank(cfg, ds, data.train.split, device, dist, quiet)
    elif cfg.defense.source:
        raise UserError(f"defense.source is set, but recipe {cfg.defense.recipe!r} injects no saved "
                        "images; remove defense.source or use recipe cascade")
    seed_everything(cfg.seed)
    model = build_model(cfg, ds)
    if cfg.defense.init_from_teacher:
        init_from_teacher(model, teacher, cfg)
    data.monitor = robust_monitor(cfg, ds)
    # partners come from the training split
    objective.prepare(class_index=ClassIndex(data.train.split), bank=bank)
    title = model.arch.get("class", cfg.model.name)  # your own model: its class
    quiet(f"{cfg.name}: {title} on {ds.name} ({len(data.train) * cfg.data.batch_size} "
          f"train images/epoch, {len(ds.test)} test), recipe {cfg.defense.recipe}, {device}"
          + (f", {dist.world_size} processes" if dist.enabled else ""))
    if data.monitor is not None:
        quiet(monitor_note(cfg, ds, len(data.monitor.y)))
    return fit(model, objective, data, cfg, device=device, files=run_dir.files(), resume=resume, dist=dist,
               log=quiet, callbacks=callbacks, teacher=teacher)


def monitor_note(cfg: Config, ds: Dataset, images: int) -> str:
    """What the epoch lines' robust_acc measures, and what to expect of it."""
    held = "validation" if cfg.data.val_fraction else "last test"
    note = (f"robust_acc: PGD-{cfg.train.monitor_steps} accuracy at eps {training_eps(cfg, ds):.4g} on "
            f"{images} held-out ({held}) images")
    if cfg.defense.recipe == "standard":
        note += "; near 0 is expected of a standard-trained model (it is not defended)"
    return note


def check_fits(model: Classifier, ds: Dataset, what: str, key: str) -> None:
    """A UserError unless `model` takes `ds`'s images into its classes (a teacher, a source)."""
    theirs = (model.num_classes, model.arch.get("in_channels", ds.in_channels))
    if theirs != (ds.num_classes, ds.in_channels):
        raise UserError(f"{what} takes {theirs[1]}-channel images into {theirs[0]} classes, but "
                        f"{ds.name} has {ds.in_channels} channels and {ds.num_classes} classes; give "
                        f"{key} a model trained on this data set")


def init_from_teacher(model: Classifier, teacher: FrozenTeacher | None, cfg: Config) -> None:
    """Copy the teacher's weights into the student (ATAT Sec. 3.2). A resumed run loads its own
    checkpoint over them afterwards, so only a fresh run starts from the teacher."""
    if teacher is None:
        raise UserError(f"defense.init_from_teacher is set, but recipe {cfg.defense.recipe!r} has no "
                        "teacher; remove it or use a recipe with a teacher term (atat, agkd_bml)")
    load_weights(model, {"arch": teacher.model.arch, "model": teacher.model.state_dict()},
                 "teacher (defense.init_from_teacher)")


# (section, key, default) of config keys added after stages were first named.
LATER_KEYS = (("defense", "source", None), ("defense", "init_from_teacher", False),
              ("defense", "forward", None), ("train", "label_smoothing_mode", "all"))


def stage_config(cfg: Config, role: str, seed_offset: int, recipe: str = "standard") -> Config:
    """The config of a stage trained with `recipe` (at `cfg`'s eps) and `cfg`'s data, model,
    optimizer and epochs (seed + offset * `STAGE_SEEDS`: never a run's seed), named
    <out_dir>/_<role>_<data>_<model>_<hash of its config>. Stages cached before stage seeds left
    the runs' space (seed + offset) have other names and are trained again once."""
    stage = config_from_dict(cfg.to_dict())
    stage.seed = cfg.seed + seed_offset * STAGE_SEEDS
    stage.defense = type(cfg.defense)(recipe=recipe, eps=cfg.defense.eps if recipe != "standard" else None)
    stage.train.monitor_images = 0
    stage.train.label_smoothing, stage.train.label_smoothing_mode = 0.0, "all"
    key = stage.to_dict()
    # Where and how it runs and logs does not make another stage.
    for section, field in [("data", "data_dir"), ("train", "device"), ("train", "threads"),
                           ("train", "tensorboard"), ("train", "compile")]:
        key[section].pop(field, None)
    key.pop("name"), key.pop("out_dir")
    # Keys added later, at their defaults, are left out: stages named before keep their names.
    for section, field, default in LATER_KEYS:
        if key[section].get(field, default) == default:
            key[section].pop(field, None)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    stage.name = f"_{role}_{cfg.data.name}_{cfg.model.name}_{digest}"
    return stage


def _finished_stage(stage: Config) -> Classifier | None:
    checkpoint = RunDir(stage.run_dir).checkpoint("last")
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        if state["epoch"] >= stage.train.epochs:
            return model_from_checkpoint(state)
    return None


def trained_stage(cfg: Config, role: str, seed_offset: int, log: Callable[[str], None] = say,
                   title: str | None = None, recipe: str = "standard") -> Classifier:
    """A model trained with `recipe` (`stage_config`), once as a named stage and reused by every
    run with the same settings; resumable like any run."""
    stage = stage_config(cfg, role, seed_offset, recipe)
    model = _finished_stage(stage)
    if model is not None:
        return model
    log(f"training the {title or role} {stage.name} ({recipe}, {stage.train.epochs} epochs; cached for "
        "later runs)")
    return train(stage, resume=True, log=log).model


def standard_source(cfg: Config, device, log: Callable[[str], None] = say) -> Classifier:
    """The default transfer source: a standard-trained model of the same architecture on the
    same data, another seed (a cached `trained_stage`)."""
    return trained_stage(cfg, "source", 1, log, title="transfer source").to(device).eval()


CASCADE_SOURCE = "cascade-source"


def cascade_bank(cfg: Config, ds: Dataset, split: Split, device, dist: DistInfo,
                 log: Callable[[str], None] = say):
    """The saved iter_FGSM images of the training split that cascade training injects (the Cascade
    paper Sec. 6), from the already defended `defense.source` (default: a `bidirection` stage
    with this run's settings, seed + 2, as the paper's P2), frozen: each read draws its eps from
    1..floor(255 eps)/255 (`SourceImages`)."""
    from robustlab.attacks.image_bank import SourceImages

    eps = training_eps(cfg, ds)
    max_eps = max(1, int(eps * 255 + 1e-6))
    if not cfg.defense.source:
        stage = stage_config(cfg, CASCADE_SOURCE, 2, "bidirection")
        trained_stage(cfg, CASCADE_SOURCE, 2, log, title="cascade source", recipe="bidirection")
    loaded = load_run(cfg.defense.source or stage.run_dir, "last", cfg.data.data_dir)
    model, checkpoint = loaded.model, loaded.checkpoint.resolve()
    check_fits(model, ds, f"the cascade source ({checkpoint})", "defense.source")
    log(f"cascade: iter_FGSM images (eps 1..{max_eps}/255, drawn per use) from {checkpoint}")
    return SourceImages(FrozenTeacher(model).to(device).model, split.images, split.labels, max_eps)


TEACHER = "teacher"


def saved_teacher(cfg: Config) -> Classifier | None:
    """The teacher a run used (recorded in its teacher.json), or None when it had none or the file
    is gone; never trains one."""
    record = RunDir(cfg.run_dir).teacher_record
    if not record.is_file():
        return None
    checkpoint = Path(json.loads(record.read_text())["checkpoint"])
    return load_run(checkpoint, "last", cfg.data.data_dir).model if checkpoint.is_file() else None


def build_teacher(cfg: Config, ds: Dataset, objective, device, log: Callable[[str], None] = say,
                  resume: bool = False, write: bool = True) -> FrozenTeacher | None:
    """The frozen teacher a recipe's terms read (AGKD-BML, ATAT): `defense.teacher` (a run
    directory or checkpoint), else a standard model trained once as the `teacher` stage. The
    checkpoint used is recorded in the run's teacher.json, so a resumed run (even with more
    epochs, which would name another stage) keeps the same teacher."""
    if not objective.needs_teacher:
        if cfg.defense.teacher:
            raise UserError(f"defense.teacher is set, but no term of recipe {cfg.defense.recipe!r} "
                            "reads a teacher; remove defense.teacher or add a teacher term (attention_kd)")
        return None
    record = RunDir(cfg.run_dir).teacher_record
    if resume and record.is_file():
        checkpoint = json.loads(record.read_text())["checkpoint"]
        model, where = load_run(checkpoint, "last", cfg.data.data_dir).model, checkpoint
    elif cfg.defense.teacher:
        loaded = load_run(cfg.defense.teacher, "last", cfg.data.data_dir)
        model, where = loaded.model, str(loaded.checkpoint)
    else:
        model = trained_stage(cfg, TEACHER, 2, log)
        where = str(RunDir(stage_config(cfg, TEACHER, 2).run_dir).checkpoint("last"))
    check_fits(model, ds, f"the teacher ({where})", "defense.teacher")
    if write:
        atomic_write_text(record, json.dumps({"checkpoint": where}) + "\n")
    log(f"teacher: {model.arch.get('name', type(model).__name__)} from {where} (frozen)")
    return FrozenTeacher(model).to(device)
