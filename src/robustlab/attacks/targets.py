"""Target classes for targeted attacks: functions (logits, y, generator) -> target [B]."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# (logits [B, K], y [B], per-sample seeds) -> target [B]; only the random rule uses the seeds.
TargetRule = Callable[[Tensor, Tensor, "list[int]"], Tensor]


def least_likely(logits: Tensor, y: Tensor, seeds=()) -> Tensor:
    """y_LL = argmin_c p(c | x) (Kurakin et al. 2017; step_ll / iter_ll in the Cascade paper).
    Ties with the true label are impossible unless all logits are equal; then it takes another class."""
    masked = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("inf"))
    return masked.argmin(1)


def most_confusing(logits: Tensor, y: Tensor, seeds=()) -> Tensor:
    """y_mc = argmin_{c != y} L(f(x), c) = argmax_{c != y} z_c (AGKD-BML eq. 5)."""
    masked = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return masked.argmax(1)


def random_other(logits: Tensor, y: Tensor, seeds=()) -> Tensor:
    """A uniformly random class other than y, drawn from each sample's own seed."""
    k = logits.shape[1]
    shift = [int(torch.randint(1, k, (), generator=torch.Generator().manual_seed(s))) for s in seeds]
    return (y + torch.tensor(shift, dtype=y.dtype, device=y.device)) % k


TARGETS: dict[str, TargetRule] = {
    "least_likely": least_likely,
    "most_confusing": most_confusing,
    "random": random_other,
}
