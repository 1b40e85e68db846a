"""How the error surface around test points changes with one-step perturbations (the Cascade paper,
Na et al. 2018, Sec. 4): the softmax's arguments (Fig. 4, 6), the correlation between input
gradients (Fig. 5) and label leaking (Sec. 4.2), each over a grid of eps.

A one-step image at eps e is clip(x + e * d, 0, 1) for a direction d computed once
(`robustlab.attacks.sign_step`), so an eps sweep costs one forward (and one backward for the
gradients) per eps, not one attack per eps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks import sign_step
from robustlab.attacks.base import input_grad
from robustlab.errors import UserError
from robustlab.models.modes import frozen_eval

DIRECTIONS = ("step_ll", "step_fgsm", "random_sign")
# Fig. 5's pairs of images whose input gradients are compared
PAIRS = (("clean", "step_ll"), ("clean", "step_fgsm"), ("clean", "random_sign"), ("step_ll", "step_fgsm"))


def direction(method: str, model: nn.Module, x: Tensor, y: Tensor, seed: int = 0) -> Tensor:
    """The sign direction of `method`: step_ll / step_fgsm (the attack's step) or random_sign
    (a Rademacher sign per pixel, drawn from `seed`)."""
    if method == "random_sign":
        generator = torch.Generator().manual_seed(seed)
        return (torch.randint(0, 2, x.shape, generator=generator) * 2 - 1).to(x)
    if method not in DIRECTIONS:
        raise UserError(f"unknown direction {method!r}; choose from {', '.join(DIRECTIONS)}")
    return sign_step(method, model, x, y)


def _moved(x: Tensor, d: Tensor, eps: float) -> Tensor:
    return (x + eps * d).clamp(0, 1)


def _check_grid(eps_grid) -> list[float]:
    grid = [float(e) for e in eps_grid]
    if not grid or any(not 0 <= e <= 1 for e in grid):
        raise UserError(f"eps grid {grid} must be non-empty with every eps in [0, 1]")
    return grid


def softmax_arguments(model: nn.Module, x: Tensor, y: Tensor, eps_grid, method: str = "step_ll",
                      seed: int = 0) -> dict:
    """Fig. 4 / 6: at each eps, the mean and std over images of the true class's logit and of the
    mean of the false classes' logits at the `method` image."""
    grid = _check_grid(eps_grid)
    d = direction(method, model, x, y, seed)
    out = {"eps": grid, "method": method, "true_mean": [], "true_std": [], "false_mean": [], "false_std": []}
    with frozen_eval(model), torch.no_grad():
        for e in grid:
            logits = model(_moved(x, d, e))
            true = logits.gather(1, y[:, None]).squeeze(1)
            false = (logits.sum(1) - true) / (logits.shape[1] - 1)
            for key, values in (("true", true), ("false", false)):
                out[f"{key}_mean"].append(values.mean().item())
                out[f"{key}_std"].append(values.std(unbiased=False).item())
    return out


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of two [N, ...] tensors (each row flattened), [N]."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def _input_gradients(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with frozen_eval(model), torch.enable_grad():
        probe = x.detach().clone().requires_grad_(True)
        return input_grad(F.cross_entropy(model(probe), y, reduction="none"), probe)


def gradient_correlation(model: nn.Module, x: Tensor, y: Tensor, eps_grid, seed: int = 0) -> dict:
    """Fig. 5: at each eps, the mean and std over images of the Pearson correlation between the
    gradients of CE(., y_true) w.r.t. two images, for each pair of `PAIRS` (the clean image is
    the same at every eps)."""
    grid = _check_grid(eps_grid)
    dirs = {m: direction(m, model, x, y, seed) for m in DIRECTIONS}
    out: dict = {"eps": grid, **{f"{a}/{b}": {"mean": [], "std": []} for a, b in PAIRS}}
    clean_grad = _input_gradients(model, x, y)
    for e in grid:
        grads = {"clean": clean_grad,
                 **{m: _input_gradients(model, _moved(x, d, e), y) for m, d in dirs.items()}}
        for a, b in PAIRS:
            r = pearson(grads[a], grads[b])
            out[f"{a}/{b}"]["mean"].append(r.mean().item())
            out[f"{a}/{b}"]["std"].append(r.std(unbiased=False).item())
    return out


def label_leaking(model: nn.Module, x: Tensor, y: Tensor, eps_grid, method: str = "step_fgsm") -> dict:
    """Sec. 4.2: accuracy on the `method` images at each eps beside clean accuracy. The model
    leaks labels where a one-step attack that uses the true label makes it *more* accurate."""
    grid = _check_grid(eps_grid)
    d = direction(method, model, x, y)
    with frozen_eval(model), torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        accuracy = [(model(_moved(x, d, e)).argmax(1) == y).float().mean().item() for e in grid]
    leaks = [e for e, a in zip(grid, accuracy) if e > 0 and a > clean]
    return {"eps": grid, "method": method, "clean_accuracy": clean, "accuracy": accuracy,
            "leaking_eps": leaks, "leaks": bool(leaks)}


def eps_grid(max_eps: float, points: int = 11) -> list[float]:
    """points values from 0 to max_eps, evenly spaced."""
    if points < 2:
        raise UserError(f"an eps grid needs >= 2 points, got {points}")
    return np.linspace(0, max_eps, points).tolist()
