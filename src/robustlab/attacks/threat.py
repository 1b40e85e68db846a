"""The threat model: an L-inf or L2 ball of radius eps around x, inside the [0, 1] box."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.errors import UserError

NORMS = ("linf", "l2")


def _per_sample_norm(t: Tensor, norm: str) -> Tensor:
    flat = t.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def _expand(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


@dataclass(frozen=True)
class Threat:
    """Allowed perturbations: ||x_adv - x||_norm <= eps and 0 <= x_adv <= 1.

    eps is in the [0, 1] input scale (normalization lives inside the model), e.g. 8/255 on CIFAR
    and 0.1 on Fashion-MNIST.
    """

    norm: str = "linf"
    eps: float = 8 / 255

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise UserError(f"norm={self.norm!r} is not supported: choose one of {', '.join(NORMS)}")
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or self.eps < 0:
            raise UserError(f"eps={self.eps!r} is out of range: expected a number >= 0")
        if self.norm == "linf" and self.eps > 1:
            raise UserError(
                f"eps={self.eps} is larger than the [0, 1] input range: L-inf eps is in input "
                "units (e.g. 8/255 = 0.0314 or 0.1), not in 0-255 pixel values"
            )

    def norm_of(self, delta: Tensor) -> Tensor:
        """Per-sample norm [B] of a perturbation."""
        return _per_sample_norm(delta, self.norm)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """The point of the ball-and-box set nearest to x_adv (exact for L-inf; for L2, radial
        scaling then clipping, which stays inside both sets since the box clip only shrinks
        the perturbation)."""
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            n = _expand(self.norm_of(delta), delta)
            delta = delta * torch.where(n > self.eps, self.eps / n.clamp_min(1e-12), torch.ones_like(n))
        return (x + delta).clamp(0, 1)

    def ascent(self, grad: Tensor, step_size: float) -> Tensor:
        """The steepest-ascent step of length step_size for this norm: sign for L-inf, the
        normalized gradient for L2 (Madry et al. 2018, Sec. 2)."""
        if self.norm == "linf":
            return step_size * grad.sign()
        n = _expand(self.norm_of(grad), grad).clamp_min(1e-12)
        return step_size * grad / n

    def random_start(self, x: Tensor, noise: Tensor, radius_noise: Tensor | None = None) -> Tensor:
        """A random point of the ball from U[0, 1) noise the caller draws (so it controls the
        seeding): uniform in the L-inf cube; for L2 a Gaussian direction (inverse CDF of `noise`)
        at radius eps * u^(1/d), u from `radius_noise` [B] (uniform in the ball)."""
        if self.norm == "linf":
            delta = (2 * noise - 1) * self.eps
        else:
            gauss = torch.special.ndtri(noise.clamp(1e-6, 1 - 1e-6))
            direction = gauss / _expand(gauss.flatten(1).norm(dim=1).clamp_min(1e-12), gauss)
            u = radius_noise if radius_noise is not None else torch.ones(len(x), device=x.device)
            delta = direction * _expand(self.eps * u.pow(1 / gauss[0].numel()), gauss)
        return self.project(x + delta, x)
