"""Per-image outcomes in a report: which images each attack left correct, which attack broke
each image first, and a digest of the images, so two reports can be paired image by image
(`robustlab compare`) and only when they were made on the same images.

Masks are bit-packed (numpy.packbits, big-endian bit order) and base64-encoded: 10,000 images
take 1,668 characters per attack.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import torch
from torch import Tensor

ROBUST_UNDER_ALL, WRONG_CLEAN = 0, 1  # first_broken_by codes; attack k (0-based) is k + 2


def pack(mask: Tensor) -> str:
    bits = np.packbits(mask.detach().cpu().numpy().astype(bool))
    return base64.b64encode(bits.tobytes()).decode("ascii")


def unpack(text: str, n: int) -> Tensor:
    bits = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    return torch.from_numpy(np.unpackbits(bits)[:n].astype(bool))


def images_digest(x: Tensor, y: Tensor) -> str:
    """sha256 of the images (float32 bytes) and labels (int64 bytes), in order."""
    digest = hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes())
    digest.update(y.detach().cpu().long().contiguous().numpy().tobytes())
    return digest.hexdigest()


def outcomes(n: int, digest: str, clean: Tensor | None, robust: dict[str, Tensor],
             worst_case: list[str]) -> dict:
    """The report's `outcomes`: the images' count `n` and `digest` (`images_digest`), the clean mask,
    each attack's mask of images correct under it, and per image the first `worst_case` attack
    that broke it."""
    result = {"images": {"count": n, "digest": digest},
              "clean": pack(clean) if clean is not None else None,
              "robust": {label: pack(mask) for label, mask in robust.items()}}
    if clean is not None and worst_case:
        first = torch.where(clean, ROBUST_UNDER_ALL, WRONG_CLEAN).to(torch.uint8)
        alive = clean.clone()
        for k, label in enumerate(worst_case):
            newly = alive & ~robust[label]
            first[newly] = k + 2
            alive &= robust[label]
        result["first_broken_by"] = {
            "codes": base64.b64encode(first.numpy().tobytes()).decode("ascii"),
            "legend": ["robust under every attack", "wrong without attack", *worst_case]}
    return result


def first_broken_by(report: dict) -> list[str]:
    """Per image, what the legend says of it (the reverse of `outcomes`)."""
    entry = report["outcomes"]["first_broken_by"]
    codes = np.frombuffer(base64.b64decode(entry["codes"]), dtype=np.uint8)
    return [entry["legend"][c] for c in codes]
