"""The dataset registry: each entry loads a whole dataset into memory as a `Dataset`.

File-based datasets are looked up in ``data_dir`` when given, otherwise in ``$ROBUSTLAB_DATA``,
the system directory (Fashion-MNIST: Debian's ``dataset-fashion-mnist``) and ``./data``, in that
order; in each, the files may sit directly in the directory or in its usual subfolder
(``fashion-mnist``, ``mnist``, ``cifar-10-batches-py``, ``cifar-100-python``, ``svhn``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustlab.data import formats
from robustlab.data.batches import Split, derive_seed, validation_split
from robustlab.errors import UserError
from robustlab.registry import Registry

ENV_VAR = "ROBUSTLAB_DATA"


# eq=False: field-wise == on tensors is ambiguous; datasets compare by identity
@dataclass(frozen=True, repr=False, eq=False)
class Dataset:
    """Train and test splits plus what models and reports need to know about them."""

    name: str
    train: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of the train images in [0, 1]
    std: tuple[float, ...]
    source: str  # directory read from, or "generated" / "scikit-learn"
    # Data with no test part of its own (your folder or npz of one set): all of it, in file
    # order, before train and test were split from it. Evaluating a model uses all of it.
    whole: Split | None = None

    def __post_init__(self) -> None:
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise ValueError(f"{self.name}: train images {list(self.train.images.shape[1:])} "
                             f"and test images {list(self.test.images.shape[1:])} differ in shape")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for "
                             f"{self.num_classes} classes")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return (c, h, w)

    @property
    def in_channels(self) -> int:
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        return self.image_shape[1]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"shape={self.image_shape}, classes={self.num_classes}, source={self.source!r})")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images in [0, 1] scale.

    Exact, from a 256-bin histogram per channel: a float copy of 60k images would cost GBs.
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for ch in range(images.shape[1]):
        counts = torch.zeros(256, dtype=torch.int64)
        for start in range(0, len(images), 4096):
            chunk = images[start : start + 4096, ch].reshape(-1)
            counts += torch.bincount(chunk, minlength=256)
        p = counts.double() / counts.sum()
        mean = float((p * values).sum())
        means.append(mean)
        stds.append(float((p * (values - mean) ** 2).sum().sqrt()))
    return tuple(means), tuple(stds)


def make_dataset(name: str, train: Split, test: Split, class_names: Sequence[str],
                 source: str) -> Dataset:
    """A `Dataset` with its normalization statistics computed from ``train``."""
    mean, std = channel_stats(train.images)
    return Dataset(name, train, test, len(class_names), tuple(class_names), mean, std, source)


def _to_split(images: np.ndarray, labels: np.ndarray, num_classes: int, where: Path,
              fix: str) -> Split:
    """A Split from reader output, refusing labels outside [0, num_classes)."""
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise UserError(f"{where}: label {int(labels[bad][0])} at index {int(bad.argmax())} is "
                        f"outside [0, {num_classes}); {fix}")
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))


@dataclass(frozen=True)
class _Files:
    """Where a file-based dataset lives and how to tell the user to get it."""

    title: str
    folder: str  # the usual subfolder name inside a data directory
    files: tuple[str, ...]  # all must be present
    get_it: str  # how to obtain the files, ending the "not found" errors
    gz_ok: bool = False  # each file may also be present as <name>.gz
    system_dir: str | None = None

    @property
    def fix(self) -> str:
        return f"replace it with a good copy: {self.get_it}"

    def path(self, directory: Path, name: str) -> Path:
        """``directory/name``, or its ``.gz`` when only that exists."""
        plain = directory / name
        if self.gz_ok and not plain.is_file() and (directory / (name + ".gz")).is_file():
            return directory / (name + ".gz")
        return plain

    def missing(self, directory: Path) -> list[str]:
        return [name + ("(.gz)" if self.gz_ok else "") for name in self.files
                if not self.path(directory, name).is_file()]

    def bases(self, data_dir: str | Path | None) -> list[Path]:
        if data_dir is not None:
            return [Path(data_dir)]
        bases = [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
        if self.system_dir:
            bases.append(Path(self.system_dir))
        return bases + [Path.cwd() / "data"]

    def find(self, data_dir: str | Path | None) -> Path | None:
        """The first candidate directory holding every file, or None. Only checks existence."""
        for base in self.bases(data_dir):
            for directory in (base, base / self.folder):
                if directory.is_dir() and not self.missing(directory):
                    return directory
        return None

    def locate(self, data_dir: str | Path | None) -> Path:
        directory = self.find(data_dir)
        if directory is not None:
            return directory
        bases = self.bases(data_dir)
        existing = [d for b in bases for d in (b, b / self.folder) if d.is_dir()]
        if not existing:
            where = " or ".join(str(b) for b in bases)
            raise UserError(f"{self.title} not found: no directory {where}; "
                            f"{self.get_it}")
        # report the directory closest to complete: its missing files are the useful hint
        best = min(existing, key=lambda d: len(self.missing(d)))
        raise UserError(f"{self.title} not found in {best}: missing "
                        f"{', '.join(self.missing(best))}; {self.get_it}")

    def status(self) -> tuple[bool, str]:
        directory = self.find(None)
        return (True, str(directory)) if directory else (False, self.get_it)


# Entries: loader(data_dir=None, **options) -> Dataset, registered with info
# status=() -> (available, where or how to get it) (cheap: existence checks only) and description.
DATASETS: Registry = Registry("dataset")


def load_dataset(name: str, data_dir: str | Path | None = None, **kw: object) -> Dataset:
    """Load a registered dataset; unknown options are a `UserError`, not a TypeError."""
    loader = DATASETS.get(name)
    try:
        inspect.signature(loader).bind(data_dir=data_dir, **kw)
    except TypeError:
        accepted = [p for p in inspect.signature(loader).parameters if p != "data_dir"]
        raise UserError(f"dataset {name!r} does not take options {sorted(kw)}; it accepts: "
                        f"{', '.join(accepted) or 'none'}") from None
    return loader(data_dir=data_dir, **kw)


def dataset_status() -> list[tuple[str, bool, str]]:
    """(name, available here?, where it is or how to get it) per dataset; checks files only."""
    rows = []
    for name in DATASETS.names():
        status: Callable[[], tuple[bool, str]] | None = DATASETS.info[name].get("status")
        rows.append((name, *status()) if status else (name, True, ""))
    return rows


# ---------------------------------------------------------------------------------------------
# IDX: MNIST, Fashion-MNIST

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

FASHION_MNIST = _Files(
    "Fashion-MNIST", "fashion-mnist", _IDX_FILES, gz_ok=True,
    system_dir="/usr/share/datasets/fashion-mnist",
    get_it="install it with `apt-get install dataset-fashion-mnist`, or pass --data-dir DIR "
           "(or set ROBUSTLAB_DATA) with the four IDX files from "
           "https://github.com/zalandoresearch/fashion-mnist in DIR or DIR/fashion-mnist",
)
MNIST = _Files(
    "MNIST", "mnist", _IDX_FILES, gz_ok=True,
    get_it="download the four IDX files of http://yann.lecun.com/exdb/mnist/ into DIR/mnist "
           "and pass --data-dir DIR (or set ROBUSTLAB_DATA=DIR)",
)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


def _load_idx(files: _Files, name: str, class_names: tuple[str, ...],
              data_dir: str | Path | None) -> Dataset:
    directory = files.locate(data_dir)
    splits = []
    for prefix in ("train", "t10k"):
        images_path = files.path(directory, f"{prefix}-images-idx3-ubyte")
        labels_path = files.path(directory, f"{prefix}-labels-idx1-ubyte")
        images, labels = formats.read_idx_pair(images_path, labels_path, fix=files.fix)
        splits.append(_to_split(images, labels, len(class_names), labels_path, files.fix))
    _same_shape(splits[0], splits[1], directory, files.fix)
    return make_dataset(name, splits[0], splits[1], class_names, str(directory))


def _same_shape(train: Split, test: Split, directory: Path, fix: str) -> None:
    if train.images.shape[1:] != test.images.shape[1:]:
        raise UserError(f"{directory}: train images are {list(train.images.shape[1:])} but test "
                        f"images are {list(test.images.shape[1:])}; {fix}")


@DATASETS.register("fashion-mnist", status=FASHION_MNIST.status,
                   description="Zalando Fashion-MNIST, 10 classes, 1x28x28 (IDX)")
def fashion_mnist(data_dir: str | Path | None = None) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k grey 28x28 images, IDX files (plain or .gz)."""
    return _load_idx(FASHION_MNIST, "fashion-mnist", FASHION_MNIST_CLASSES, data_dir)


@DATASETS.register("mnist", status=MNIST.status,
                   description="MNIST digits, 10 classes, 1x28x28 (IDX)")
def mnist(data_dir: str | Path | None = None) -> Dataset:
    """MNIST (LeCun et al. 1998): 60k/10k grey 28x28 digits, IDX files (plain or .gz)."""
    return _load_idx(MNIST, "mnist", tuple(str(d) for d in range(10)), data_dir)


# ---------------------------------------------------------------------------------------------
# CIFAR python pickles

CIFAR10 = _Files(
    "CIFAR-10", "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
    get_it="download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
           "extract it in DIR (it creates DIR/cifar-10-batches-py) and pass --data-dir DIR "
           "(or set ROBUSTLAB_DATA=DIR)",
)
CIFAR100 = _Files(
    "CIFAR-100", "cifar-100-python", ("train", "test"),
    get_it="download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
           "extract it in DIR (it creates DIR/cifar-100-python) and pass --data-dir DIR "
           "(or set ROBUSTLAB_DATA=DIR)",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def _load_cifar(files: _Files, name: str, *, train_files: Sequence[str], test_file: str,
                label_key: bytes, meta_file: str, names_key: bytes,
                fallback_names: tuple[str, ...], data_dir: str | Path | None) -> Dataset:
    directory = files.locate(data_dir)
    num_classes = len(fallback_names)

    def read(file: str) -> Split:
        images, labels = formats.read_cifar_batch(directory / file, label_key, fix=files.fix)
        return _to_split(images, labels, num_classes, directory / file, files.fix)

    parts = [read(f) for f in train_files]
    train = Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    meta = directory / meta_file
    names = (formats.read_pickle_names(meta, names_key, num_classes, fix=files.fix)
             if meta.is_file() else fallback_names)
    return make_dataset(name, train, read(test_file), names, str(directory))


@DATASETS.register("cifar10", status=CIFAR10.status,
                   description="CIFAR-10, 10 classes, 3x32x32 (python pickles)")
def cifar10(data_dir: str | Path | None = None) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009): 50k/10k colour 32x32 images, python version pickles."""
    return _load_cifar(CIFAR10, "cifar10", train_files=CIFAR10.files[:5], test_file="test_batch",
                       label_key=b"labels", meta_file="batches.meta", names_key=b"label_names",
                       fallback_names=CIFAR10_CLASSES, data_dir=data_dir)


@DATASETS.register("cifar100", status=CIFAR100.status,
                   description="CIFAR-100 (fine labels), 100 classes, 3x32x32 (python pickles)")
def cifar100(data_dir: str | Path | None = None) -> Dataset:
    """CIFAR-100 (Krizhevsky 2009), fine labels: 50k/10k colour 32x32 images, python pickles."""
    return _load_cifar(CIFAR100, "cifar100", train_files=["train"], test_file="test",
                       label_key=b"fine_labels", meta_file="meta", names_key=b"fine_label_names",
                       fallback_names=tuple(f"class {i}" for i in range(100)), data_dir=data_dir)


# ---------------------------------------------------------------------------------------------
# SVHN MATLAB files

SVHN = _Files(
    "SVHN", "svhn", ("train_32x32.mat", "test_32x32.mat"),
    get_it="download train_32x32.mat and test_32x32.mat from "
           "http://ufldl.stanford.edu/housenumbers/ into DIR/svhn and pass --data-dir DIR "
           "(or set ROBUSTLAB_DATA=DIR)",
)


@DATASETS.register("svhn", status=SVHN.status,
                   description="SVHN cropped digits, 10 classes, 3x32x32 (.mat)")
def svhn(data_dir: str | Path | None = None) -> Dataset:
    """SVHN (Netzer et al. 2011) cropped digits: 73k/26k colour 32x32, label 10 read as 0."""
    directory = SVHN.locate(data_dir)
    splits = []
    for file in SVHN.files:
        images, labels = formats.read_svhn_mat(directory / file, fix=SVHN.fix)
        splits.append(_to_split(images, labels, 10, directory / file, SVHN.fix))
    return make_dataset("svhn", splits[0], splits[1], tuple(str(d) for d in range(10)),
                        str(directory))


# ---------------------------------------------------------------------------------------------
# In-package data: scikit-learn digits, synthetic


def _sklearn_status() -> tuple[bool, str]:
    import importlib.util

    found = importlib.util.find_spec("sklearn") is not None
    return found, "bundled with scikit-learn" if found else "pip install scikit-learn"


@DATASETS.register("digits", status=_sklearn_status,
                   description="scikit-learn digits, 10 classes, 1x8x8 (1797 images, 80/20)")
def digits(data_dir: str | Path | None = None) -> Dataset:
    """scikit-learn's 8x8 digits (UCI optdigits test set), split 80/20 stratified with seed 0."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    # values are counts 0..16 of set pixels in 4x4 blocks; map to the full uint8 range
    images = np.round(raw.images * (255 / 16)).astype(np.uint8)[:, None]
    full = Split(torch.from_numpy(images), torch.from_numpy(raw.target.astype(np.int64)))
    train, test = validation_split(full, 0.2, seed=0)
    return make_dataset("digits", train, test, tuple(str(d) for d in range(10)), "scikit-learn")


@DATASETS.register("synthetic", status=lambda: (True, "generated"),
                   description="generated test problem: class prototypes plus noise")
def synthetic(data_dir: str | Path | None = None, *, num_classes: int = 10, in_channels: int = 1,
              image_size: int = 28, train_size: int = 512, test_size: int = 256,
              seed: int = 0) -> Dataset:
    """A learnable toy problem: each class is a fixed random smooth pattern, samples add noise.

    Deterministic in ``seed``; the test set does not depend on ``train_size``.
    """
    for key, value, low in (("num_classes", num_classes, 2), ("in_channels", in_channels, 1),
                            ("image_size", image_size, 1), ("train_size", train_size, 1),
                            ("test_size", test_size, 1)):
        if not isinstance(value, int) or value < low:
            raise UserError(f"synthetic dataset: {key} must be an integer >= {low}, got {value!r}")
    g = torch.Generator().manual_seed(derive_seed("synthetic/prototypes", seed))
    coarse = torch.rand(num_classes, in_channels, 4, 4, generator=g)
    # bilinear upsampling of a 4x4 grid: smooth blobs, so crops and small shifts keep the class
    prototypes = torch.nn.functional.interpolate(coarse, size=(image_size, image_size),
                                                 mode="bilinear", align_corners=False)
    prototypes = 32 + 192 * prototypes

    def sample(part: str, n: int) -> Split:
        g = torch.Generator().manual_seed(derive_seed("synthetic", part, seed))
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        noise = torch.randn(n, in_channels, image_size, image_size, generator=g) * 48
        images = (prototypes[labels] + noise).round().clamp(0, 255).to(torch.uint8)
        return Split(images, labels)

    names = tuple(f"class {i}" for i in range(num_classes))
    return make_dataset("synthetic", sample("train", train_size), sample("test", test_size),
                        names, "generated")
