"""Your own data sets: `folder` (PNG / JPEG class folders) and `npz` (NumPy arrays), on files
written here; their layouts, conversions, every refused input, and a training run on each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.config import load_config
from robustlab.data import load_dataset
from robustlab.errors import UserError
from robustlab.experiment import evaluate_clean, train

CLASSES = ("cat", "dog", "owl")


def grey(label: int, k: int, size: int = 8) -> np.ndarray:
    """A distinct, class-dependent grey image: class label is bright in its own band of rows."""
    image = np.full((size, size), 10 * (k % 10), dtype=np.uint8)
    rows = slice(label * size // 3, (label + 1) * size // 3)
    image[rows] = 200 + k
    return image


def write_folder(root: Path, *, per_class: int = 4, size: int = 8, split: bool = True,
                 mode: str = "L") -> dict[Path, np.ndarray]:
    """Class folders of PNGs (train/test or flat); returns each file's pixels as written."""
    written = {}
    for part, count in ((("train", per_class), ("test", 2)) if split else (("", per_class),)):
        for label, name in enumerate(CLASSES):
            folder = root / part / name
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = grey(label, k, size)
                if mode == "RGB":
                    pixels = np.stack([pixels, 255 - pixels, pixels // 2], axis=2)
                Image.fromarray(pixels).save(folder / f"{k}.png")
                written[folder / f"{k}.png"] = pixels
    return written


def grey_set(n: int = 12, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % 3
    return np.stack([grey(int(label), k, size) for k, label in enumerate(y)]), y


def error(match: str, name: str, path, **options) -> str:
    """The one-line UserError loading ``name`` from ``path`` gives; it must contain ``match``."""
    with pytest.raises(UserError) as err:
        load_dataset(name, data_dir=path, **options)
    message = str(err.value)
    assert match in message and "\n" not in message, message
    return message


# ------------------------------------------------------------------------------ folder


def test_folder_with_train_and_test(tmp_path):
    written = write_folder(tmp_path)
    ds = load_dataset("folder", data_dir=tmp_path)
    assert ds.class_names == CLASSES and ds.num_classes == 3
    assert ds.train.images.shape == (12, 1, 8, 8) and ds.test.images.shape == (6, 1, 8, 8)
    assert ds.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4  # sorted class folders
    assert ds.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    # pixels exactly as written: dog's second training image is the 6th (sorted files)
    assert torch.equal(ds.train.images[5, 0], torch.from_numpy(written[tmp_path / "train/dog/1.png"]))
    assert ds.source == str(tmp_path) and 0 < ds.mean[0] < 1


def test_folder_without_a_split_is_split_per_class_with_a_seed(tmp_path):
    write_folder(tmp_path, per_class=5, split=False)
    ds = load_dataset("folder", data_dir=tmp_path)
    assert (len(ds.train), len(ds.test)) == (12, 3)  # round(0.2 * 5) = 1 test image per class
    assert sorted(ds.test.labels.tolist()) == [0, 1, 2]
    again = load_dataset("folder", data_dir=tmp_path)
    assert torch.equal(ds.test.images, again.test.images)
    other = load_dataset("folder", data_dir=tmp_path, seed=1, test_fraction=0.4)
    assert len(other.test) == 6
    error("test_fraction=1.5 is out of range", "folder", tmp_path, test_fraction=1.5)


def test_folder_colour_and_a_mix_of_grey_and_colour_are_rgb(tmp_path):
    written = write_folder(tmp_path / "rgb", mode="RGB")
    ds = load_dataset("folder", data_dir=tmp_path / "rgb")
    assert ds.image_shape == (3, 8, 8) and len(ds.mean) == 3
    pixels = written[tmp_path / "rgb/train/cat/0.png"]
    assert torch.equal(ds.train.images[0], torch.from_numpy(pixels).permute(2, 0, 1))
    write_folder(tmp_path / "mix")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).convert("RGBA").save(tmp_path / "mix/test/owl/rgba.png")
    mixed = load_dataset("folder", data_dir=tmp_path / "mix")
    assert mixed.image_shape == (3, 8, 8)
    grey_image = mixed.train.images[0]  # cat/0.png, grey: its value in all three channels
    assert torch.equal(grey_image[0], grey_image[1]) and torch.equal(grey_image[0], grey_image[2])


def test_folder_reads_jpeg_and_skips_other_and_hidden_files(tmp_path):
    write_folder(tmp_path)
    Image.fromarray(grey(0, 0)).save(tmp_path / "train/cat/extra.JPG", format="JPEG")
    (tmp_path / "train/cat/README.txt").write_text("not an image")
    (tmp_path / "train/cat/._0.png").write_bytes(b"macOS metadata")
    (tmp_path / "train/.cache").mkdir()
    (tmp_path / "train/dog/.thumbs").mkdir()
    Image.fromarray(grey(1, 0)).save(tmp_path / "train/dog/.thumbs/0.png")
    ds = load_dataset("folder", data_dir=tmp_path)
    assert len(ds.train) == 13 and ds.class_names == CLASSES


def test_folder_bad_inputs(tmp_path):
    error("pass data.data_dir=PATH", "folder", None)
    error(f"{tmp_path / 'nowhere'} does not exist", "folder", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    error("has no class sub-folders", "folder", tmp_path / "empty")
    (tmp_path / "one/cat").mkdir(parents=True)
    Image.fromarray(grey(0, 0)).save(tmp_path / "one/cat/0.png")
    error("1 class (cat); a classifier needs at least 2", "folder", tmp_path / "one")
    (tmp_path / "one/dog").mkdir()
    error("one/dog holds no PNG or JPEG images", "folder", tmp_path / "one")


def test_folder_bad_layouts(tmp_path):
    write_folder(tmp_path / "a")
    (tmp_path / "a/test/bat").mkdir()
    Image.fromarray(grey(0, 0)).save(tmp_path / "a/test/bat/0.png")
    error("class 'bat' is not among the training classes (cat, dog, owl)", "folder", tmp_path / "a")
    write_folder(tmp_path / "b")
    for f in (tmp_path / "b/test").rglob("*.png"):
        f.unlink()
    for d in (tmp_path / "b/test").iterdir():
        d.rmdir()
    error("b/test has no class sub-folders", "folder", tmp_path / "b")
    (tmp_path / "c/train/cat").mkdir(parents=True)
    error("has train/ but no test/", "folder", tmp_path / "c")
    write_folder(tmp_path / "d")
    error("has its own train and test parts: drop data.options.test_fraction", "folder",
          tmp_path / "d", test_fraction=0.2)


def test_folder_bad_images(tmp_path):
    write_folder(tmp_path)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "test/owl/small.png")
    message = error("small.png is 6x8 but", "folder", tmp_path)
    assert "every image must have one size" in message
    (tmp_path / "test/owl/small.png").unlink()
    (tmp_path / "test/owl/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    error("broken.png: cannot read as an image", "folder", tmp_path)
    (tmp_path / "test/owl/broken.png").unlink()
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / "test/owl/deep.png")
    error("deep.png: a I;16 image (more than 8 bits a channel)", "folder", tmp_path)


def test_folder_truncated_image_and_non_square_images(tmp_path):
    write_folder(tmp_path / "t")
    full = (tmp_path / "t/train/cat/0.png").read_bytes()
    (tmp_path / "t/train/cat/0.png").write_bytes(full[: len(full) // 2])
    error("0.png: cannot read as an image", "folder", tmp_path / "t")
    for name in CLASSES[:2]:
        (tmp_path / "r" / name).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "r" / name / f"{k}.png")
    error("the images are 8x10 (height x width); robustlab's models take square images", "folder",
          tmp_path / "r")


# ------------------------------------------------------------------------------ npz


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_npz_one_file_is_split_and_each_layout_reads_the_same(tmp_path, layout):
    x, y = grey_set()
    stored = {"nhw": x, "nhwc": x[..., None], "nchw": x[:, None]}[layout]
    np.savez(tmp_path / "d.npz", x=stored, y=y)
    ds = load_dataset("npz", data_dir=tmp_path / "d.npz")
    assert ds.class_names == ("0", "1", "2")
    assert (len(ds.train), len(ds.test)) == (9, 3) and ds.image_shape == (1, 8, 8)
    joined = torch.cat([ds.train.images, ds.test.images])
    assert sorted(map(bytes, joined.numpy())) == sorted(map(bytes, x[:, None]))


def test_npz_keras_layout_floats_and_class_names(tmp_path):
    x, y = grey_set()
    rgb = np.stack([x, x, 255 - x], axis=1)  # N,3,H,W
    np.savez(tmp_path / "k.npz", x_train=rgb[:9] / 255, y_train=y[:9, None], x_test=rgb[9:] / 255,
             y_test=y[9:, None], class_names=np.array(["a", "b", "c"]))
    ds = load_dataset("npz", data_dir=tmp_path / "k.npz")
    assert ds.class_names == ("a", "b", "c") and ds.image_shape == (3, 8, 8)
    assert torch.equal(ds.train.images, torch.from_numpy(rgb[:9]))  # k / 255 rounds back to k
    assert ds.test.labels.tolist() == y[9:].tolist()
    error("has its own train and test parts", "npz", tmp_path / "k.npz", test_fraction=0.3)


def test_npz_folder_with_train_and_test(tmp_path):
    x, y = grey_set()
    np.savez(tmp_path / "train.npz", x=x[:8, ..., None].repeat(3, axis=3), y=y[:8])
    np.savez_compressed(tmp_path / "test.npz", x=x[8:, ..., None].repeat(3, axis=3), y=y[8:])
    ds = load_dataset("npz", data_dir=tmp_path)
    assert ds.image_shape == (3, 8, 8) and (len(ds.train), len(ds.test)) == (8, 4)
    assert ds.source == str(tmp_path)
    (tmp_path / "test.npz").unlink()
    error("missing " + str(tmp_path / "test.npz"), "npz", tmp_path)


@pytest.mark.parametrize("arrays, match", [
    ({"x": grey_set()[0], "y": np.array([0, 1, 2, -1] * 3)}, "label -1 at index 3 is outside [0, 3)"),
    ({"x": grey_set()[0], "y": np.arange(12) % 3, "class_names": np.array(["a", "b"])},
     "label 2 at index 2 is outside [0, 2)"),
    ({"x": grey_set()[0] / 200, "y": np.arange(12) % 3}, "value 1.005 at image 1 is outside [0, 1]"),
    ({"x": np.full((12, 8, 8), np.nan), "y": np.arange(12) % 3}, "value nan at image 0 is outside"),
    ({"x": grey_set()[0], "y": np.arange(11) % 3}, "holds 11 labels for 12 images"),
    ({"x": grey_set()[0]}, "has no array y (it holds: x)"),
    ({"images": grey_set()[0]}, "has no array x, y (it holds: images)"),
    ({"x": grey_set()[0].astype(np.int64), "y": np.arange(12) % 3}, "x is int64: expected uint8"),
    ({"x": np.zeros((12, 8, 8, 4), np.uint8), "y": np.arange(12) % 3}, "x has shape [12, 8, 8, 4]"),
    ({"x": np.zeros((0, 8, 8), np.uint8), "y": np.zeros(0, int)}, "x holds no images"),
    ({"x": grey_set()[0], "y": (np.arange(12) % 3) * 1.0}, "y is float64: labels must be integers"),
    ({"x": grey_set()[0], "y": np.zeros(12, int)}, "1 class (0); a classifier needs at least 2"),
    ({"x": grey_set()[0], "y": np.arange(12) % 3, "class_names": np.array([1, 2, 3])},
     "class_names must be a 1-D array of strings"),
    ({"x": np.zeros((12, 8, 6), np.uint8), "y": np.arange(12) % 3}, "the images are 8x6"),
])
def test_npz_bad_arrays(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    error(match, "npz", tmp_path / "bad.npz")


def test_npz_bad_files(tmp_path):
    error("pass data.data_dir=PATH", "npz", None)
    error("does not exist", "npz", tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 this is no zip archive")
    error("junk.npz: not a readable .npz archive", "npz", tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", grey_set()[0])
    error("a single .npy array, not an .npz archive", "npz", tmp_path / "single.npy")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, int))
    error("obj.npz: not a readable .npz archive (ValueError: Object arrays", "npz", tmp_path / "obj.npz")
    x, y = grey_set()
    np.savez(tmp_path / "shapes.npz", x_train=x, y_train=y, x_test=x[:, :4, :4], y_test=y)
    error("train images are [1, 8, 8] but test images are [1, 4, 4]", "npz", tmp_path / "shapes.npz")


# ------------------------------------------------------------------------------ end to end


def tiny_run(tmp_path, name, data_dir):
    return load_config(None, [f"data.name={name}", f"data.data_dir={data_dir}", "model.name=lenet",
                              "data.batch_size=8", "train.epochs=1", "train.monitor_images=0",
                              f"out_dir={tmp_path / 'runs'}", f"name={name}_run"])


def test_training_and_evaluating_on_an_image_folder(tmp_path):
    write_folder(tmp_path / "images", per_class=8, size=28)
    run = train(tiny_run(tmp_path, "folder", tmp_path / "images"), log=lambda _: None)
    assert run.finished and run.epoch == 1
    result = evaluate_clean(tmp_path / "runs" / "folder_run")
    assert result["dataset"] == "folder" and result["test_images"] == 6
    assert 0 <= result["clean_accuracy"] <= 1


def test_training_and_evaluating_on_npz_arrays(tmp_path):
    x, y = grey_set(n=30, size=28)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    run = train(tiny_run(tmp_path, "npz", tmp_path / "d.npz"), log=lambda _: None)
    assert run.finished and run.epoch == 1
    result = evaluate_clean(tmp_path / "runs" / "npz_run")
    assert result["dataset"] == "npz" and result["test_images"] == 6
    assert 0 <= result["clean_accuracy"] <= 1
