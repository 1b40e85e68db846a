"""robustlab.data: readers on tiny files in the real formats, errors, batching, augmentation."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from robustlab.data import (
    DATASETS,
    Batches,
    ClassIndex,
    Split,
    dataset_status,
    horizontal_flip,
    load_dataset,
    random_crop,
    validation_split,
)
from robustlab.data.datasets import FASHION_MNIST_CLASSES
from robustlab.errors import UserError

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


# ------------------------------------------------------------------------------ file writers


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """IDX: big-endian magic 0x0000 08 ND, ND big-endian u32 dims, raw ubyte data."""
    magic = 0x800 | array.ndim if magic is None else magic
    raw = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def make_idx_dir(directory: Path, *, gz: bool = False, n_train: int = 12, n_test: int = 6,
                 size: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for name, array in arrays.items():
        write_idx(directory / (name + (".gz" if gz else "")), array)
    return arrays


def make_cifar10_dir(directory: Path, *, protocol: int = 2, per_batch: int = 4,
                     meta: bool = True) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True, exist_ok=True)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    data = rng.integers(0, 256, (len(files) * per_batch, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(len(data))]
    for k, name in enumerate(files):
        rows = slice(k * per_batch, (k + 1) * per_batch)
        batch = {b"batch_label": b"x", b"data": data[rows], b"labels": labels[rows]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    if meta:
        names = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}
        (directory / "batches.meta").write_bytes(pickle.dumps(names, protocol=protocol))
    return data, labels


def make_svhn_dir(directory: Path, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    directory.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 is digit 0
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy.io.savemat(directory / name, {"X": x, "y": y})
    return x, y


def one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def tiny_split(n: int = 40, num_classes: int = 4, size: int = 6, channels: int = 1) -> Split:
    images = torch.arange(n * channels * size * size).reshape(n, channels, size, size) % 251
    return Split(images.to(torch.uint8), torch.arange(n) % num_classes)


# ------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("subfolder", [False, True])
def test_idx_loads_plain_and_gz_flat_or_in_subfolder(tmp_path, gz, subfolder):
    arrays = make_idx_dir(tmp_path / "mnist" if subfolder else tmp_path, gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.train.images.shape == (12, 1, 5, 5) and ds.test.images.shape == (6, 1, 5, 5)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.image_shape == (1, 5, 5) and ds.in_channels == 1 and ds.image_size == 5
    assert np.array_equal(ds.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.num_classes == 10 and ds.source == str(tmp_path / "mnist" if subfolder else tmp_path)
    expected_mean = arrays["train-images-idx3-ubyte"].astype(np.float64).mean() / 255
    expected_std = (arrays["train-images-idx3-ubyte"].astype(np.float64) / 255).std()
    assert ds.mean[0] == pytest.approx(expected_mean) and ds.std[0] == pytest.approx(expected_std)


def test_fashion_mnist_from_data_dir_has_its_class_names(tmp_path):
    make_idx_dir(tmp_path / "fashion-mnist", gz=True)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert ds.class_names == FASHION_MNIST_CLASSES and ds.class_names[0] == "T-shirt/top"


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nope")
    one_line_error(e, str(tmp_path / "nope"), "apt-get install dataset-fashion-mnist")


def test_missing_file_is_named(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    message = one_line_error(e, "missing t10k-labels-idx1-ubyte", "--data-dir")
    assert "train-images" not in message  # only what is actually missing


def test_wrong_magic_number(tmp_path):
    make_idx_dir(tmp_path)
    labels = np.zeros((12, 5, 5), np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", labels, magic=0x00000801)
    with pytest.raises(UserError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    one_line_error(e, "train-images-idx3-ubyte", "magic", "0x00000803")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx(tmp_path, gz):
    make_idx_dir(tmp_path, gz=gz)
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    raw = struct.pack(">4I", 0x803, 6, 5, 5) + bytes(6 * 25 - 1)
    (tmp_path / name).write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(UserError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    one_line_error(e, name, "truncated")


def test_corrupt_gzip_is_named(tmp_path):
    make_idx_dir(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(UserError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    one_line_error(e, str(path), "gzip")


def test_label_out_of_range(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0] * 11 + [10], np.uint8))
    with pytest.raises(UserError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    one_line_error(e, "train-labels-idx1-ubyte", "label 10", "index 11")


def test_image_label_count_mismatch(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11, np.uint8))
    with pytest.raises(UserError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    one_line_error(e, "12 images", "11 labels", "train-labels-idx1-ubyte")


def test_environment_variable_is_searched(tmp_path, monkeypatch):
    make_idx_dir(tmp_path / "store" / "mnist")
    monkeypatch.chdir(tmp_path)  # ./data must not be the repo's
    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    status = {name: (ok, where) for name, ok, where in dataset_status()}
    assert status["mnist"][0] is False and "yann.lecun.com" in status["mnist"][1]
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "store"))
    status = {name: (ok, where) for name, ok, where in dataset_status()}
    assert status["mnist"] == (True, str(tmp_path / "store" / "mnist"))
    assert len(load_dataset("mnist").train) == 12


def test_dataset_status_lists_every_registered_dataset():
    rows = dataset_status()
    assert [name for name, _, _ in rows] == DATASETS.names()
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "digits", "synthetic",
            "folder", "npz"} <= {name for name, _, _ in rows}
    status = {name: ok for name, ok, _ in rows}
    assert status["synthetic"] and status["digits"]
    assert status["folder"] and status["npz"]  # your own data: nothing to install


def test_unknown_dataset_and_unknown_option_are_user_errors():
    with pytest.raises(UserError, match="imagenet"):
        load_dataset("imagenet")
    with pytest.raises(UserError, match="num_colors"):
        load_dataset("synthetic", num_colors=3)
    with pytest.raises(UserError, match="does not take options.*accepts: test_fraction, seed"):
        load_dataset("folder", num_colors=3)


# ------------------------------------------------------------------------------ CIFAR pickles


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_pickles(tmp_path, protocol):
    data, labels = make_cifar10_dir(tmp_path / "cifar-10-batches-py", protocol=protocol)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (4, 3, 32, 32)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    # row layout: 1024 red (row-major 32x32), then green, then blue
    assert ds.train.images[5, 1, 2, 3] == data[5, 1024 + 2 * 32 + 3]
    assert np.array_equal(ds.test.images.reshape(4, -1).numpy(), data[20:])
    assert ds.train.labels.tolist() == labels[:20] and ds.test.labels.tolist() == labels[20:]
    assert ds.class_names == tuple(f"c{i}" for i in range(10))


def test_cifar_pickle_naming_numpy_core_as_the_original_files_do(tmp_path):
    # the Toronto files were pickled by numpy 1 (numpy.core.multiarray); numpy 2 renamed it
    data, _ = make_cifar10_dir(tmp_path, protocol=2)
    for name in ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        path = tmp_path / name
        raw = path.read_bytes()
        assert b"numpy._core.multiarray" in raw
        path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert np.array_equal(ds.test.images.reshape(4, -1).numpy(), data[20:])


def test_cifar10_without_meta_uses_standard_names(tmp_path):
    make_cifar10_dir(tmp_path, meta=False)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.class_names[0] == "airplane" and ds.class_names[-1] == "truck"


def test_cifar100_fine_labels(tmp_path):
    directory = tmp_path / "cifar-100-python"
    directory.mkdir()
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    (directory / "train").write_bytes(pickle.dumps(
        {b"data": train, b"fine_labels": [0, 99, 5, 6, 7, 8], b"coarse_labels": [0] * 6}))
    (directory / "test").write_bytes(pickle.dumps(
        {b"data": train[:2], b"fine_labels": [42, 1], b"coarse_labels": [0, 0]}))
    (directory / "meta").write_bytes(pickle.dumps(
        {b"fine_label_names": [f"f{i}".encode() for i in range(100)]}))
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and ds.class_names[99] == "f99"
    assert ds.train.labels.tolist() == [0, 99, 5, 6, 7, 8] and ds.test.labels.tolist() == [42, 1]
    assert np.array_equal(ds.train.images.reshape(6, -1).numpy(), train)


def test_cifar_missing_archive_names_the_download(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", data_dir=tmp_path)
    one_line_error(e, "missing data_batch_1", "cifar-10-python.tar.gz", "cifar-10-batches-py")


class _WriteFile:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


class _Shell:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("payload", [_WriteFile, _Shell])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, payload):
    make_cifar10_dir(tmp_path)
    target = tmp_path / "pwned"
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 4, b"x": payload(target)}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", data_dir=tmp_path)
    one_line_error(e, "data_batch_3", "refused")
    assert not target.exists()
    # the payload is real: an ordinary unpickler would have run it
    control = tmp_path / "control"
    result = pickle.loads(pickle.dumps(payload(control)))
    if hasattr(result, "close"):
        result.close()
    assert control.exists()


def test_corrupt_pickle(tmp_path):
    make_cifar10_dir(tmp_path)
    (tmp_path / "test_batch").write_bytes((tmp_path / "test_batch").read_bytes()[:100])
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", data_dir=tmp_path)
    one_line_error(e, "test_batch", "corrupt pickle")


def test_cifar_wrong_array_shape(tmp_path):
    make_cifar10_dir(tmp_path)
    bad = {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(bad))
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", data_dir=tmp_path)
    one_line_error(e, "data_batch_2", "[N, 3072]", "[4, 1024]")


# ------------------------------------------------------------------------------ SVHN


def test_svhn_mat(tmp_path):
    x, y = make_svhn_dir(tmp_path / "svhn", n=12)
    ds = load_dataset("svhn", data_dir=tmp_path)
    assert ds.train.images.shape == (12, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert ds.train.images[4, 2, 7, 9] == x[7, 9, 2, 4]
    assert ds.train.labels.tolist() == [(v % 10) for v in y.ravel().tolist()]
    assert ds.train.labels[9] == 0  # stored as 10
    assert ds.train.labels.dtype == torch.int64


def test_svhn_corrupt_mat(tmp_path):
    make_svhn_dir(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 garbage" * 10)
    with pytest.raises(UserError) as e:
        load_dataset("svhn", data_dir=tmp_path)
    one_line_error(e, "test_32x32.mat", "corrupt")


def test_svhn_wrong_shape(tmp_path):
    make_svhn_dir(tmp_path)
    scipy.io.savemat(tmp_path / "train_32x32.mat",
                     {"X": np.zeros((28, 28, 1, 3), np.uint8), "y": np.ones((3, 1), np.uint8)})
    with pytest.raises(UserError) as e:
        load_dataset("svhn", data_dir=tmp_path)
    one_line_error(e, "train_32x32.mat", "[32, 32, 3, N]")


# ------------------------------------------------------------------------------ bundled data


def test_digits():
    ds = load_dataset("digits")
    assert ds.image_shape == (1, 8, 8) and len(ds.train) + len(ds.test) == 1797
    assert len(ds.test) == pytest.approx(1797 * 0.2, abs=10)
    assert int(ds.train.images.max()) == 255 and ds.source == "scikit-learn"
    assert (torch.bincount(ds.test.labels, minlength=10) >= 30).all()
    again = load_dataset("digits")
    assert torch.equal(ds.test.labels, again.test.labels)
    assert torch.equal(ds.test.images, again.test.images)


def test_synthetic_is_deterministic_and_learnable():
    ds = load_dataset("synthetic", num_classes=5, in_channels=3, image_size=12, seed=3)
    assert ds.image_shape == (3, 12, 12) and len(ds.train) == 512 and len(ds.test) == 256
    assert ds.source == "generated" and len(ds.mean) == 3
    same = load_dataset("synthetic", num_classes=5, in_channels=3, image_size=12, seed=3)
    other = load_dataset("synthetic", num_classes=5, in_channels=3, image_size=12, seed=4)
    assert torch.equal(ds.train.images, same.train.images)
    assert not torch.equal(ds.train.images, other.train.images)
    # nearest class mean (fitted on train) classifies test well above chance (0.2)
    x_train, x_test = ds.train.images.flatten(1).float(), ds.test.images.flatten(1).float()
    centers = torch.stack([x_train[ds.train.labels == c].mean(0) for c in range(5)])
    accuracy = (torch.cdist(x_test, centers).argmin(1) == ds.test.labels).float().mean()
    assert accuracy > 0.9
    # but it is not trivially noiseless
    assert ds.train.images[ds.train.labels == 0].float().std(0).mean() > 20
    mean = (ds.train.images.double() / 255).mean(dim=(0, 2, 3))
    assert ds.mean == pytest.approx(tuple(mean.tolist()))


def test_synthetic_rejects_bad_sizes():
    with pytest.raises(UserError, match="train_size"):
        load_dataset("synthetic", train_size=0)


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_system_fashion_mnist():
    ds = load_dataset("fashion-mnist", data_dir=SYSTEM_FASHION)
    assert ds.train.images.shape == (60000, 1, 28, 28)
    assert ds.test.images.shape == (10000, 1, 28, 28)
    assert ds.num_classes == 10 and torch.bincount(ds.test.labels).tolist() == [1000] * 10
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3)  # the published statistics
    assert ds.std[0] == pytest.approx(0.3530, abs=1e-3)


# ------------------------------------------------------------------------------ Split


def test_split_checks_types_and_subset_keeps_order():
    with pytest.raises(ValueError):
        Split(torch.zeros(2, 1, 3, 3), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError):
        Split(torch.zeros(2, 1, 3, 3, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    split = tiny_split()
    sub = split.subset(torch.tensor([5, 1]))
    assert len(sub) == 2 and sub.labels.tolist() == [1, 1]
    assert torch.equal(sub.images[0], split.images[5])


def test_validation_split_is_stratified_disjoint_and_deterministic():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([50, 30, 20])])
    images = torch.arange(100).to(torch.uint8).reshape(100, 1, 1, 1).expand(100, 1, 2, 2)
    shuffle = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    split = Split(images.contiguous(), labels[shuffle])
    train, val = validation_split(split, 0.2, seed=1)
    assert torch.bincount(val.labels).tolist() == [10, 6, 4]
    ids_train = set(train.images[:, 0, 0, 0].tolist())
    ids_val = set(val.images[:, 0, 0, 0].tolist())
    assert not ids_train & ids_val and len(ids_train | ids_val) == 100
    assert torch.equal(validation_split(split, 0.2, seed=1)[1].images, val.images)
    assert not torch.equal(validation_split(split, 0.2, seed=2)[1].images, val.images)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(UserError):
            validation_split(split, bad, seed=0)


# ------------------------------------------------------------------------------ Batches


def epoch_ids(batches: Batches, epoch: int, start: int = 0) -> list[int]:
    # unique_split: the first pixel of each image is its sample id
    lookup = {int(v): i for i, v in enumerate(batches.split.images[:, 0, 0, 0])}
    return [lookup[round(float(v) * 255)]
            for x, _ in batches.epoch(epoch, start) for v in x[:, 0, 0, 0]]


def unique_split(n: int) -> Split:
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    images[:, 0, 1:, :] = 200
    return Split(images, torch.arange(n) % 3)


def test_batches_shapes_dtypes_and_range():
    split = tiny_split(n=37, channels=3)
    batches = Batches(split, 8, shuffle=True, seed=0)
    got = list(batches)
    assert len(batches) == 5 and len(got) == 5
    assert [len(y) for _, y in got] == [8, 8, 8, 8, 5]
    for x, y in got:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (3, 6, 6) and 0 <= x.min() and x.max() <= 1
    assert any(x.max() > 0.9 for x, _ in got)  # scaled by 255, not by the batch max or 256
    dropped = Batches(split, 8, shuffle=True, drop_last=True)
    assert len(dropped) == 4 and [len(y) for _, y in dropped] == [8] * 4


def test_every_sample_once_per_epoch_and_orders_are_seeded():
    split = unique_split(50)
    a = Batches(split, 7, shuffle=True, seed=5)
    order0 = epoch_ids(a, 0)
    assert sorted(order0) == list(range(50))
    assert order0 != list(range(50))
    assert epoch_ids(Batches(split, 7, shuffle=True, seed=5), 0) == order0
    assert epoch_ids(a, 1) != order0
    assert epoch_ids(Batches(split, 7, shuffle=True, seed=6), 0) != order0
    assert epoch_ids(Batches(split, 7, shuffle=False), 3) == list(range(50))


def test_labels_travel_with_images():
    split = unique_split(30)
    for x, y in Batches(split, 4, shuffle=True, seed=2):
        ids = (x[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(y, split.labels[ids])


@pytest.mark.parametrize("augment", [False, True])
def test_resume_mid_epoch_is_bit_exact(augment):
    split = tiny_split(n=45)
    batches = Batches(split, 6, shuffle=True, seed=9, augment=augment)
    full = list(batches.epoch(2))
    tail = list(Batches(split, 6, shuffle=True, seed=9, augment=augment).epoch(2, start=3))
    assert len(tail) == len(full) - 3
    for (x1, y1), (x2, y2) in zip(full[3:], tail, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert list(batches.epoch(2, start=len(batches))) == []


def test_two_ranks_partition_an_epoch():
    split = unique_split(40)
    ranks = [Batches(split, 6, shuffle=True, seed=1, rank=r, world_size=2) for r in (0, 1)]
    ids = [epoch_ids(b, 4) for b in ranks]
    assert len(ids[0]) == len(ids[1]) == 20 and len(ranks[0]) == 4
    assert not set(ids[0]) & set(ids[1]) and set(ids[0]) | set(ids[1]) == set(range(40))
    # same permutation as one process, dealt round-robin
    whole = epoch_ids(Batches(split, 40, shuffle=True, seed=1), 4)
    assert ids[0] == whole[0::2] and ids[1] == whole[1::2]


def test_uneven_shards_wrap_around_to_equal_size():
    split = unique_split(41)
    ranks = [Batches(split, 5, shuffle=True, seed=1, rank=r, world_size=3) for r in range(3)]
    ids = [epoch_ids(b, 0) for b in ranks]
    assert [len(i) for i in ids] == [14, 14, 14]
    assert set().union(*map(set, ids)) == set(range(41))
    assert sum(map(len, ids)) - len(set().union(*map(set, ids))) == 1  # one wrapped sample


def test_augmentation_changes_images_deterministically():
    split = tiny_split(n=64)
    plain = torch.cat([x for x, _ in Batches(split, 16, shuffle=False)])
    aug = torch.cat([x for x, _ in Batches(split, 16, shuffle=False, augment=True, seed=3)])
    again = torch.cat([x for x, _ in Batches(split, 16, shuffle=False, augment=True, seed=3)])
    assert aug.shape == plain.shape and torch.equal(aug, again)
    assert torch.equal(plain, split.images.float() / 255)  # no augmentation unless asked
    # unchanged only for a zero shift and no flip: probability 1/81 * 1/2
    assert (aug != plain).flatten(1).any(1).float().mean() > 0.9
    assert not torch.equal(aug, torch.cat([x for x, _ in Batches(split, 16, shuffle=False,
                                                                   augment=True, seed=3).epoch(1)]))


# ------------------------------------------------------------------------------ augmentation ops


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[i, j] = image[i + dy, j + dx], zero outside."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(0, -dy):min(h, h - dy), max(0, -dx):min(w, w - dx)] = \
        image[..., max(0, dy):min(h, h + dy), max(0, dx):min(w, w + dx)]
    return out


def test_random_crop_is_a_pure_shift_with_zero_fill():
    image = (torch.arange(2 * 8 * 8) % 250 + 1).to(torch.uint8).reshape(1, 2, 8, 8)
    batch = image.repeat(64, 1, 1, 1)
    out = random_crop(batch, 3, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    shifts = set()
    for k in range(64):
        matches = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                   if torch.equal(out[k], shifted(image[0], dy, dx))]
        assert len(matches) == 1, k
        shifts.add(matches[0])
    assert len(shifts) > 10
    assert max(abs(dy) for dy, _ in shifts) == 3  # the full range is reachable
    assert torch.equal(random_crop(batch, 0, None), batch)


def test_horizontal_flip():
    x = torch.arange(32 * 3 * 4 * 5).reshape(32, 3, 4, 5).to(torch.uint8)
    out = horizontal_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, s.flip(-1)) for o, s in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, x, strict=True)])
    assert (flipped ^ kept).all() and 5 < flipped.sum() < 27
    assert torch.equal(horizontal_flip(x, torch.Generator(), p=0.0), x)
    assert torch.equal(horizontal_flip(x, torch.Generator(), p=1.0), x.flip(-1))


# ------------------------------------------------------------------------------ ClassIndex


def test_class_index_draws_requested_classes_with_variety():
    split = tiny_split(n=60, num_classes=5)
    index = ClassIndex(split)
    wanted = torch.tensor([0, 4, 4, 2, 1, 3] * 50)
    g = torch.Generator().manual_seed(0)
    idx = index.indices_of_classes(wanted, g)
    assert idx.shape == wanted.shape and torch.equal(split.labels[idx], wanted)
    for c in range(5):
        assert len(set(idx[wanted == c].tolist())) >= 8  # 12 candidates per class
    images = index.sample_of_classes(wanted, torch.Generator().manual_seed(0))
    assert images.dtype == torch.float32 and images.shape == (300, 1, 6, 6)
    assert torch.equal(images, split.images[idx].float() / 255)


def test_class_index_refuses_absent_classes():
    index = ClassIndex(tiny_split(n=8, num_classes=2))
    with pytest.raises(UserError, match="class"):
        index.indices_of_classes(torch.tensor([0, 2]))
