"""What every attack shares: the model guard, input checks, input gradients, seeded noise.

An attack runs the model in eval mode with its parameters frozen and gives back the caller's
exact state (every module's mode, every parameter's requires_grad); it differentiates the loss
w.r.t. the input only (`torch.autograd.grad`), so parameter `.grad` and BN statistics never move.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Protocol

import torch
from torch import Tensor, nn

from robustlab.errors import UserError


class Attack(Protocol):
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """x_adv (detached, same shape/dtype/device as x) for inputs x in [0, 1], labels y."""
        ...


def check_inputs(x: Tensor, y: Tensor, target: Tensor | None = None) -> None:
    """Clear errors for inputs no attack can be trusted on."""
    if not torch.is_floating_point(x) or x.dim() < 2:
        raise UserError(f"x must be a float batch [B, C, H, W] in [0, 1], got {x.dtype} {list(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise UserError(f"y must be [B] labels matching x's batch of {x.shape[0]}, got {list(y.shape)}")
    if x.numel() and not torch.isfinite(x).all():
        raise UserError("x holds NaN or inf values; attacks need finite images in [0, 1]")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise UserError(
            f"x must lie in [0, 1] (got values in [{x.min().item():.3g}, {x.max().item():.3g}]): "
            "pass unnormalized images; normalization belongs inside the model"
        )
    if target is not None:
        if target.shape != y.shape:
            raise UserError(f"target must be [B] like y, got {list(target.shape)}")
        if (target == y).any():
            raise UserError(
                f"{int((target == y).sum())} target(s) equal the true label; a targeted attack "
                "needs a different class for every sample"
            )


def warn_if_probabilities(logits: Tensor) -> None:
    """Attacks need logits: softmax outputs flatten CE gradients (Carlini & Wagner 2017)."""
    if logits.numel() and logits.min() >= 0 and torch.allclose(
        logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-3
    ):
        warnings.warn(
            "the model's outputs are in [0, 1] and sum to 1: they look like probabilities; "
            "attacks need logits (remove the final softmax)", stacklevel=3,
        )


def input_grad(per_sample_loss: Tensor, x: Tensor) -> Tensor:
    """d sum(loss) / dx: each sample's gradient of its own loss (samples are independent in eval
    mode)."""
    (grad,) = torch.autograd.grad(per_sample_loss.sum(), x)
    return grad


def sample_seeds(x: Tensor, seed: int, *salt: object) -> list[int]:
    """One seed per sample from its content, so an attack's randomness does not depend on the
    batch a sample arrives in (same result for any batch size)."""
    data = x.detach().to("cpu", torch.float32).contiguous().numpy()
    head = repr((seed, *salt)).encode()
    return [
        int.from_bytes(hashlib.blake2b(head + row.tobytes(), digest_size=8).digest(), "little") >> 1
        for row in data
    ]


def seeded_uniform(x: Tensor, seed: int, *salt: object) -> Tensor:
    """U[0, 1) noise shaped like x, each sample drawn from its own content-derived seed."""
    noise = [
        torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(s))
        for s in sample_seeds(x, seed, *salt)
    ]
    return torch.stack(noise).to(x.device, x.dtype) if noise else torch.empty_like(x)
