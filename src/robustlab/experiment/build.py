"""From a `Config` (or a saved run) to objects: data, model, batches, objective, monitor."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from robustlab.config import Config, config_from_dict
from robustlab.data import Batches, Dataset, Split, default_eps, load_dataset, validation_split
from robustlab.defenses import build_objective
from robustlab.errors import UserError
from robustlab.experiment.rundir import RunDir
from robustlab.models import Classifier, HookedModel, create_model
from robustlab.models.base import complete_arch
from robustlab.models.modes import eval_mode
from robustlab.models.own import EXTERNAL, own_model, rebuild
from robustlab.train import DistInfo, TrainData, load_checkpoint, load_weights
from robustlab.train.monitors import RobustMonitor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def subset_of(split: Split, limit: int | None, seed: int) -> Split:
    """A seeded random subset of `limit` samples (all of them when limit is None or larger)."""
    if limit is None or limit >= len(split):
        return split
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.subset(order[:limit])


def load_data(cfg: Config) -> Dataset:
    ds = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir, **cfg.data.options)
    train = subset_of(ds.train, cfg.data.train_limit, cfg.seed)
    test = subset_of(ds.test, cfg.data.test_limit, cfg.seed + 1)
    return dataclasses.replace(ds, train=train, test=test)


def build_model(cfg: Config, ds: Dataset) -> Classifier | HookedModel:
    """The registered model `cfg.model` names for `ds`, or your own (`model.name: external`,
    `models.own`: it normalises inside itself, so the data's mean / std are not applied)."""
    if cfg.model.name == EXTERNAL:
        return own_model(cfg.model.options, num_classes=ds.num_classes, in_channels=ds.in_channels,
                         image_size=ds.image_size)
    return create_model(
        cfg.model.name, num_classes=ds.num_classes, in_channels=ds.in_channels,
        image_size=ds.image_size, mean=ds.mean, std=ds.std, **cfg.model.options,
    )


def model_from_checkpoint(state: dict) -> Classifier | HookedModel:
    """Rebuild the architecture a checkpoint names and load its weights."""
    arch = state["arch"]
    model = rebuild(arch) if arch.get("name") == EXTERNAL else create_model(**complete_arch(arch))
    load_weights(model, state)
    return model


def check_layers(model: HookedModel, objective, recipe: str, what: str) -> None:
    """A UserError unless the hooked `model` has the layers the recipe's terms read."""
    needs = objective.reads
    if "features" in needs and model.feature_layer is None:
        raise UserError(f"recipe {recipe!r} reads a feature map (attention, Grad-CAM): name "
                        f"{what}'s last conv layer with feature_layer= (--feature-layer)")
    if "embedding" in needs and model.head_layer is None:
        raise UserError(f"recipe {recipe!r} reads an embedding, the input of the last nn.Linear, "
                        f"and {what} has none: give it a linear classifier layer")


def check_model(model: nn.Module, objective, ds: Dataset, cfg: Config) -> None:
    """A UserError before training unless `model` maps `ds`'s images to `ds.num_classes` logits
    and has the layers the recipe's terms read (`Objective.reads`): your own model, which
    robustlab did not build for the data."""
    what = cfg.model.options.get("spec") or type(getattr(model, "model", model)).__name__
    check_layers(model, objective, cfg.defense.recipe, what)
    x = ds.train.images[:2].float().div(255)
    try:
        with torch.no_grad(), eval_mode(model):
            logits = model.forward_all(x).logits
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UserError(f"{what} fails on {ds.name}'s {ds.in_channels}x{ds.image_size}x{ds.image_size} "
                        f"images: {str(exc).strip().splitlines()[0]}") from None
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[1] != ds.num_classes:
        shape = list(getattr(logits, "shape", []))
        raise UserError(f"{what} returns {type(logits).__name__} {shape}; {ds.name} needs logits "
                        f"[B, {ds.num_classes}], one per class")
    if (logits >= 0).all() and torch.allclose(logits.sum(1), torch.ones(len(logits)), atol=1e-4):
        raise UserError(f"{what} returns probabilities (each row is >= 0 and sums to 1): return "
                        "the logits, without the softmax (the losses and attacks apply it)")


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
    """defense.eps, or the data set's default budget (`robustlab.data.default_eps`)."""
    return cfg.defense.eps if cfg.defense.eps is not None else default_eps(ds.name)


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
        held = subset_of(validation_split(ds.train, cfg.data.val_fraction, cfg.seed)[1], n, cfg.seed + 3)
    else:
        held = ds.test.subset(torch.arange(max(0, len(ds.test) - n), len(ds.test)))
    x, y = held.images.float().div(255), held.labels
    attack = ATTACKS.build("pgd", eps=training_eps(cfg, ds), steps=cfg.train.monitor_steps)
    return RobustMonitor(x, y, attack, batch_size=cfg.data.eval_batch_size)


@dataclass
class Loaded:
    cfg: Config
    model: Classifier
    checkpoint: Path
    state: dict

    @property
    def trained(self) -> dict:
        """The point of training the checkpoint holds: finished epochs (and batches into the next,
        after an interruption), of how many, the optimizer step, and whether it is the end."""
        epoch, epochs = int(self.state.get("epoch", 0)), int(self.cfg.train.epochs)
        batch = int(self.state.get("batch", 0))
        step = int(self.state.get("global_step", 0))
        return {"epoch": epoch, "batch": batch, "epochs": epochs, "step": step,
                "finished": epoch >= epochs and batch == 0}

    def unfinished_note(self) -> str | None:
        """One line when the checkpoint is not the end of training, else None."""
        t = self.trained
        if t["finished"] or self.checkpoint.stem in ("best", "best_robust"):  # chosen on purpose
            return None
        where = f"epoch {t['epoch']} of {t['epochs']}" + (f" and {t['batch']} batches" if t["batch"] else "")
        fix = (f"; finish it with robustlab train --resume name={self.cfg.name} out_dir={self.cfg.out_dir}"
               if self.checkpoint.stem == "last" else "")
        return f"warning: {self.checkpoint} holds {where} (step {t['step']}): not the end of training{fix}"


def load_run(path: str | Path, which: str = "last", data_dir: str | None = None) -> Loaded:
    """A run directory (its `which` checkpoint) or a checkpoint file, with its config."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: give a run directory (runs/NAME, as robustlab train "
                        "writes it) or a checkpoint file (RUN/checkpoints/last.pt)")
    if path.is_dir():
        path = RunDir(path).existing_checkpoint(which)
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    return Loaded(cfg, model_from_checkpoint(state), path, state)
