"""Train any nn.Module with any recipe: `train_model` (which is `robustlab.train`, and `robustlab
train --model`).

Nothing here trains: the model becomes `model.name: external` (models/own.py), tensors or a
DataLoader become an .npz data set saved once beside the runs, a teacher given as an object a
checkpoint beside them, and the run goes through `experiment.train` and `fit` like any other
(checkpoints, resume, the robust monitor, metrics.jsonl, TensorBoard, Ctrl-C).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from robustlab.config import Config, config_from_dict
from robustlab.data import DEFAULT_EPS
from robustlab.errors import UserError
from robustlab.experiment.own_model import Data, data_source, gather_images, user_eps
from robustlab.experiment.training import train
from robustlab.io import atomic_write_bytes
from robustlab.models import offers_contract
from robustlab.models.own import EXTERNAL, own_model, remember
from robustlab.train import Callback, save_checkpoint
from robustlab.train.checkpoint import weights_digest
from robustlab.train.fit import say

Images = Data | tuple[Tensor, Tensor]


def train_model(model: nn.Module | str, data: Images, recipe: str = "madry", *, epochs: int = 15,
                eps: float | None = None, out: str | Path | None = None, feature_layer: str | None = None,
                test: Images | None = None, teacher: nn.Module | str | Path | None = None,
                weights: str | Path | None = None, seed: int = 0, batch_size: int = 128,
                device: str = "auto", overrides: Sequence[str] = (), resume: bool = False,
                force: bool = False, log: Callable[[str], None] = say, callbacks: Sequence[Callback] = (),
                **options) -> nn.Module:
    """Train `model` (an nn.Module mapping [0, 1] images to logits, or a spec
    `package.module:factory`, optionally started from `weights`) with `recipe` and its `options`
    (`robustlab recipes`), through the loop `robustlab train` runs; returns the trained model
    (an object given is trained in place).

    data: a registered data set's name, your folder / .npz file, `(x, y)` tensors (images
    [N, C, H, W] in [0, 1], integer labels) or a DataLoader of (images, labels); tensors and
    loaders are stored as uint8 (as every data set is) in <runs>/_data_<digest>.npz, with a
    seeded 20% per class held out for testing unless `test` gives the test images.
    out: the run directory (default runs/<class>_<recipe>); an existing one needs `resume`
    (continue) or `force` (replace). feature_layer: the module whose output is the feature map,
    for recipes that read attention (agkd_bml, atat, aad_*); the embedding is the input of the
    last nn.Linear. teacher: the frozen teacher of agkd_bml / atat (a model, a run directory or a
    checkpoint; default: a standard-trained copy of `model`, trained once and cached). overrides:
    any other setting as `section.key=value` (`optim.lr=0.01`, `train.monitor_images=0`).
    callbacks: `robustlab.train.Callback`s, called after every step and epoch. A bad argument
    stops before anything is written.

        model = robustlab.train(Net(), "fashion-mnist", recipe="trades", epochs=10, out="runs/net")
    """
    if isinstance(model, nn.Module) and offers_contract(model) and hasattr(model, "arch"):
        raise UserError("this is a robustlab model already: train it with robustlab train --config "
                        "(model.name), or give a plain nn.Module")
    given = isinstance(model, nn.Module)
    cfg = _config(model, recipe, epochs, eps, out, feature_layer, weights, seed, batch_size, device,
                  options, overrides)
    written: list[Path] = []  # files this call made before the run's own checks: removed on error
    try:
        cfg.data.name, cfg.data.data_dir = _data(data, test, cfg, written)
        if cfg.defense.eps is None and cfg.data.name not in DEFAULT_EPS:
            cfg.defense.eps = user_eps(None, cfg.data.name)  # the error that names the budget
        if isinstance(teacher, nn.Module):
            cfg.defense.teacher = str(_teacher_file(teacher, cfg, written))
        elif teacher is not None:
            cfg.defense.teacher = str(teacher)
        run = train(cfg, resume=resume, force=force, log=log, callbacks=callbacks)
    except UserError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    if not given:
        return run.model.model
    model.load_state_dict(run.model.model.state_dict())
    return model


def _config(model: nn.Module | str, recipe: str, epochs: int, eps: float | None, out: str | Path | None,
            feature_layer: str | None, weights: str | Path | None, seed: int, batch_size: int,
            device: str, options: dict, overrides: Sequence[str]) -> Config:
    """The run's config: defaults, the arguments, then `overrides`."""
    if isinstance(model, str):
        names = {"spec": model, "weights": None if weights is None else str(weights)}
        title = model.rpartition(":")[2].rpartition(".")[2]
    elif isinstance(model, nn.Module):
        if weights is not None:
            raise UserError("weights= goes with a model spec; load them into your model first "
                            "(model.load_state_dict(torch.load(FILE)))")
        names, title = {"given": remember(model)}, type(model).__name__
    else:
        raise UserError(f"model is a {type(model).__name__}: give an nn.Module, or a spec "
                        "package.module:factory")
    out = Path(out) if out is not None else Path("runs") / f"{title}_{recipe}"
    values = {"name": out.name, "out_dir": str(out.parent), "seed": seed,
              "model": {"name": EXTERNAL, "options": {**names, "feature_layer": feature_layer}},
              "data": {"batch_size": batch_size},
              "train": {"epochs": epochs, "device": device},
              "defense": {"recipe": recipe, "eps": eps, "options": options}}
    return config_from_dict(values, list(overrides))


def _data(data: Images, test: Images | None, cfg: Config, written: list[Path]) -> tuple[str, str | None]:
    """(data.name, data.data_dir): a data set's, or an .npz file of the given tensors, written once
    (named by a digest of the images and labels) in cfg.out_dir."""
    if isinstance(data, (str, Path)):
        if test is not None:
            raise UserError("test= goes with images given as tensors or a DataLoader; a data set "
                            "has its own test part")
        name, where = data_source(data, cfg.data.data_dir)
        return name, None if where is None else str(where)
    parts = {"": _images(data)} if test is None else {"_train": _images(data), "_test": _images(test)}
    digest = hashlib.sha1()
    for x, y in parts.values():
        digest.update(x.tobytes())
        digest.update(y.tobytes())
    path = Path(cfg.out_dir) / f"_data_{digest.hexdigest()[:12]}.npz"
    if not path.is_file():
        arrays = {f"{key}{suffix}": value for suffix, (x, y) in parts.items() for key, value in
                  (("x", x), ("y", y))}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(atomic_write_bytes(path, buffer.getvalue()))
    return "npz", str(path)


def _images(data: Images) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, C, H, W] and int64 labels of `(x, y)` tensors or a DataLoader (anything
    else gets `gather_images`'s one-line error)."""
    pair = isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor)
    split = (gather_images(*data, limit=None) if pair else gather_images(data, None, limit=None)).stored()
    return split.images.numpy(), split.labels.numpy()


def _teacher_file(teacher: nn.Module, cfg: Config, written: list[Path]) -> Path:
    """A teacher given as an object, saved as a checkpoint in cfg.out_dir (named by its weights)
    so the run's teacher.json can name it and a resumed run reloads the same teacher."""
    from robustlab.experiment.build import load_data

    ds = load_data(cfg)
    options = {"given": remember(teacher, "teacher"), "feature_layer": cfg.model.options.get("feature_layer")}
    wrapped = own_model(options, num_classes=ds.num_classes, in_channels=ds.in_channels,
                        image_size=ds.image_size)
    state = {"arch": wrapped.arch, "model": wrapped.state_dict(), "config": cfg.to_dict(),
             "epoch": cfg.train.epochs}
    path = Path(cfg.out_dir) / f"_teacher-given_{wrapped.arch['class']}_{weights_digest(state)}.pt"
    if not path.is_file():
        written.append(save_checkpoint(state, path))
    return path
