"""File helpers every layer may use: atomic writes and loads that never run pickled code.

`atomic_torch_save` (and `atomic_write_text`) writes to a temporary file in the target's
directory, fsyncs it, and renames it over the target, so a crash mid-write never leaves a
half-written file in place.
Both give the file the mode a plain `open` would (0666 less the umask): mkstemp's private 0600
would keep reports and checkpoints from the people they are shared with. No file robustlab
writes is secret.
`plain_torch_load` reads with `torch.load(weights_only=True)` (tensors and built-in values only,
so a crafted file cannot execute code) and turns every bad file into a one-line `UserError`.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from robustlab.errors import UserError


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


# Read once, at import: setting it to 0 for a moment during training could give a file that
# another thread creates then (TensorBoard's writer) mode 0666.
_UMASK = _read_umask()


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A temporary file in `path`'s directory (created if missing), with the umask's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj)` to `path` atomically (temp file + fsync + rename); returns the path."""
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically (temp file in the same directory + rename): a failed or
    interrupted write leaves the previous file as it was."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically, as `atomic_write_text`."""
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def plain_torch_load(path: str | Path, what: str, hint: str,
                     map_location: str | torch.device = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`; a missing, non-plain (pickled code), corrupt or
    truncated file is a `UserError` that names `what` the file should be and `hint`s the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise UserError(
            f"refusing to load {path}: it is not a plain-tensor {what} ({first}); "
            "only tensors and plain values load (torch.load weights_only=True): save a state_dict, "
            "not a pickled object"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{what} {path} is corrupt or truncated ({type(exc).__name__}); {hint}") from None
