"""In-memory splits, deterministic (resumable, shardable) batching and batch augmentation.

Data stays uint8 on the CPU; each batch is augmented on uint8 and converted to float in [0, 1]
on its way out. Every random choice comes from a `torch.Generator` seeded by `derive_seed` of
(seed, epoch[, rank, batch]) only, so an epoch resumed at batch k is bit-identical to the tail of
the uninterrupted epoch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustlab.errors import UserError


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on ``parts`` (stable across runs, platforms and versions)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


# eq=False: field-wise == on tensors is ambiguous; splits compare by identity
@dataclass(frozen=True, eq=False)
class Split:
    """Images uint8 [N, C, H, W] (contiguous, CPU) and labels int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"Split.images must be uint8 [N, C, H, W], got {self.images.dtype} "
                             f"{list(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(f"Split.labels must be int64 [N], got {self.labels.dtype} "
                             f"{list(self.labels.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"Split has {len(self.images)} images but {len(self.labels)} labels")
        if self.images.device.type != "cpu" or self.labels.device.type != "cpu":
            raise ValueError("Split tensors must live on the CPU (batches move to the device)")
        # frozen: contiguity is fixed once here so indexing stays fast
        object.__setattr__(self, "images", self.images.contiguous())
        object.__setattr__(self, "labels", self.labels.contiguous())

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> Split:
        """The samples at ``index`` (int indices or a bool mask), in that order."""
        index = torch.as_tensor(index, device="cpu")
        return Split(self.images[index], self.labels[index])


def validation_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(train, val): ``round(fraction * n_c)`` random samples of each class c go to val.

    Deterministic in ``seed``; both parts keep the original sample order.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(split)
    g = _generator("validation_split", seed)
    perm = torch.randperm(n, generator=g)
    # stable sort by label after a random permutation: each class block is in random order
    order = perm[torch.sort(split.labels[perm], stable=True).indices]
    sorted_labels = split.labels[order]
    counts = torch.bincount(sorted_labels)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(n) - starts[sorted_labels]
    n_val = torch.floor(counts.double() * fraction + 0.5).long()
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[order] = rank_in_class < n_val[sorted_labels]
    if not is_val.any() or is_val.all():
        raise UserError(
            f"validation fraction {fraction} leaves an empty part of {n} samples; "
            f"choose a fraction between {1 / max(n, 1):.3g} and {1 - 1 / max(n, 1):.3g}"
        )
    return split.subset(~is_val), split.subset(is_val)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch back to [B, C, H, W] (a random shift by
    up to ``padding`` pixels in each direction); one gather, no per-sample loop."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    device = generator.device if generator is not None else torch.device("cpu")
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=device)
    offsets = offsets.to(x.device)
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)  # [B, W]
    return padded[
        torch.arange(b, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def horizontal_flip(x: torch.Tensor, generator: torch.Generator | None,
                    p: float = 0.5) -> torch.Tensor:
    """Mirror each sample left-right with probability ``p``."""
    device = generator.device if generator is not None else torch.device("cpu")
    flip = torch.rand(len(x), generator=generator, device=device).to(x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class Batches:
    """Iterable of (x float32 [B, C, H, W] in [0, 1] on ``device``, y int64) over a `Split`.

    The order of epoch e is a permutation drawn from a generator seeded by (seed, e) only; every
    rank draws the same one, padded by wrapping around to a multiple of ``world_size``, and rank r
    takes every world_size-th index from r (as torch's DistributedSampler). Augmentation (4 px
    crop + horizontal flip) of batch b uses a generator seeded by (seed, e, rank, b) only.
    """

    def __init__(self, split: Split, batch_size: int, *, shuffle: bool, seed: int = 0,
                 augment: bool = False, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, device: str | torch.device = "cpu"):
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        if len(split) == 0:
            raise UserError("cannot batch an empty split (check data limits and fractions)")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        # per rank, after wrap-around padding
        self.num_samples = (len(split) + world_size - 1) // world_size

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return (self.num_samples + self.batch_size - 1) // self.batch_size

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices for ``epoch``, in batch order."""
        n = len(self.split)
        if self.shuffle:
            order = torch.randperm(n, generator=_generator("batches", self.seed, epoch))
        else:
            order = torch.arange(n)
        total = self.num_samples * self.world_size
        if total > n:  # wrap around (repeatedly if world_size > n) so all ranks get equal shares
            order = order.repeat(-(-total // n))[:total]
        return order[self.rank :: self.world_size]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` from batch index ``start`` (to resume mid-epoch)."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in [0, {len(self)}], got {start}")
        index = self.indices(epoch)
        for b in range(start, len(self)):
            idx = index[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.split.images[idx]
            if self.augment:
                g = _generator("augment", self.seed, epoch, self.rank, b)
                x = horizontal_flip(random_crop(x, 4, g), g)
            # move uint8 (4x fewer bytes) and convert on the device
            x = x.to(self.device, non_blocking=True).float().div_(255)
            yield x, self.split.labels[idx].to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
