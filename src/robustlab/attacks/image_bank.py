"""A bank of adversarial versions of a whole training split, made once and memory-mapped
(cascade adversarial training, Na et al. 2018 Sec. 6: iter_FGSM images of the training set from
an already defended network, injected into later runs).

A bank is a directory:

    images.npy  uint8 [N, C, H, W]: image i's adversarial version, in 0-255 (lossless: every
                iter_FGSM step is +-1/255 from a uint8 image and the clip keeps integers)
    eps.npy     uint8 [N]: the eps image i was attacked with, in 0-255 units
    done.npy    bool [N]: which images are written (generation resumes from the rest)
    meta.json   what made it: attack, max_eps, source checkpoint, the split's SHA-1, seed

The arrays are opened with numpy memory maps, so a 60,000-image bank costs no memory until a
batch reads its rows, and several runs can read one bank at once.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from robustlab import __version__
from robustlab.attacks.pgd import TRAINING_ITERATE
from robustlab.attacks.presets import ATTACKS
from robustlab.errors import UserError
from robustlab.io import atomic_write_text

FORMAT = "robustlab-image-bank/1"


def split_digest(images: Tensor) -> str:
    """SHA-1 of a split's uint8 images: a bank is only reused for exactly the images it was made from."""
    return hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest()


class ImageBank:
    """Read access to a finished bank: `ImageBank(path)[indices]` -> float images in [0, 1]."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise UserError(f"{self.path} is not an image bank (no meta.json); make it with make_bank")
        self.meta = json.loads(meta_file.read_text())
        if self.meta.get("format") != FORMAT:
            raise UserError(f"{self.path} is not a robustlab image bank (format {FORMAT} expected)")
        done = np.load(self.path / "done.npy", mmap_mode="r")
        if not done.all():
            raise UserError(f"the image bank {self.path} is incomplete ({int(done.sum())} of {len(done)} "
                            "images); run the same training again to finish making it")
        self.images = np.load(self.path / "images.npy", mmap_mode="r")
        self.eps = np.load(self.path / "eps.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: Tensor) -> Tensor:
        rows = np.asarray(index.cpu(), dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise UserError(f"image bank index out of range [0, {len(self)}): the bank was made for "
                            "another training split")
        return torch.from_numpy(self.images[rows]).float().div_(255)  # fancy indexing copies the rows


def make_bank(path: str | Path, model: nn.Module, images: Tensor, labels: Tensor, *,
              attack: str = "iter_fgsm",
              max_eps: int = 16, seed: int = 0, source: str = "", batch: int = 500,
              device: str | torch.device = "cpu", log: Callable[[str], None] = print) -> ImageBank:
    """Attack every image of `images` (uint8 [N, C, H, W]) with `attack` at an eps drawn uniformly
    from 1..max_eps (0-255 units) per image, and store the results in a bank at `path`.

    The Cascade paper generates its bank "for eps = 1, 2, ..., 16" and uses the images "randomly";
    one version per image at a random eps of that grid keeps the bank the size of the split.
    Resumable: a bank with the same settings is finished, not restarted; one with other settings
    or made from other images is an error (delete it or choose another path).
    """
    path = Path(path)
    if images.dtype != torch.uint8 or images.dim() != 4 or labels.shape != (len(images),):
        raise UserError(f"make_bank needs uint8 images [N, C, H, W] and labels [N], got {images.dtype} "
                        f"{tuple(images.shape)} and {tuple(labels.shape)}")
    if not 1 <= max_eps <= 255:
        raise UserError(f"max_eps={max_eps} is out of range: an integer eps in 0-255 units, 1..255")
    ATTACKS.get(attack)  # unknown names fail before any work
    meta: dict[str, Any] = {"format": FORMAT, "attack": attack, "max_eps": int(max_eps), "seed": seed,
                            "source": source, "images": len(images), "shape": list(images.shape[1:]),
                            "split_sha1": split_digest(images)}
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as lock:
        # Two runs sharing a source would otherwise create or fill the same files at once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        _fill(path, meta, model, images, labels, attack, max_eps, seed, batch, device, log)
    return ImageBank(path)


def _fill(path: Path, meta: dict, model: nn.Module, images: Tensor, labels: Tensor, attack: str,
          max_eps: int, seed: int, batch: int, device, log: Callable[[str], None]) -> None:
    meta_file = path / "meta.json"
    n = len(images)
    if meta_file.is_file():
        saved = json.loads(meta_file.read_text())
        differs = sorted(k for k in meta if saved.get(k) != meta[k])
        if differs:
            raise UserError(f"{path} holds an image bank made with other settings ({', '.join(differs)}); "
                            "delete it or give another path")
        done = np.load(path / "done.npy", mmap_mode="r")
        if done.all():  # finished: nothing to write (the bank may sit on read-only storage)
            return
        images_mm = np.load(path / "images.npy", mmap_mode="r+")
        done = np.load(path / "done.npy", mmap_mode="r+")
        eps = np.load(path / "eps.npy", mmap_mode="r")
    else:
        rng = np.random.default_rng(seed)
        np.save(path / "eps.npy", rng.integers(1, max_eps + 1, size=n).astype(np.uint8))
        images_mm = np.lib.format.open_memmap(path / "images.npy", "w+", np.uint8, tuple(images.shape))
        done = np.lib.format.open_memmap(path / "done.npy", "w+", np.bool_, (n,))
        atomic_write_text(meta_file, json.dumps({**meta, "created": _now(), "robustlab_version": __version__},
                                                indent=1) + "\n")
        eps = np.load(path / "eps.npy", mmap_mode="r")
    todo = int((~done).sum())
    if todo:
        log(f"making the {attack} image bank {path}: {todo} of {n} training images, eps 1..{max_eps}/255")
    bar = tqdm(total=todo, desc=f"{attack} bank", unit="img", disable=None if todo else True,
               leave=False, dynamic_ncols=True)
    for e in range(1, max_eps + 1):
        rows = np.flatnonzero((eps == e) & ~done)
        if not len(rows):
            continue
        build = ATTACKS.build(attack, eps=e / 255, iterate=TRAINING_ITERATE)
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            rows_t = torch.from_numpy(chunk)
            x = images[rows_t].to(device).float().div(255)
            x_adv = build(model, x, labels[rows_t].to(device)).cpu()
            # Each step is +-1/255 from a uint8 image: rounding only removes float error.
            images_mm[chunk] = (x_adv * 255).round().clamp(0, 255).to(torch.uint8).numpy()
            images_mm.flush()
            done[chunk] = True  # after the images, so an interruption never marks unwritten rows
            done.flush()
            bar.update(len(chunk))
    bar.close()
    del images_mm, done


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class SourceImages:
    """The Cascade paper's saved iter_FGSM images of a frozen source network, made when read.

    The paper saves image i's iter_FGSM version for every eps = 1, 2, ..., max_e (Table 5's
    P2_iter_FGSM_train) and uses them "randomly during training": each read here draws an eps
    uniformly from 1..max_eps (0-255 units) per image, with torch's global generator (which
    checkpoints save), and attacks the unaugmented split image at that eps. The source is frozen
    and iter_FGSM has no random start, so this is a draw from the paper's bank of all versions,
    at one iter_FGSM per read instead of max_eps per image made upfront.
    `SourceImages(...)[indices]` -> float images in [0, 1] on the source's device.
    """

    def __init__(self, model: nn.Module, images: Tensor, labels: Tensor, max_eps: int,
                 attack: str = "iter_fgsm"):
        if not 1 <= max_eps <= 255:
            raise UserError(f"max_eps={max_eps} is out of range: an integer eps in 0-255 units, 1..255")
        self.model, self.images, self.labels = model.eval(), images, labels
        self.max_eps, self.attack = int(max_eps), attack
        self.device = next(model.parameters()).device

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: Tensor) -> Tensor:
        index = index.cpu()
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise UserError(f"saved-image index out of range [0, {len(self)}): another training split")
        eps = torch.randint(1, self.max_eps + 1, (len(index),))
        x = self.images[index].float().div(255).to(self.device)
        y = self.labels[index].to(self.device)
        out = torch.empty_like(x)
        for e in eps.unique().tolist():  # one attack call per drawn eps: its step count depends on it
            rows = (eps == e).nonzero().flatten().to(self.device)
            attack = ATTACKS.build(self.attack, eps=e / 255, iterate=TRAINING_ITERATE)
            out[rows] = attack(self.model, x[rows], y[rows])
        return out
