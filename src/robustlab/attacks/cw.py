"""Carlini & Wagner's L2 attack: minimal-distortion adversarial examples by optimisation.

Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017
(Sec. V-A and VI: the L2 attack with the tanh change of variables and objective f6).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.base import (
    check_inputs,
    input_grad,
    sample_seeds,
    warn_if_probabilities,
)
from robustlab.attacks.losses import cw_margin, is_adversarial
from robustlab.attacks.params import attack_params, check_norm
from robustlab.attacks.presets import ATTACKS
from robustlab.attacks.targets import TARGETS
from robustlab.attacks.threat import Threat
from robustlab.errors import UserError, check_ranges
from robustlab.models.modes import frozen_eval

_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8  # Adam (Kingma & Ba 2015) defaults, as in CW's code
_ATANH_SCALE = 1 - 1e-6  # keeps atanh finite at pixels 0 and 1 (CW's reference code: 0.999999)


def cw_objective(x_adv: Tensor, x: Tensor, logits: Tensor, y: Tensor, target: Tensor | None,
                 const: Tensor, kappa: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample (objective, ||x' - x||_2^2, f(x')) of CW eq. (before Sec. V-A's change of
    variables) ||x' - x||_2^2 + c f(x'), with f6:
    f(x') = max(z_y - max_{j!=y} z_j, -kappa) untargeted, max(max_{j!=t} z_j - z_t, -kappa)
    targeted, i.e. `-cw_margin` (which is increased by the attacks that ascend it)."""
    dist = (x_adv - x).flatten(1).pow(2).sum(1)
    f = -cw_margin(logits, y, target, kappa)
    return dist + const * f, dist, f


@dataclass(frozen=True)
class CWL2:
    """The Carlini-Wagner L2 attack (Carlini & Wagner 2017, Sec. VI).

    x' = (tanh(w) + 1) / 2 (Sec. V-A, box constraint by change of variables) and Adam on w
    minimises ||x' - x||_2^2 + c f6(x') (`cw_objective`), from w = atanh(2x - 1). The constant c
    is searched per sample: it starts at `initial_const`, is multiplied by 10 while no
    adversarial example is found, and bisected once bounded. Each sample keeps its smallest-L2
    adversarial point over all iterations and constants (the original x when none is found).
    With `abort_early`, a sample's run at one c stops when its objective has not decreased by
    0.01% over steps // 10 iterations (CW's reference code; per sample here, so a sample's
    result does not depend on its batch).

    Args:
        steps: Adam iterations per constant (CW: max_iterations 1000 for the full attack).
        search_steps: constants tried per sample (binary search steps, CW: 9).
        initial_const: first c (CW: 1e-3); lr: Adam's learning rate (CW: 0.01).
        kappa: confidence; success requires a margin of at least kappa (CW: 0).
        target: None (untargeted, or targets passed to the call) or a rule of
            `robustlab.attacks.targets.TARGETS` applied on the clean input.
        eps: None: unbounded minimal-distortion attack. A number: the final points are projected
            into the L2 ball of radius eps (points whose smallest adversarial distortion exceeds
            eps are then usually not adversarial: counted as robust at eps).
        seed: random targets are drawn per sample from (seed, its content).
        penalty: an extra term of the objective, `penalty(model, x_adv, y, target) -> (value [B],
            ok [B])`, with `ok` what must also hold for a point to count (Carlini & Wagner,
            "Adversarial examples are not easily detected", 2017: the KDE-evading C&W-wb adds
            max(tau - log KDE_t(x'), 0) for its target class t and needs that density above tau).
    """

    steps: int = 1000
    search_steps: int = 9
    initial_const: float = 1e-3
    lr: float = 0.01
    kappa: float = 0.0
    abort_early: bool = True
    target: str | None = None
    eps: float | None = None
    seed: int = 0
    penalty: Callable[..., tuple[Tensor, Tensor]] | None = None

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.steps, int) and self.steps >= 1, "steps", self.steps, "an integer >= 1"),
            (isinstance(self.search_steps, int) and self.search_steps >= 1, "search_steps",
             self.search_steps, "an integer >= 1"),
            (self.initial_const > 0, "initial_const", self.initial_const, "> 0"),
            (self.lr > 0, "lr", self.lr, "> 0"),
            (self.kappa >= 0, "kappa", self.kappa, ">= 0"),
            (self.target is None or self.target in TARGETS, "target", self.target,
             f"null or one of {', '.join(TARGETS)}"),
            (self.eps is None or (isinstance(self.eps, (int, float)) and self.eps >= 0), "eps",
             self.eps, "null (unbounded) or a number >= 0"),
        ]
        check_ranges(checks)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        check_inputs(x, y, target)
        x = x.detach()
        n = len(x)
        best, best_l2 = x.clone(), torch.full((n,), math.inf, device=x.device)
        const = torch.full((n,), float(self.initial_const), device=x.device, dtype=x.dtype)
        lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
        with frozen_eval(model), torch.enable_grad():
            with torch.no_grad():
                clean_logits = model(x)
            warn_if_probabilities(clean_logits)
            if self.target is not None and target is None:
                target = TARGETS[self.target](clean_logits, y, sample_seeds(x, self.seed, "target"))
            for _ in range(self.search_steps):
                found = self._minimise(model, x, y, target, const, best, best_l2)
                # Binary search on c (CW Sec. VI): bisect once an upper bound exists, else x10.
                upper = torch.where(found, torch.minimum(upper, const), upper)
                lower = torch.where(found, lower, torch.maximum(lower, const))
                const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
        if self.eps is not None:
            best = Threat("l2", self.eps).project(best, x)
        return best.detach()

    def _minimise(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, const: Tensor,
                  best: Tensor, best_l2: Tensor) -> Tensor:
        """One Adam run at constants `const` from w = atanh(2x - 1); updates each sample's
        smallest-L2 adversarial point (`best`, `best_l2`) in place and returns [B] bool: found
        an adversarial point at this c."""
        n, shape = len(x), (-1, *[1] * (x.dim() - 1))
        w0 = torch.atanh((2 * x - 1) * _ATANH_SCALE)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        mod, m, v = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)
        prev = torch.full((n,), math.inf, device=x.device, dtype=x.dtype)
        rows = torch.arange(n, device=x.device)
        for it in range(self.steps):
            ts = target[rows] if target is not None else None
            w = (w0[rows] + mod[rows]).requires_grad_(True)
            x_adv = (torch.tanh(w) + 1) / 2
            logits = model(x_adv)
            obj, dist, _ = cw_objective(x_adv, x[rows], logits, y[rows], ts, const[rows], self.kappa)
            ok = None
            if self.penalty is not None:
                extra, ok = self.penalty(model, x_adv, y[rows], ts)
                obj = obj + const[rows] * extra
            grad = input_grad(obj, w)
            with torch.no_grad():
                hit = is_adversarial(logits, y[rows], ts)
                if ok is not None:
                    hit &= ok
                if self.kappa > 0:
                    hit &= cw_margin(logits, y[rows], ts, math.inf) >= self.kappa
                found[rows] |= hit
                better = hit & (dist < best_l2[rows])
                best_l2[rows] = torch.where(better, dist.to(best_l2.dtype), best_l2[rows])
                best[rows] = torch.where(better.view(shape), x_adv, best[rows])
                m[rows] = _BETAS[0] * m[rows] + (1 - _BETAS[0]) * grad
                v[rows] = _BETAS[1] * v[rows] + (1 - _BETAS[1]) * grad * grad
                mod[rows] -= self.lr * (m[rows] / (1 - _BETAS[0] ** (it + 1))) / (
                    (v[rows] / (1 - _BETAS[1] ** (it + 1))).sqrt() + _ADAM_EPS)
                if self.abort_early and it % max(self.steps // 10, 1) == 0:
                    stalled = obj > prev[rows] * 0.9999  # no 0.01% progress since the last check
                    prev[rows] = obj
                    rows = rows[~stalled]
                    if not len(rows):
                        break
        return found


def _factory(eps: float | None = None, norm: str = "l2", bound: bool = False, **params: Any) -> CWL2:
    """CW-L2 is a minimal-distortion attack: eps is ignored unless bound=True, which projects
    its result into the L2 ball of radius eps."""
    check_norm("cw_l2", norm, ("l2",))
    if bound and eps is None:
        raise UserError("cw_l2 with bound=True needs eps (the L2 radius, e.g. eps=1.0)")
    merged = attack_params("cw_l2", CWL2, params, _DEFAULTS, extra=("bound",))
    return CWL2(**merged, eps=eps if bound else None)


_DEFAULTS = dict(steps=1000, search_steps=9, initial_const=1e-3, lr=0.01, kappa=0.0)
_PAPER = ("CW-L2, Carlini & Wagner S&P 2017 (Sec. VI): Adam (lr 0.01, 1000 steps) in tanh space on "
          "||x'-x||^2 + c f6, 9 binary-search steps on c from 1e-3; minimal distortion (eps is "
          "ignored unless bound=True)")
_factory.__doc__ = _PAPER
ATTACKS.register("cw_l2", paper=_PAPER, defaults=_DEFAULTS, norms=("l2",), bounded=False,
                 kind="iterative")(_factory)
