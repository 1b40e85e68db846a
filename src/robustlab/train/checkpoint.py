"""Checkpoints: written atomically, read without running pickled code.

A checkpoint is a plain dict of tensors and built-in values, so `torch.load(weights_only=True)`
can read it: a crafted file cannot execute code. Writes go to a temporary file in the same
directory, are fsync'ed, then renamed over the target, so a crash mid-write never leaves a
half-written latest checkpoint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlab import __version__
from robustlab.errors import UserError
from robustlab.io import atomic_torch_save, plain_torch_load
from robustlab.models.base import complete_arch

FORMAT = "robustlab-checkpoint/1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write `state` (plus format and version stamps) to `path`."""
    return atomic_torch_save({"format": FORMAT, "version": __version__, **state}, path)


def weights_digest(state: dict[str, Any]) -> str:
    """A digest of a checkpoint's model weights, names and bytes: equal exactly when two trainings
    gave the same weights to the bit (a file's own bytes are not: each save writes a random
    serialization id)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state["model"].items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; any other file is a `UserError`."""
    state = plain_torch_load(
        path, "checkpoint", "use another checkpoint (e.g. best.pt or an earlier epoch) or retrain",
        map_location=map_location,
    )
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a robustlab checkpoint (format {FORMAT} expected)")
    return state


@dataclass(frozen=True)
class RunFiles:
    """Where `fit` writes: the run's root, its metrics log and its three checkpoints (the
    layout is `robustlab.experiment.rundir.RunDir`'s)."""

    root: Path
    metrics: Path
    last: Path
    best: Path
    best_robust: Path
    tensorboard: Path | None = None  # the event files' folder (train.tensorboard)


def check_architecture(state: dict[str, Any], model: nn.Module, source: str = "checkpoint") -> None:
    """Refuse weights of another architecture with a message that names both."""
    want, have = complete_arch(state.get("arch", {})), getattr(model, "arch", {})
    if want != have:
        keys = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        diff = ", ".join(f"{k}: {source} {want.get(k)!r} vs model {have.get(k)!r}" for k in keys)
        raise UserError(
            f"the {source} holds a different architecture ({diff}); "
            "build the model with the checkpoint's settings or pick a matching checkpoint"
        )


def load_weights(model: nn.Module, state: dict[str, Any], source: str = "checkpoint") -> None:
    check_architecture(state, model, source)
    model.load_state_dict(state["model"])
