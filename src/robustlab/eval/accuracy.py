"""Top-1 accuracy of a model over batches."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from robustlab.models.modes import eval_mode


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
             device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy in eval mode; the caller's train/eval mode is restored."""
    correct = total = 0
    with eval_mode(model):
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    return correct / max(1, total)
