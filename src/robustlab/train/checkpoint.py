"""Checkpoints: written atomically, read without running pickled code.

A checkpoint is a plain dict of tensors and built-in values, so `torch.load(weights_only=True)`
can read it: a crafted file cannot execute code. Writes go to a temporary file in the same
directory, are fsync'ed, then renamed over the target, so a crash mid-write never leaves a
half-written latest checkpoint.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlab import __version__
from robustlab.errors import UserError

FORMAT = "robustlab-checkpoint/1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write `state` (plus format and version stamps) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": __version__, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; any other file is a `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise UserError(
            f"refusing to load {path}: it is not a plain-weights checkpoint ({first}); "
            "only files written by robustlab can be loaded"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}); "
            "use another checkpoint (e.g. best.pt or an earlier epoch) or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a robustlab checkpoint (format {FORMAT} expected)")
    return state


def check_architecture(state: dict[str, Any], model: nn.Module, source: str = "checkpoint") -> None:
    """Refuse weights of another architecture with a message that names both."""
    want, have = state.get("arch", {}), getattr(model, "arch", {})
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
