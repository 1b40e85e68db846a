"""SPSA: a gradient-free attack from finite differences along random directions.

Uesato, O'Donoghue, van den Oord & Kohli, "Adversarial Risk and the Dangers of Evaluating Against
Weak Attacks", ICML 2018 (Sec. 3.1, Algorithm 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks.base import check_inputs, sample_seeds, seeded_uniform
from robustlab.attacks.build import register_bounded
from robustlab.attacks.losses import LOSSES, is_adversarial
from robustlab.attacks.threat import Threat
from robustlab.errors import check_ranges
from robustlab.models.modes import frozen_eval

_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8  # Kingma & Ba (2015) defaults, as in the paper's Adam


@dataclass(frozen=True)
class SPSA:
    """Projected Adam ascent on an SPSA estimate of the loss gradient (Uesato et al. 2018, Alg. 1).

    g = 1/n sum_i [L(x + delta v_i) - L(x - delta v_i)] / (2 delta) * v_i,  v_i ~ Rademacher^D
    (Spall 1992; n/2 antithetic pairs, i.e. `samples` model evaluations per step), then
    x <- Proj_{B(x0, eps) & [0,1]}(x + Adam_lr(g)). The model is only queried for scores, under
    `torch.no_grad`: no autograd at all, so gradient masking cannot hide the loss surface.
    Probes x +- delta v may leave [0, 1] by delta (as in the reference implementation); iterates
    never do. A sample stops at its first adversarial iterate (the reference code's early stop
    at loss threshold 0), checked after each update, so every sample moves at least once.

    Args:
        threat: the ball (norm, eps) inside [0, 1].
        steps: Adam updates; samples: model evaluations per update (even: samples/2 pairs);
        delta: the finite-difference probe size; lr: Adam's learning rate.
        loss: "cw" (the paper's margin loss, clamped at `kappa`; inf: unclamped), "ce" or "dlr".
        random_start: start uniformly in the ball, as the reference implementation does.
        seed: probes and random start are drawn per sample from (seed, its content).
        chunk: model inputs per forward call (memory only; results do not depend on it).
    """

    threat: Threat = Threat()
    steps: int = 100
    samples: int = 128
    delta: float = 0.01
    lr: float = 0.01
    loss: str = "cw"
    kappa: float = math.inf
    random_start: bool = True
    seed: int = 0
    chunk: int = 4096

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.steps, int) and self.steps >= 1, "steps", self.steps, "an integer >= 1"),
            (isinstance(self.samples, int) and self.samples >= 2 and self.samples % 2 == 0, "samples",
             self.samples, "an even integer >= 2 (antithetic pairs)"),
            (isinstance(self.chunk, int) and self.chunk >= 1, "chunk", self.chunk, "an integer >= 1"),
            (self.delta > 0, "delta", self.delta, "> 0"),
            (self.lr > 0, "lr", self.lr, "> 0"),
            (self.loss in LOSSES and self.loss != "kl", "loss", self.loss, "one of ce, cw, dlr"),
        ]
        check_ranges(checks)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        check_inputs(x, y, target)
        x = x.detach()
        loss_fn = LOSSES[self.loss](**({"kappa": self.kappa} if self.loss == "cw" else {}))
        gens = [torch.Generator().manual_seed(s) for s in sample_seeds(x, self.seed, "spsa")]
        with frozen_eval(model), torch.no_grad():
            if self.random_start:
                radius = seeded_uniform(x, self.seed, "radius").flatten(1)[:, 0]
                x_adv = self.threat.random_start(x, seeded_uniform(x, self.seed, "start"), radius)
            else:
                x_adv = x.clone()
            m, v = torch.zeros_like(x), torch.zeros_like(x)
            active = torch.arange(len(x), device=x.device)
            for t in range(1, self.steps + 1):
                if not len(active):
                    break
                ts = target[active] if target is not None else None
                own = [gens[i] for i in active.tolist()]
                g = self.gradient(model, loss_fn, x_adv[active], y[active], ts, own)
                m[active] = _BETAS[0] * m[active] + (1 - _BETAS[0]) * g
                v[active] = _BETAS[1] * v[active] + (1 - _BETAS[1]) * g * g
                step = self.lr * (m[active] / (1 - _BETAS[0] ** t)) / (
                    (v[active] / (1 - _BETAS[1] ** t)).sqrt() + _ADAM_EPS)
                x_adv[active] = self.threat.project(x_adv[active] + step, x[active])  # ascent
                active = active[~is_adversarial(model(x_adv[active]), y[active], ts)]
        return x_adv.detach()

    def gradient(self, model: nn.Module, loss_fn, x: Tensor, y: Tensor, target: Tensor | None,
                 gens: list[torch.Generator]) -> Tensor:
        """The SPSA estimate [A, ...] of d loss / dx at each x, from `samples` evaluations each."""
        half = self.samples // 2
        signs = torch.stack([torch.randint(0, 2, (half, *x.shape[1:]), generator=g) for g in gens])
        v = (2 * signs - 1).to(x.device, x.dtype)
        v = torch.cat([v, -v], 1)  # [A, samples, ...]: antithetic pairs
        probes = (x[:, None] + self.delta * v).flatten(0, 1)
        ys = y.repeat_interleave(self.samples)
        ts = None if target is None else target.repeat_interleave(self.samples)
        values = torch.cat([
            loss_fn(model(probes[i:i + self.chunk]), ys[i:i + self.chunk],
                    None if ts is None else ts[i:i + self.chunk])
            for i in range(0, len(probes), self.chunk)
        ]).view(len(x), self.samples, *[1] * (x.dim() - 1))
        # mean over +-v of L(x + delta v) v / delta == mean over pairs of (L+ - L-) v / (2 delta)
        return (values * v).mean(1) / self.delta


register_bounded(
    "spsa", SPSA, norms=("linf", "l2"), kind="gradient_free",
    paper="SPSA, Uesato et al. ICML 2018 (Alg. 1): Adam (lr 0.01) on an SPSA gradient estimate "
          "from 128 Rademacher probes of size 0.01, 100 steps, margin loss; no autograd",
    steps=100, samples=128, delta=0.01, lr=0.01,
)
