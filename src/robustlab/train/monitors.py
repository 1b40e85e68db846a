"""What training watches: clean accuracy of a model over batches."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
             device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy in eval mode; the caller's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    finally:
        model.train(was_training)
    return correct / max(1, total)
