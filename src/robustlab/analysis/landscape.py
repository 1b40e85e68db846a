"""The loss around a test point (ATAT Fig. 7): CE on x + a d1 + b d2 for d1 the sign of the input
gradient and d2 a Rademacher direction, each of L-inf size 1, over a grid of (a, b)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.base import input_grad
from robustlab.models.modes import frozen_eval


def loss_landscape(model: nn.Module, x: Tensor, y: Tensor, radius: float = 0.1, steps: int = 21,
                   seed: int = 0) -> dict:
    """Losses [steps, steps] of each image (mean over the images given) at x + a sign(grad) +
    b r, a and b in [-radius, radius]; inputs are clipped to [0, 1]. A flat surface is what
    ATAT reports for robust models; a sharp one, for standard ones."""
    generator = torch.Generator().manual_seed(seed)
    with frozen_eval(model), torch.enable_grad():
        probe = x.clone().requires_grad_(True)
        grad_dir = input_grad(F.cross_entropy(model(probe), y, reduction="none"), probe).sign()
        rademacher = (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1).to(x)
        alphas = torch.linspace(-radius, radius, steps)
        losses = torch.empty(steps, steps)
        with torch.no_grad():
            for i, a in enumerate(alphas):
                for j, b in enumerate(alphas):
                    moved = (x + a * grad_dir + b * rademacher).clamp(0, 1)
                    losses[i, j] = F.cross_entropy(model(moved), y).item()
    return {"alphas": alphas.numpy(), "losses": losses.numpy(), "images": len(x)}
