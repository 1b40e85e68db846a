"""Square Attack: score-based random search with square-shaped updates.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020 (Algorithm 1; L-inf updates Algorithm 2 / Sec. 3.1, L2
updates Algorithm 3 / Sec. 3.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn

from robustlab.attacks.base import check_inputs, sample_seeds
from robustlab.attacks.build import register_bounded
from robustlab.attacks.losses import LOSSES, is_adversarial
from robustlab.attacks.threat import Threat
from robustlab.errors import UserError, check_ranges
from robustlab.models.modes import frozen_eval

# An L-inf proposal that leaves the window unchanged (e.g. both signs clip to the same values)
# wastes a query; the reference code redraws its signs until it changes something. Bounded here
# so that degenerate windows (eps = 0) cannot loop forever.
_REDRAWS = 10


def p_schedule(p_init: float, it: int, n_iters: int) -> float:
    """The fraction p of pixels a square covers at iteration `it` of `n_iters`: p_init halved at
    iterations {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000} of a 10,000-query run, rescaled
    to `n_iters` (the paper's piecewise-constant schedule, Sec. 3 and its reference code)."""
    i = int(it / n_iters * 10000)
    for k, bound in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000, 10000)):
        if i <= bound:
            return p_init / 2 ** k
    return p_init


def _rect_bump(a: int, b: int) -> Tensor:
    """An a x b block of nested rectangles weighted 1/(k+1)^2 from the centre (unit L2 norm)."""
    d = torch.zeros(a, b)
    r, c = a // 2, b // 2
    for k in range(max(a // 2 + 1, b // 2 + 1)):
        d[max(r - k, 0):min(r + k + 1, a), max(c - k, 0):min(c + k + 1, b)] += 1 / (k + 1) ** 2
    return d / d.norm().clamp_min(1e-12)


@lru_cache(maxsize=64)
def bump(s: int) -> Tensor:
    """The L2 attack's s x s update shape: a positive and a negative pseudo-Gaussian half (Sec. 3.2,
    Fig. 2), unit L2 norm."""
    d = torch.cat([_rect_bump(s // 2, s), -_rect_bump(s - s // 2, s)])
    return d / d.norm()


def _window_index(vh: Tensor, vw: Tensor, s: int, w: int) -> Tensor:
    """[A, s*s] flat spatial indices of each sample's s x s window at (vh, vw)."""
    ar = torch.arange(s, device=vh.device)
    return ((vh[:, None] + ar)[:, :, None] * w + (vw[:, None] + ar)[:, None, :]).flatten(1)


def _get(t: Tensor, idx: Tensor) -> Tensor:
    """t [A, C, H, W] -> its windows [A, C, s*s]."""
    return t.flatten(2).gather(2, idx[:, None].expand(-1, t.shape[1], -1))


def _put(t: Tensor, idx: Tensor, v: Tensor) -> Tensor:
    """A copy of t with each sample's window replaced by v [A, C, s*s] (or broadcastable)."""
    idx = idx[:, None].expand(-1, t.shape[1], -1)
    return t.flatten(2).scatter(2, idx, v.to(t.device, t.dtype).expand(idx.shape)).view_as(t)


def _uniforms(gens: list[torch.Generator], rows: Tensor, k: int, like: Tensor) -> Tensor:
    """[A, k] U[0, 1) numbers, sample i's from its own generator (batch-independent draws)."""
    return torch.stack([torch.rand(k, generator=gens[i]) for i in rows.tolist()]).to(like.device, like.dtype)


def _positions(u: Tensor, span: int) -> Tensor:
    """Uniform integers in [0, span) from U[0, 1) numbers."""
    return (u * span).long().clamp(max=span - 1)


@dataclass(frozen=True)
class Square:
    """Square Attack (Andriushchenko et al. 2020, Algorithm 1), untargeted or targeted.

    Random search on the margin loss: each query proposes a change of one random square window
    whose side covers a fraction p of the image (the `p_schedule`), and keeps it if the loss
    improves. Only still-robust samples are updated and queried; a sample stops at its first
    adversarial point. No gradients: the model runs under `torch.no_grad`.

    L-inf (Sec. 3.1): initialised with vertical stripes of +-eps per column; a proposal sets the
    window to x +- eps with one random sign per channel. L2 (Sec. 3.2): initialised with a grid
    of +-bump(h // 5) blocks; a proposal moves the perturbation mass of a second random window
    into the first one, shaped as a random-sign `bump`, keeping ||delta||_2 = eps before clipping.

    Args:
        threat: the ball (norm, eps) inside [0, 1].
        steps: queries per sample (the initialisation is the first).
        p_init: the initial fraction of pixels changed; 0.8 is AutoAttack's setting for
            MNIST/CIFAR (Croce & Hein 2020); the paper uses 0.05 (L-inf) / 0.1 (L2) on ImageNet.
        loss: the loss whose increase is accepted, "cw" (the paper's margin loss), "ce" or "dlr".
        seed: windows and signs are drawn per sample from (seed, its content).
    """

    threat: Threat = Threat()
    steps: int = 1000
    p_init: float = 0.8
    loss: str = "cw"
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.steps, int) and self.steps >= 1, "steps", self.steps, "an integer >= 1"),
            (isinstance(self.p_init, (int, float)) and 0 < self.p_init <= 1, "p_init", self.p_init,
             "a fraction in (0, 1]"),
            (self.loss in LOSSES, "loss", self.loss, f"one of {', '.join(LOSSES)}"),
        ]
        check_ranges(checks)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        check_inputs(x, y, target)
        if x.dim() != 4:
            raise UserError(f"square needs image batches [B, C, H, W], got {list(x.shape)}")
        if min(x.shape[2:]) < 2:
            raise UserError(f"square needs images of at least 2 x 2 pixels, got {list(x.shape[2:])}")
        x = x.detach()
        loss_fn = LOSSES[self.loss]()
        gens = [torch.Generator().manual_seed(s) for s in sample_seeds(x, self.seed, "square")]
        every = torch.arange(len(x), device=x.device)
        linf = self.threat.norm == "linf"
        with frozen_eval(model), torch.no_grad():
            x_best = self.threat.project(self._init_linf(x, gens) if linf else self._init_l2(x, gens), x)
            logits = model(x_best)
            best = loss_fn(logits, y, target)
            robust = ~is_adversarial(logits, y, target)
            for it in range(self.steps - 1):
                rows = every[robust]
                if not len(rows):
                    break
                xs, xb = x[rows], x_best[rows]
                ts = target[rows] if target is not None else None
                propose = self._propose_linf if linf else self._propose_l2
                x_new = self.threat.project(propose(xs, xb, gens, rows, it), xs)
                logits = model(x_new)
                value = loss_fn(logits, y[rows], ts)
                better = value > best[rows]
                x_best[rows] = torch.where(better.view(-1, 1, 1, 1), x_new, xb)
                best[rows] = torch.where(better, value, best[rows])
                robust[rows] = ~(better & is_adversarial(logits, y[rows], ts)) & robust[rows]
        return x_best.detach()

    def _side(self, it: int, x: Tensor, least: int) -> int:
        c, h, w = x.shape[1:]
        p = p_schedule(self.p_init, it, self.steps)
        s = max(int(round(math.sqrt(p * h * w))), least)
        if least > 1 and s % 2 == 0:  # odd sides centre the L2 bump (reference code)
            s += 1
        return min(s, h - 1, w - 1)

    def _init_linf(self, x: Tensor, gens) -> Tensor:
        """Vertical stripes: x + eps * (one random sign per channel and column)."""
        b, c, _, w = x.shape
        u = _uniforms(gens, torch.arange(b), c * w, x)
        return (x + self.threat.eps * torch.where(u < 0.5, -1.0, 1.0).view(b, c, 1, w)).clamp(0, 1)

    def _propose_linf(self, x, x_best, gens, rows, it) -> Tensor:
        """Algorithm 2: the window of side s becomes x +- eps (one random sign per channel)."""
        a, c, h, w = x.shape
        s = self._side(it, x, 1)
        u = _uniforms(gens, rows, 2, x)
        idx = _window_index(_positions(u[:, 0], h - s), _positions(u[:, 1], w - s), s, w)
        delta = x_best - x
        x_new, todo = x_best.clone(), torch.ones(a, dtype=torch.bool, device=x.device)
        for _ in range(_REDRAWS):
            r = todo.nonzero().squeeze(1)
            signs = torch.where(_uniforms(gens, rows[r], c, x) < 0.5, -1.0, 1.0)
            x_new[r] = (x[r] + _put(delta[r], idx[r], self.threat.eps * signs[:, :, None])).clamp(0, 1)
            changed = (_get(x_new[r], idx[r]) - _get(x_best[r], idx[r])).abs().flatten(1).amax(1) > 1e-7
            todo[r] = ~changed
            if not todo.any():
                break
        return x_new

    def _init_l2(self, x: Tensor, gens) -> Tensor:
        """A grid of h // 5 side blocks, each +-bump with a random sign per channel and a random
        orientation, scaled to ||delta||_2 = eps."""
        b, c, h, w = x.shape
        s = max(h // 5, 1)
        start = (h - 5 * s) // 2
        corners = [(i, j) for i in range(start, h - s + 1, s) for j in range(start, w - s + 1, s)]
        u = _uniforms(gens, torch.arange(b), len(corners) * (c + 1), x).view(b, len(corners), c + 1)
        delta = torch.zeros_like(x)
        shape = bump(s).to(x.device, x.dtype)
        for k, (i, j) in enumerate(corners):
            flip = (u[:, k, 0] < 0.5).view(b, 1, 1, 1)
            block = torch.where(flip, shape.T, shape).expand(b, c, s, s)
            signs = torch.where(u[:, k, 1:] < 0.5, -1.0, 1.0)[:, :, None, None]
            delta[:, :, i:i + s, j:j + s] += block * signs
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(b, 1, 1, 1)
        return (x + delta / norm * self.threat.eps).clamp(0, 1)

    def _propose_l2(self, x, x_best, gens, rows, it) -> Tensor:
        """Algorithm 3: window 2's perturbation mass (and any unused budget) moves into window 1,
        added as a random-sign bump to window 1's normalised perturbation; then delta is rescaled
        to norm eps."""
        a, c, h, w = x.shape
        s = self._side(it, x, 3)
        eps = self.threat.eps
        u = _uniforms(gens, rows, 5 + c, x)
        idx1 = _window_index(_positions(u[:, 0], h - s), _positions(u[:, 1], w - s), s, w)
        idx2 = _window_index(_positions(u[:, 2], h - s), _positions(u[:, 3], w - s), s, w)
        delta = x_best - x
        win1 = _get(delta, idx1)  # [A, C, s*s]
        norm_win1 = win1.norm(dim=2, keepdim=True)
        norm_img = delta.flatten(1).norm(dim=1).view(a, 1, 1)
        both = _put(_put(torch.zeros_like(delta), idx2, torch.ones(1, 1, 1)), idx1, torch.ones(1, 1, 1))
        norm_both = (delta * both).flatten(2).norm(dim=2, keepdim=True)  # [A, C, 1]
        shape = bump(s).to(x.device, x.dtype)
        shape = torch.where((u[:, 4] < 0.5).view(a, 1, 1), shape.T, shape).flatten(1)[:, None]
        new = shape * torch.where(u[:, 5:] < 0.5, -1.0, 1.0)[:, :, None] + win1 / (1e-10 + norm_win1)
        budget = ((eps ** 2 - norm_img ** 2).clamp_min(0) / c + norm_both ** 2).sqrt()
        new = new / new.norm(dim=2, keepdim=True).clamp_min(1e-12) * budget
        delta = _put(_put(delta, idx2, torch.zeros(1, 1, 1)), idx1, new)
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(a, 1, 1, 1)
        return (x + delta / norm * eps).clamp(0, 1)


register_bounded(
    "square", Square, norms=("linf", "l2"), kind="gradient_free",
    paper="Square Attack, Andriushchenko et al. ECCV 2020 (Alg. 1-3): random search with square "
          "updates on the margin loss, 1000 queries, p_init 0.8",
    steps=1000, p_init=0.8,
)
