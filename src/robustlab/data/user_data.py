"""Your own data sets: `data.name=folder` (PNG / JPEG images in class folders) and `data.name=npz`
(NumPy arrays), both read from `data.data_dir=PATH` (`--data-dir PATH`); `ROBUSTLAB_DATA` and
./data are not searched, the path is always yours to give.

Either layout may hold its own train and test parts or one set of images, which is then split
with `data.options={test_fraction: 0.2, seed: 0}` (the defaults): per class, a seeded random
`test_fraction` of the images goes to test (`validation_split`), the same split on every load.
Giving `test_fraction` for data that has its own test part is an error, not silently ignored.
Images are stored as every data set's are (uint8 [N, C, H, W]) and must be square, one size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from robustlab.data import formats
from robustlab.data.batches import Split, validation_split
from robustlab.data.datasets import DATASETS, Dataset, _same_shape, _to_split, make_dataset
from robustlab.errors import UserError

DEFAULT_TEST_FRACTION = 0.2  # held out when the data has no test part of its own (as digits)

FOLDER_FIX = ("lay the images out as DIR/train/<class>/*.png and DIR/test/<class>/*.png (or "
              "DIR/<class>/*.png to split them), PNG or JPEG, all one square size")
NPZ_FIX = ("save them with np.savez(FILE, x=images, y=labels): x uint8 0..255 or float in [0, 1] "
           "shaped N,H,W / N,H,W,C / N,C,H,W, y integer labels 0..K-1")


def _user_path(name: str, data_dir: str | Path | None, fix: str) -> Path:
    """``data_dir`` as a Path that exists; there is no default location for your own data."""
    if data_dir is None:
        raise UserError(f"the {name} data set reads your own data: pass data.data_dir=PATH "
                        f"(or --data-dir PATH); {fix}")
    path = Path(data_dir)
    if not path.exists():
        raise UserError(f"{name} data set: {path} does not exist; pass data.data_dir=PATH of "
                        f"your data; {fix}")
    return path


def _train_test(parts: dict[str, Split], test_fraction: float | None, seed: int,
                where: Path) -> tuple[Split, Split]:
    """The data's own (train, test), or a seeded per-class split of its one part "all"."""
    if "all" not in parts:
        if test_fraction is not None:
            raise UserError(f"{where} has its own train and test parts: drop "
                            "data.options.test_fraction (it splits data that has no test part)")
        return parts["train"], parts["test"]
    fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise UserError(f"test_fraction={fraction!r} is out of range: expected the fraction of "
                        "the images held out for testing, in (0, 1)")
    return validation_split(parts["all"], float(fraction), seed)


def _user_dataset(name: str, parts: dict[str, Split], class_names: tuple[str, ...], *,
                  test_fraction: float | None, seed: int, where: Path, fix: str) -> Dataset:
    """The checks both loaders share (two classes or more, square images), then the Dataset."""
    if len(class_names) < 2:
        raise UserError(f"{where}: {len(class_names)} class ({', '.join(class_names)}); a "
                        f"classifier needs at least 2; {fix}")
    _, _, h, w = next(iter(parts.values())).images.shape
    if h != w:
        raise UserError(f"{where}: the images are {h}x{w} (height x width); robustlab's models "
                        f"take square images: crop or pad them to one side; {fix}")
    train, test = _train_test(parts, test_fraction, seed, where)
    _same_shape(train, test, where, fix)
    ds = make_dataset(name, train, test, class_names, str(where))
    return dataclasses.replace(ds, whole=parts.get("all"))


# ---------------------------------------------------------------------------------------------
# folder: PNG / JPEG files in class sub-folders (torchvision's ImageFolder layout)


def _folder_parts(root: Path) -> dict[str, Path]:
    """{"train": root/train, "test": root/test} when root/train exists, else {"all": root}."""
    if not root.is_dir():
        raise UserError(f"folder data set: {root} is a file, not a folder; {FOLDER_FIX}")
    if not (root / "train").is_dir():
        return {"all": root}
    if not (root / "test").is_dir():
        raise UserError(f"{root} has train/ but no test/: add {root / 'test'}/<class>/ or move "
                        f"the class folders up into {root} to split them; {FOLDER_FIX}")
    return {"train": root / "train", "test": root / "test"}


def _subfolders(directory: Path) -> dict[str, Path]:
    """Class name -> folder, sorted by name; hidden folders (.git, .ipynb_checkpoints) skipped."""
    return {p.name: p for p in sorted(directory.iterdir())
            if p.is_dir() and not p.name.startswith(".")}


def _image_files(directory: Path) -> list[Path]:
    """The PNG / JPEG files under ``directory`` (any depth), sorted; other files are skipped,
    and so is anything hidden (macOS's ._x.png are not images)."""
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in formats.IMAGE_SUFFIXES
                  and not any(n.startswith(".") for n in p.relative_to(directory).parts)
                  and p.is_file())


def _labelled_files(parts: dict[str, Path]) -> tuple[tuple[str, ...], dict[str, list[Path]],
                                                     dict[str, list[int]]]:
    """Class names (the first part's sorted sub-folders) and each part's files and labels."""
    folders = {part: _subfolders(directory) for part, directory in parts.items()}
    for part, directory in parts.items():
        if not folders[part]:
            raise UserError(f"{directory} has no class sub-folders; {FOLDER_FIX}")
    classes = tuple(next(iter(folders.values())))
    files: dict[str, list[Path]] = {}
    labels: dict[str, list[int]] = {}
    for part in parts:
        files[part], labels[part] = [], []
        for name, folder in folders[part].items():
            if name not in classes:
                raise UserError(f"{folder}: class {name!r} is not among the training classes "
                                f"({', '.join(classes)}); {FOLDER_FIX}")
            found = _image_files(folder)
            if not found:
                raise UserError(f"{folder} holds no PNG or JPEG images; add some or remove the "
                                f"folder; {FOLDER_FIX}")
            files[part] += found
            labels[part] += [classes.index(name)] * len(found)
    return classes, files, labels


def _stack_images(paths: list[Path]) -> np.ndarray:
    """uint8 [N, C, H, W] of the files: 1 channel if every image is grey, else 3 (grey ones are
    repeated into RGB, so a mixed folder is all RGB)."""
    arrays = [formats.read_image(p, fix=FOLDER_FIX) for p in paths]
    for path, array in zip(paths, arrays):
        if array.shape[:2] != arrays[0].shape[:2]:
            (h, w), (h0, w0) = array.shape[:2], arrays[0].shape[:2]
            raise UserError(f"{path} is {h}x{w} but {paths[0]} is {h0}x{w0} (height x width): "
                            f"every image must have one size; resize them; {FOLDER_FIX}")
    if any(a.ndim == 3 for a in arrays):
        arrays = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
        return np.stack(arrays).transpose(0, 3, 1, 2)
    return np.stack(arrays)[:, None]


@DATASETS.register("folder", status=lambda: (True, "your images: data.data_dir=DIR of class folders"),
                   description="your PNG / JPEG images in class folders (DIR/train/<class>/, "
                               "DIR/test/<class>/, or DIR/<class>/ split 80/20)")
def folder(data_dir: str | Path | None = None, *, test_fraction: float | None = None,
           seed: int = 0) -> Dataset:
    """PNG / JPEG images in class sub-folders: DIR/train/<class>/ and DIR/test/<class>/ (any
    depth below a class folder), or DIR/<class>/ split per class into test_fraction (default
    0.2) test images with ``seed``. Classes are the sorted names of the training sub-folders;
    a test folder may lack a class but not add one. Grey images give 1 channel, any colour
    image makes the whole set RGB (3 channels); alpha is dropped. Other and hidden files are
    skipped; every image must be 8-bit and of one square size."""
    root = _user_path("folder", data_dir, FOLDER_FIX)
    classes, files, labels = _labelled_files(_folder_parts(root))
    images = _stack_images([p for part in files.values() for p in part])
    parts, start = {}, 0
    for part, part_labels in labels.items():
        stop = start + len(part_labels)
        parts[part] = _to_split(images[start:stop], np.array(part_labels, dtype=np.int64),
                                len(classes), root, FOLDER_FIX)
        start = stop
    return _user_dataset("folder", parts, classes, test_fraction=test_fraction, seed=seed,
                         where=root, fix=FOLDER_FIX)


# ---------------------------------------------------------------------------------------------
# npz: NumPy arrays

# one file: x_train, y_train, x_test, y_test (Keras's mnist.npz) or x, y (split); a folder:
# train.npz and test.npz with x, y each
_NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test"), "all": ("x", "y")}


def _npz_arrays(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, Path]], dict]:
    """{part: (x, y, where)} and the arrays of the file holding the training data."""
    if path.is_dir():
        found = {part: path / f"{part}.npz" for part in ("train", "test")}
        missing = [str(f) for f in found.values() if not f.is_file()]
        if missing:
            raise UserError(f"{path}: missing {', '.join(missing)}; pass data.data_dir=FILE.npz "
                            f"or a folder with train.npz and test.npz; {NPZ_FIX}")
        read = {part: formats.read_npz(f, fix=NPZ_FIX) for part, f in found.items()}
        return {part: _xy(read[part], ("x", "y"), found[part]) for part in found}, read["train"]
    arrays = formats.read_npz(path, fix=NPZ_FIX)
    split = [p for p in ("train", "test") if set(_NPZ_KEYS[p]) <= arrays.keys()]
    parts = ("train", "test") if len(split) == 2 else ("all",)
    return {part: _xy(arrays, _NPZ_KEYS[part], path) for part in parts}, arrays


def _xy(arrays: dict, keys: tuple[str, str], path: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """The images and labels stored under ``keys``, converted and checked for each other."""
    absent = [k for k in keys if k not in arrays]
    if absent:
        raise UserError(f"{path} has no array {', '.join(absent)} (it holds: "
                        f"{', '.join(sorted(arrays)) or 'nothing'}); {NPZ_FIX}")
    x = formats.image_array(arrays[keys[0]], f"{path}: {keys[0]}", fix=NPZ_FIX)
    y = formats.label_array(arrays[keys[1]], len(x), f"{path}: {keys[1]}", fix=NPZ_FIX)
    return x, y, path


def _npz_class_names(arrays: dict, labels: list[np.ndarray], path: Path) -> tuple[str, ...]:
    """The optional array class_names, else "0".."K-1" for K = the largest label + 1."""
    names = arrays.get("class_names")
    if names is None:
        return tuple(str(k) for k in range(max(int(y.max()) for y in labels) + 1))
    if names.ndim != 1 or names.dtype.kind != "U":
        raise UserError(f"{path}: class_names must be a 1-D array of strings, found {names.dtype} "
                        f"{list(names.shape)}; {NPZ_FIX}")
    return tuple(str(n) for n in names)


@DATASETS.register("npz", status=lambda: (True, "your arrays: data.data_dir=FILE.npz or DIR"),
                   description="your NumPy arrays x, y (FILE.npz, or DIR/train.npz + DIR/test.npz)")
def npz(data_dir: str | Path | None = None, *, test_fraction: float | None = None,
        seed: int = 0) -> Dataset:
    """NumPy arrays: data_dir is a .npz file with x_train, y_train, x_test, y_test (Keras's
    mnist.npz), or with x, y (split per class into test_fraction, default 0.2, test images with
    ``seed``), or a folder with train.npz and test.npz holding x, y each. x: uint8 in 0..255 or
    float in [0, 1] (rounded to 1/255), shaped N,H,W (grey) or N,H,W,C or N,C,H,W with C = 1
    or 3 (channels-last when the last axis is 1 or 3); y: integer labels [N] or [N, 1]. An
    optional array class_names (strings) names the classes, else they are "0".."K-1" with
    K = the largest label + 1; negative labels, or labels >= K, are refused."""
    path = _user_path("npz", data_dir, NPZ_FIX)
    arrays, train_file = _npz_arrays(path)
    class_names = _npz_class_names(train_file, [y for _, y, _ in arrays.values()], path)
    parts = {part: _to_split(x, y, len(class_names), where, NPZ_FIX)
             for part, (x, y, where) in arrays.items()}
    return _user_dataset("npz", parts, class_names, test_fraction=test_fraction, seed=seed,
                         where=path, fix=NPZ_FIX)
