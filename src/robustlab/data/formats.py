"""Readers for the on-disk dataset formats; every failure is a one-line `UserError`.

Formats:
- IDX (MNIST, Fashion-MNIST; http://yann.lecun.com/exdb/mnist/): big-endian u32 magic
  ``0x0000 08 ND`` (ubyte data, ND dims), ND big-endian u32 sizes, then the raw bytes, optionally
  gzip-compressed.
- CIFAR "python version" (https://www.cs.toronto.edu/~kriz/cifar.html): pickled dicts,
  ``b"data"`` uint8 [N, 3072] (1024 red, 1024 green, 1024 blue, row-major), labels a list of ints.
- SVHN cropped digits (http://ufldl.stanford.edu/housenumbers/): MATLAB v5 ``X`` uint8
  [32, 32, 3, N], ``y`` [N, 1] with 10 standing for the digit 0.
- Your own data: PNG / JPEG files (8 bits a channel, read with Pillow) and NumPy ``.npz``
  archives (no pickled arrays), whose image and label arrays `image_array` and `label_array`
  check and convert.

Each reader takes ``fix``: the sentence appended to its errors saying how to get a good copy.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robustlab.errors import UserError

IDX_IMAGES_MAGIC = 0x00000803  # ubyte, 3 dims: N, H, W
IDX_LABELS_MAGIC = 0x00000801  # ubyte, 1 dim: N


def read_bytes(path: Path, *, fix: str) -> bytes:
    """The content of ``path``, gunzipped when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UserError(f"{path}: corrupt or truncated gzip file ({e}); {fix}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e}); {fix}") from None


def read_idx(path: Path, magic: int, *, fix: str) -> np.ndarray:
    """An IDX ubyte array whose magic number must be ``magic`` (images 0x803, labels 0x801)."""
    data = read_bytes(path, fix=fix)
    if len(data) < 4:
        raise UserError(f"{path}: truncated IDX file ({len(data)} bytes, no header); {fix}")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise UserError(
            f"{path}: wrong IDX magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"(wrong or corrupt file); {fix}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header ({len(data)} of {header} bytes); {fix}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "too long"
        raise UserError(
            f"{path}: {what}: header says {'x'.join(map(str, dims))} = {expected} bytes of data, "
            f"file has {len(data) - header}; {fix}"
        )
    # copy: frombuffer over bytes is read-only, and torch wants writable memory
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims).copy()


def read_idx_pair(images_path: Path, labels_path: Path, *,
                  fix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 1, H, W] and labels int64 [N] from an IDX images/labels file pair."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC, fix=fix)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC, fix=fix)
    if len(images) != len(labels):
        raise UserError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            f"labels; {fix}"
        )
    return images[:, None], labels.astype(np.int64)


def _numpy_global(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; files written by either must load with either
    # (the CIFAR files themselves were pickled by Python 2 with numpy.core).
    import importlib

    for candidate in ("numpy._core." + module, "numpy.core." + module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"numpy has no {module}.{name}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under pickle protocols 0-2;
    # allow exactly that use, not arbitrary codecs.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


# Everything a CIFAR pickle needs: numpy arrays (protocols 0-4 via _reconstruct, 5 via
# _frombuffer) and their dtypes. Nothing here can run code or touch files.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_global("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_global("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_global("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_global("numeric", "_frombuffer"),
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class _RefusedGlobal(Exception):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler resolving only the numpy array globals above: a dataset file never runs code."""

    def find_class(self, module: str, name: str) -> Any:
        make = _ALLOWED_GLOBALS.get((module, name))
        if make is None:
            raise _RefusedGlobal(module, name)
        return make()


def load_pickle(path: Path, *, fix: str) -> Any:
    """Unpickle ``path`` with `RestrictedUnpickler`; encoding="bytes" reads Python 2 pickles."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as e:
        raise UserError(
            f"{path}: refused to unpickle: it asks for {e}, which a dataset file never needs "
            f"(the file may be malicious); delete it and {fix}"
        ) from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e}); {fix}") from None
    # pickle raises a dozen unrelated types on garbage (ValueError, KeyError, EOFError, ...)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{path}: corrupt pickle ({type(e).__name__}: {e}); {fix}") from None


def read_cifar_batch(path: Path, label_key: bytes, *, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] from one CIFAR python batch file."""
    batch = load_pickle(path, fix=fix)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise UserError(
            f"{path}: not a CIFAR batch (expected a dict with b'data' and {label_key!r}, "
            f"found {keys}); {fix}"
        )
    data = batch[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (3072,)):
        desc = (f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise UserError(f"{path}: b'data' must be uint8 [N, 3072], found {desc}; {fix}")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.empty(0)
    if labels.shape != (len(data),):
        raise UserError(
            f"{path}: {label_key!r} must be {len(data)} integers (one per image), "
            f"found shape {list(labels.shape)}; {fix}"
        )
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32)), labels


def read_pickle_names(path: Path, key: bytes, count: int, *, fix: str) -> tuple[str, ...]:
    """The ``count`` class names stored under ``key`` in a CIFAR meta file (bytes or str items)."""
    meta = load_pickle(path, fix=fix)
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != count or not all(
        isinstance(n, (bytes, str)) for n in names
    ):
        raise UserError(f"{path}: {key!r} must be a list of {count} class names; {fix}")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def read_svhn_mat(path: Path, *, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] (10 -> 0) from an SVHN ``*_32x32.mat``."""
    import scipy.io

    if not path.is_file():
        raise UserError(f"{path}: missing; {fix}")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    # scipy raises many unrelated types on bad files (ValueError, TypeError, MatReadError, ...)
    except Exception as e:  # noqa: BLE001
        raise UserError(
            f"{path}: corrupt or unsupported .mat file ({type(e).__name__}: {e}); {fix}"
        ) from None
    x, y = mat.get("X"), mat.get("y")
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4
            and x.shape[:3] == (32, 32, 3)):
        desc = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else "missing"
        raise UserError(f"{path}: X must be uint8 [32, 32, 3, N], found {desc}; {fix}")
    n = x.shape[3]
    if not isinstance(y, np.ndarray) or y.size != n or y.ndim not in (1, 2) or y.shape[0] != n:
        desc = list(y.shape) if isinstance(y, np.ndarray) else "missing"
        raise UserError(f"{path}: y must be [{n}, 1] labels (one per image), found {desc}; {fix}")
    labels = y.reshape(n).astype(np.int64)
    if n and (labels.min() < 1 or labels.max() > 10):
        bad = labels[(labels < 1) | (labels > 10)][0]
        raise UserError(f"{path}: label {bad} outside SVHN's 1..10 (10 is the digit 0); {fix}")
    labels[labels == 10] = 0  # SVHN stores the digit 0 as label 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


# ---------------------------------------------------------------------------------------------
# Your own images: PNG / JPEG files and NumPy arrays

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA")  # Pillow modes without colour: one channel (LA: alpha dropped)


def read_image(path: Path, *, fix: str) -> np.ndarray:
    """uint8 [H, W] for a grey image, [H, W, 3] for any other (RGB, alpha dropped), via Pillow."""
    from PIL import Image  # a dependency, but only this reader needs it

    try:
        with Image.open(path) as img:
            img.load()
            # I, I;16, F: more than 8 bits a channel; L would clip them, not rescale them
            if img.mode.startswith(("I", "F")):
                raise UserError(f"{path}: a {img.mode} image (more than 8 bits a channel); save it "
                                f"as an 8-bit grey or RGB PNG / JPEG; {fix}")
            return np.asarray(img.convert("L" if img.mode in GREY_MODES else "RGB"))
    # Pillow: UnidentifiedImageError and truncation are OSErrors, broken chunks SyntaxError or
    # ValueError, a decompression bomb its own type
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: cannot read as an image ({type(e).__name__}: {e}); replace or "
                        f"delete the file; {fix}") from None


def read_npz(path: Path, *, fix: str) -> dict[str, np.ndarray]:
    """Every array of a NumPy ``.npz`` archive; pickled (object) arrays are refused, never run."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise UserError(f"{path}: a single .npy array, not an .npz archive; {fix}")
        with loaded as archive:
            return {key: archive[key] for key in archive.files}
    # np.load: ValueError for a non-NumPy file or an object array, BadZipFile / zlib / EOF for
    # a damaged archive
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e}); "
                        f"{fix}") from None


def image_array(x: np.ndarray, where: str, *, fix: str) -> np.ndarray:
    """uint8 [N, C, H, W] (C = 1 or 3) from images uint8 in 0..255 or float in [0, 1], shaped
    N,H,W or N,H,W,C or N,C,H,W; 4-D is channels-last when its last axis is 1 or 3."""
    return _as_uint8(_channels_first(x, where, fix=fix), where, fix=fix)


def _channels_first(x: np.ndarray, where: str, *, fix: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"{where} has shape {list(x.shape)}: expected N,H,W or N,H,W,C or "
                        f"N,C,H,W with C = 1 (grey) or 3 (RGB); {fix}")
    if len(x) == 0:
        raise UserError(f"{where} holds no images; {fix}")
    return x


def _as_uint8(x: np.ndarray, where: str, *, fix: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{where} is {x.dtype}: expected uint8 (0..255) or float (0..1); {fix}")
    bad = ~((x >= 0) & (x <= 1))  # NaN fails both comparisons
    if bad.any():
        index = np.unravel_index(int(bad.argmax()), x.shape)
        raise UserError(f"{where}: value {x[index]} at image {index[0]} is outside [0, 1]; float "
                        f"images must be in [0, 1] (divide 0..255 values by 255); {fix}")
    # stored as uint8 like every data set: float images round to the nearest 1/255
    return np.rint(x * 255).astype(np.uint8)


def label_array(y: np.ndarray, count: int, where: str, *, fix: str) -> np.ndarray:
    """int64 [N] from integer labels shaped [N] or [N, 1], one per image of ``count``."""
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where} is {y.dtype}: labels must be integers 0..K-1; {fix}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"{where} has shape {list(y.shape)}: expected [N] labels; {fix}")
    if len(y) != count:
        raise UserError(f"{where} holds {len(y)} labels for {count} images (one each); {fix}")
    return y.astype(np.int64)
