"""From a `Config` to objects, and the jobs the CLI runs: train a run, evaluate a checkpoint.

This is the only module that knows every layer; the CLI parses arguments and calls it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from robustlab.config import Config, config_from_dict, read_yaml, save_config
from robustlab.data import Batches, ClassIndex, Dataset, Split, load_dataset, validation_split
from robustlab.defenses import FrozenTeacher, build_objective
from robustlab.errors import UserError
from robustlab.io import atomic_write_text
from robustlab.models import Classifier, create_model
from robustlab.train import (
    DistInfo,
    Run,
    TrainData,
    accuracy,
    dist_from_env,
    fit,
    init_distributed,
    load_checkpoint,
    load_weights,
    resolve_device,
)
from robustlab.train.distributed import barrier
from robustlab.train.fit import say
from robustlab.train.monitors import RobustMonitor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _first(split: Split, limit: int | None, seed: int) -> Split:
    """A seeded random subset of `limit` samples (all of them when limit is None or larger)."""
    if limit is None or limit >= len(split):
        return split
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.subset(order[:limit])


def load_data(cfg: Config) -> Dataset:
    ds = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir, **cfg.data.options)
    train = _first(ds.train, cfg.data.train_limit, cfg.seed)
    test = _first(ds.test, cfg.data.test_limit, cfg.seed + 1)
    return dataclasses.replace(ds, train=train, test=test)


def build_model(cfg: Config, ds: Dataset) -> Classifier:
    return create_model(
        cfg.model.name, num_classes=ds.num_classes, in_channels=ds.in_channels,
        image_size=ds.image_size, mean=ds.mean, std=ds.std, **cfg.model.options,
    )


def model_from_checkpoint(state: dict) -> Classifier:
    """Rebuild the architecture a checkpoint names and load its weights."""
    model = create_model(**state["arch"])
    load_weights(model, state)
    return model


def make_batches(cfg: Config, ds: Dataset, dist: DistInfo | None = None, device="cpu") -> TrainData:
    dist = dist or DistInfo()
    augment = cfg.data.augment
    if augment is None:  # the CIFAR/SVHN papers crop and flip; the 28x28 grey papers do not
        augment = ds.in_channels == 3 and ds.image_size >= 32
    train, evals = ds.train, {}
    if cfg.data.val_fraction > 0:
        train, val = validation_split(ds.train, cfg.data.val_fraction, cfg.seed)
        evals["val"] = Batches(val, cfg.data.eval_batch_size, shuffle=False, device=device)
    evals["test"] = Batches(ds.test, cfg.data.eval_batch_size, shuffle=False, device=device)
    train_batches = Batches(
        train, cfg.data.batch_size, shuffle=True, seed=cfg.seed, augment=augment, drop_last=True,
        rank=dist.rank, world_size=dist.world_size, device=device,
    )
    return TrainData(train_batches, evals)


def training_eps(cfg: Config, ds: Dataset) -> float:
    """defense.eps, or the data set's default budget (DEFAULT_EPS)."""
    return cfg.defense.eps if cfg.defense.eps is not None else DEFAULT_EPS.get(ds.name, 0.1)


def build_defense(cfg: Config, ds: Dataset):
    """The recipe's objective at the run's eps, options and extra terms."""
    return build_objective(cfg.defense.recipe, eps=training_eps(cfg, ds),
                           label_smoothing=cfg.train.label_smoothing,
                           label_smoothing_mode=cfg.train.label_smoothing_mode,
                           forward=cfg.defense.forward, terms=cfg.defense.terms, **cfg.defense.options)


def robust_monitor(cfg: Config, ds: Dataset) -> RobustMonitor | None:
    """PGD-k accuracy at the training eps on fixed held-out images, checked every evaluated
    epoch: the validation split when there is one, else the *last* N test images, so the
    evaluation suites (the first N) never score the images that picked best_robust.pt."""
    from robustlab.attacks import ATTACKS

    n = cfg.train.monitor_images
    if n == 0:
        return None
    if cfg.data.val_fraction:
        held = _first(validation_split(ds.train, cfg.data.val_fraction, cfg.seed)[1], n, cfg.seed + 3)
    else:
        held = ds.test.subset(torch.arange(max(0, len(ds.test) - n), len(ds.test)))
    x, y = held.images.float().div(255), held.labels
    attack = ATTACKS.build("pgd", eps=training_eps(cfg, ds), steps=cfg.train.monitor_steps)
    return RobustMonitor(x, y, attack, batch_size=cfg.data.eval_batch_size)


def _same_except(saved: dict, new: dict, allowed: set[str], prefix: str = "") -> list[str]:
    """Dotted keys where two config dicts differ, ignoring `allowed` ones."""
    diffs = []
    for key in sorted(set(saved) | set(new)):
        dotted = prefix + key
        a, b = saved.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and dotted not in allowed:
            diffs += _same_except(a, b, allowed, dotted + ".")
        elif a != b and dotted not in allowed:
            diffs.append(dotted)
    return diffs


def prepare_run_dir(cfg: Config, *, resume: bool, force: bool, dist: DistInfo) -> None:
    """Refuse to overwrite a run by accident; `--force` replaces it, `--resume` continues it."""
    run_dir = cfg.run_dir
    config_file = run_dir / "config.yaml"
    # Every rank checks before any rank writes, so all see the same state and fail alike.
    barrier(dist)
    exists = run_dir.exists() and any(run_dir.iterdir())
    if exists and resume and config_file.is_file():
        # Fill the saved file's defaults first: a key added to Config since the run started is
        # not a difference.
        saved = config_from_dict(read_yaml(config_file)).to_dict()
        diffs = _same_except(saved, cfg.to_dict(), allowed={"train.epochs", "data.data_dir"})
        if diffs:
            raise UserError(
                f"cannot resume {run_dir}: the config differs from the saved one at "
                f"{', '.join(diffs)}; resume with the saved settings or use --force to start over"
            )
    elif exists and not force and not resume:
        raise UserError(
            f"run directory {run_dir} already exists; use --resume to continue it, --force to "
            "replace it, or name=OTHER for a new run"
        )
    barrier(dist)
    if dist.is_main:
        if exists and force and not resume:
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, config_file)
    barrier(dist)


def resolve_resume_config(name: str, out_dir: str, overrides: list[str]) -> Config:
    """The saved config of run `name`, with command-line overrides on top."""
    path = Path(out_dir) / name / "config.yaml"
    if not path.is_file():
        raise UserError(f"no run to resume at {path.parent}; start it with robustlab train --config ...")
    return config_from_dict(read_yaml(path), overrides)


def train(cfg: Config, *, resume: bool = False, force: bool = False,
          log: Callable[[str], None] = say, callbacks=()) -> Run:
    """Train the run `cfg` describes (single process or one rank under torchrun)."""
    dist = dist_from_env()
    device = resolve_device(cfg.train.device, dist.local_rank)
    init_distributed(dist, device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    prepare_run_dir(cfg, resume=resume, force=force, dist=dist)
    ds = load_data(cfg)
    objective = build_defense(cfg, ds)
    # Before seeding: a teacher trained here must not change the student's initialisation.
    teacher = build_teacher(cfg, ds, objective, device, log if dist.is_main else (lambda _: None),
                            resume=resume, write=dist.is_main)
    data = make_batches(cfg, ds, dist, device)
    if hasattr(objective.adversary, "bank"):  # before seeding too: it may train the source stage
        objective.adversary.bank = cascade_bank(cfg, ds, data.train.split, device, dist,
                                                log if dist.is_main else (lambda _: None))
    elif cfg.defense.source:
        raise UserError(f"defense.source is set, but recipe {cfg.defense.recipe!r} injects no saved "
                        "images; remove defense.source or use recipe cascade")
    seed_everything(cfg.seed)
    model = build_model(cfg, ds)
    if cfg.defense.init_from_teacher:
        init_from_teacher(model, teacher, cfg)
    data.monitor = robust_monitor(cfg, ds)
    for drawer in (objective.adversary, objective.pairing):  # partners come from the training split
        if hasattr(drawer, "class_index"):
            drawer.class_index = ClassIndex(data.train.split)
    if dist.is_main:
        log(f"{cfg.name}: {cfg.model.name} on {ds.name} ({len(data.train) * cfg.data.batch_size} "
            f"train images/epoch, {len(ds.test)} test), recipe {cfg.defense.recipe}, {device}"
            + (f", {dist.world_size} processes" if dist.enabled else ""))
    return fit(model, objective, data, cfg, device=device, resume=resume, dist=dist,
               log=log if dist.is_main else (lambda _: None), callbacks=callbacks, teacher=teacher)


def init_from_teacher(model: Classifier, teacher: FrozenTeacher | None, cfg: Config) -> None:
    """Copy the teacher's weights into the student (ATAT Sec. 3.2). A resumed run loads its own
    checkpoint over them afterwards, so only a fresh run starts from the teacher."""
    if teacher is None:
        raise UserError(f"defense.init_from_teacher is set, but recipe {cfg.defense.recipe!r} has no "
                        "teacher; remove it or use a recipe with a teacher term (atat, agkd_bml)")
    load_weights(model, {"arch": teacher.model.arch, "model": teacher.model.state_dict()},
                 "teacher (defense.init_from_teacher)")


@dataclass
class Loaded:
    cfg: Config
    model: Classifier
    checkpoint: Path
    state: dict


def load_run(path: str | Path, which: str = "last", data_dir: str | None = None) -> Loaded:
    """A run directory (its `which` checkpoint) or a checkpoint file, with its config."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / f"{which}.pt"
        if not candidate.is_file():
            hint = ("best_robust.pt is kept only while the robust monitor runs (train.monitor_images > 0)"
                    if which == "best_robust" else "is it a finished robustlab run?")
            raise UserError(f"{path} has no checkpoints/{which}.pt; {hint}")
        path = candidate
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    return Loaded(cfg, model_from_checkpoint(state), path, state)


def evaluate_clean(path: str | Path, *, which: str = "last", data_dir: str | None = None,
                   batch_size: int | None = None, device: str = "auto") -> dict:
    """Clean accuracy of a saved model on its dataset's full test split."""
    loaded = load_run(path, which, data_dir)
    cfg = loaded.cfg
    cfg.data.test_limit = None  # always the full test set, whatever training watched
    ds = load_data(cfg)
    dev = resolve_device(device)
    model = loaded.model.to(dev)
    batches = Batches(ds.test, batch_size or cfg.data.eval_batch_size, shuffle=False, device=dev)
    acc = accuracy(model, batches, dev)
    return {"run": cfg.name, "checkpoint": str(loaded.checkpoint), "dataset": ds.name,
            "model": cfg.model.name, "test_images": len(ds.test), "clean_accuracy": acc}


# Default L-inf budgets per data set (AGKD-BML / ATAT / AAD settings; Fashion-MNIST: 0.1).
DEFAULT_EPS = {"fashion-mnist": 0.1, "mnist": 0.3, "cifar10": 8 / 255, "cifar100": 8 / 255,
               "svhn": 8 / 255, "digits": 0.1, "synthetic": 0.1}


def attack_run(path: str | Path, attack_name: str, params: dict, *, which: str = "last",
               split: str = "test", limit: int | None = None, batch_size: int | None = None,
               data_dir: str | None = None, device: str = "auto", save: str | None = None) -> dict:
    """Attack a saved model on a split of its data set; optionally save the adversarial set."""
    from robustlab.attacks import ATTACKS, save_adversarial_set
    from robustlab.eval import attack_batches

    if split not in ("test", "train"):
        raise UserError(f"--split={split!r} is not a split: use test or train")
    if limit is not None and limit <= 0:
        raise UserError(f"--limit={limit} is out of range: expected > 0")
    if batch_size is not None and batch_size <= 0:
        raise UserError(f"--batch-size={batch_size} is out of range: expected > 0")
    loaded = load_run(path, which, data_dir)
    cfg = loaded.cfg
    cfg.data.test_limit = cfg.data.train_limit = None
    ds = load_data(cfg)
    data = _first(ds.test if split == "test" else ds.train, limit, cfg.seed + 2)
    params = {"eps": DEFAULT_EPS.get(ds.name, 0.1), **params}
    attack = ATTACKS.build(attack_name, **params)
    dev = resolve_device(device)
    model = loaded.model.to(dev)
    batches = Batches(data, batch_size or cfg.data.eval_batch_size, shuffle=False, device=dev)
    result = attack_batches(model, batches, attack, device=dev, keep=save is not None)
    summary = {"run": cfg.name, "checkpoint": str(loaded.checkpoint), "dataset": ds.name,
               "split": split, "attack": attack_name, "params": params, **result.summary()}
    if save:
        save_adversarial_set(save, torch.cat(result.x_adv), torch.cat(result.labels), {
            "attack": attack_name, "eps": params["eps"], "norm": params.get("norm", "linf"),
            "params": params, "source_checkpoint": str(loaded.checkpoint),
            "source_arch": loaded.state["arch"], "dataset": ds.name, "split": split,
            "seed": params.get("seed", 0)})
        summary["saved"] = str(save)
    return summary


def _report_dir(path: Path, loaded: Loaded) -> Path:
    """runs/NAME/report for the last checkpoint, runs/NAME/report_<which> for another."""
    run_dir = path if path.is_dir() else loaded.checkpoint.parent.parent
    which = loaded.checkpoint.stem
    return run_dir / ("report" if which == "last" else f"report_{which}")


def stage_config(cfg: Config, role: str, seed_offset: int, recipe: str = "standard") -> Config:
    """The config of a stage trained with `recipe` (at `cfg`'s eps) and `cfg`'s data, model,
    optimizer and epochs (seed + offset), named <out_dir>/_<role>_<data>_<model>_<hash of its config>."""
    stage = config_from_dict(cfg.to_dict())
    stage.seed = cfg.seed + seed_offset
    stage.defense = type(cfg.defense)(recipe=recipe, eps=cfg.defense.eps if recipe != "standard" else None)
    stage.train.monitor_images = 0
    stage.train.label_smoothing = 0.0
    key = stage.to_dict()
    for section, field in [("data", "data_dir"), ("train", "device"), ("train", "threads")]:
        key[section].pop(field, None)
    key.pop("name"), key.pop("out_dir")
    if key["defense"].get("source") is None:  # added later: stages named before keep their names
        key["defense"].pop("source", None)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    stage.name = f"_{role}_{cfg.data.name}_{cfg.model.name}_{digest}"
    return stage


def _finished_stage(stage: Config) -> Classifier | None:
    checkpoint = stage.run_dir / "checkpoints" / "last.pt"
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
    theirs = (model.num_classes, model.arch.get("in_channels", ds.in_channels))
    if theirs != (ds.num_classes, ds.in_channels):
        raise UserError(f"the cascade source ({checkpoint}) takes {theirs[1]}-channel images into "
                        f"{theirs[0]} classes, but {ds.name} has {ds.in_channels} channels and "
                        f"{ds.num_classes} classes; give defense.source a model trained on this data set")
    log(f"cascade: iter_FGSM images (eps 1..{max_eps}/255, drawn per use) from {checkpoint}")
    return SourceImages(FrozenTeacher(model).to(device).model, split.images, split.labels, max_eps)


TEACHER = "teacher"


def saved_teacher(cfg: Config) -> Classifier | None:
    """The teacher a run used (recorded in its teacher.json), or None when it had none or the file
    is gone; never trains one."""
    record = cfg.run_dir / "teacher.json"
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
    record = cfg.run_dir / "teacher.json"
    if resume and record.is_file():
        checkpoint = json.loads(record.read_text())["checkpoint"]
        model, where = load_run(checkpoint, "last", cfg.data.data_dir).model, checkpoint
    elif cfg.defense.teacher:
        loaded = load_run(cfg.defense.teacher, "last", cfg.data.data_dir)
        model, where = loaded.model, str(loaded.checkpoint)
    else:
        model = trained_stage(cfg, TEACHER, 2, log)
        where = str(stage_config(cfg, TEACHER, 2).run_dir / "checkpoints" / "last.pt")
    theirs = (model.num_classes, model.arch.get("in_channels", ds.in_channels))
    if theirs != (ds.num_classes, ds.in_channels):
        raise UserError(f"the teacher ({where}) takes {theirs[1]}-channel images into {theirs[0]} "
                        f"classes, but {ds.name} has {ds.in_channels} channels and {ds.num_classes} "
                        "classes; give defense.teacher a model trained on this data set")
    if write:
        atomic_write_text(record, json.dumps({"checkpoint": where}) + "\n")
    log(f"teacher: {model.arch.get('name', type(model).__name__)} from {where} (frozen)")
    return FrozenTeacher(model).to(device)


def evaluate_suite(path: str | Path, suite_name: str, *, which: str = "last", limit: int | None = None,
                   eps: float | None = None, data_dir: str | None = None, device: str = "auto",
                   batch_size: int | None = None, source: str | None = None, out: str | None = None,
                   log: Callable[[str], None] = say) -> dict:
    """Run an evaluation suite on a saved model and write its report (rank 0 under torchrun)."""
    from robustlab import __version__
    from robustlab.eval.suite import load_suite
    from robustlab.eval.suite_run import Shard, run_suite
    from robustlab.report import write_report

    suite = load_suite(suite_name)
    if limit is not None and limit <= 0:
        raise UserError(f"--limit={limit} is out of range: expected > 0")
    path = Path(path)
    loaded = load_run(path, which, data_dir)
    cfg = loaded.cfg
    cfg.data.test_limit = None
    ds = load_data(cfg)
    n = min(len(ds.test), limit or suite.images or len(ds.test))
    x, y = ds.test.images[:n].float().div(255), ds.test.labels[:n]
    eps = eps if eps is not None else DEFAULT_EPS.get(ds.name, 0.1)
    if not 0 < eps <= 1:
        raise UserError(f"--eps={eps} is out of range: L-inf eps in (0, 1] (e.g. 0.1, 8/255)")
    dist = dist_from_env()
    dev = resolve_device(device, dist.local_rank)
    init_distributed(dist, dev)
    out_dir = Path(out) if out else _report_dir(path, loaded)

    def sources(spec: str):
        spec = source or spec
        if spec == "standard":
            return standard_source(cfg, dev, log if dist.is_main else (lambda _: None))
        return load_run(spec, "last", data_dir).model.to(dev).eval()

    if dist.is_main:
        log(f"{suite.name} suite on {cfg.name} ({loaded.checkpoint}): {n} {ds.name} test images, "
            f"eps {eps:.4g}, {len(suite.attacks)} attacks" + (f", {dist.world_size} processes" if dist.enabled
                                                             else ""))
    body = run_suite(loaded.model, x, y, suite, eps=eps, num_classes=ds.num_classes, device=dev,
                     batch_size=batch_size or cfg.data.eval_batch_size, sources=sources,
                     state_path=out_dir / "state.pt", shard=Shard(dist.rank, dist.world_size),
                     state_key=f"{loaded.checkpoint.resolve()}@{loaded.state.get('global_step')}:{source}",
                     log=log if dist.is_main else (lambda _: None))
    report = {"run": cfg.name, "checkpoint": str(loaded.checkpoint), "dataset": ds.name,
              "model": cfg.model.name, "recipe": cfg.defense.recipe, **body,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "robustlab_version": __version__,
              "environment": {"torch": torch.__version__, "device": str(dev), "processes": dist.world_size}}
    if dist.is_main:
        report["files"] = {k: str(v) for k, v in write_report(report, out_dir).items()}
    return report
