"""Projected gradient ascent and its family, built from parts (loss, target rule, random start,
restarts, momentum) rather than subclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from robustlab.attacks.base import (
    check_inputs,
    input_grad,
    sample_seeds,
    seeded_uniform,
    warn_if_probabilities,
)
from robustlab.attacks.losses import LOSSES, is_adversarial
from robustlab.attacks.targets import TARGETS
from robustlab.attacks.threat import Threat
from robustlab.attacks.trace import late_progress, record
from robustlab.attention import cam_from, features_and_logits, grad_cam, normalize, threshold_area
from robustlab.errors import UserError, check_ranges
from robustlab.models.modes import frozen_eval

ITERATES = ("best", "last")
# What the attacks that make training images return: the last iterate, as the papers' training
# code (Madry et al., TRADES, MART, Kurakin's and the Cascade paper's one-step and iter_FGSM
# images); the best iterate would train on the path's first adversarial point, a weaker example.
TRAINING_ITERATE = "last"


class Path(NamedTuple):
    """One restart's result: the returned point, the target it ended with, whether any iterate
    was adversarial, its loss trace's late progress (`late_progress`), and the returned point's
    loss and verdict when the restart evaluated it (the best iterate; None for the last)."""

    x_adv: Tensor
    target: Tensor | None
    seen: Tensor
    progress: Tensor
    loss: Tensor | None = None
    hit: Tensor | None = None


class BestIterate:
    """Each sample's best iterate so far: the first adversarial one, else the highest loss
    (A3's loss includes its attention term: the loss the attack ascends). With `keep` False only
    the trace and `seen` are kept (the last iterate is returned: no copy of the images per step)."""

    def __init__(self, x: Tensor, keep: bool = True):
        self.keep = keep
        self.x = x.clone() if keep else x
        self.loss = torch.full((len(x),), -torch.inf, device=x.device)
        self.seen = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.losses: list[Tensor] = []

    def update(self, x: Tensor, loss: Tensor, hit: Tensor, candidate: bool = True) -> None:
        """Record an iterate's loss; a `candidate` may also become the best (the clean input,
        x_0 without a random start, is on the trace but never returned: FGSM stays one step)."""
        loss = loss.float()
        self.losses.append(loss)
        if not candidate:
            return
        if self.keep:
            better = (hit & ~self.seen) | (~self.seen & ~hit & (loss > self.loss))
            self.x = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x, self.x)
            self.loss = torch.where(better, loss, self.loss)
        self.seen = self.seen | hit


@dataclass(frozen=True)
class PGD:
    """x_{k+1} = Proj_{B(x, eps) & [0,1]}(x_k + alpha * ascent(grad_x loss(f(x_k), y, t))).

    Madry et al. (2018) with random start; FGSM (Goodfellow et al. 2015) is one step of size eps
    from x; BIM / iter_FGSM and iter_ll (Kurakin et al. 2017) are steps of 1/255 from x; MIM
    (Dong et al. 2018) adds momentum g = mu g + grad / ||grad||_1 and steps along sign(g).
    With restarts, each sample keeps its best run: adversarial first, then the highest loss.
    TRADES's inner maximisation (Zhang et al. 2019) is loss="kl" with start_std=0.001.
    A3 (AAD, Sec. 4.3 eq. 11-13) is `attention=sigma`: the loss gains sigma * mean |Att(x) -
    g(x_adv)|, the L1 deviation of the adversarial image's Grad-CAM (true class, min-max
    normalised to [0, 1] so that it is comparable with the binary area) from the clean image's
    attention area (Grad-CAM >= its mean); sigma = 0 is the base attack exactly.

    Args:
        threat: the ball (norm, eps) inside [0, 1].
        steps: iterations; step_size: alpha (None: 2.5 eps / steps, Madry et al.).
        loss: "ce", "cw" (margin with `kappa`) or "dlr".
        target: None (untargeted, or targets passed to the call) or a rule of
            `robustlab.attacks.targets.TARGETS`; `retarget` re-applies it at every step
            (the Cascade paper's iter_ll) instead of once on the clean input.
        momentum: MIM decay mu (0: plain PGD).
        start_std: a Gaussian random start N(0, start_std^2) (TRADES: 0.001) instead of uniform
            in the ball.
        seed: random start and random targets are drawn per sample from (seed, its content).
        noise: "per_sample" (the default: reproducible whatever the batch) or "global", which
            draws from torch's global generator: adversarial training wants a fresh start for
            the same image every epoch, and the trainer checkpoints that generator.
        attention: A3's sigma (0: off); needs a model with the `Classifier` contract.
        iterate: "best" returns each sample's best iterate (x_1..x_T, and the random start x_0):
            the first adversarial one, else the highest loss (as AutoAttack's APGD keeps its best
            point), so a path that crossed the boundary is never reported robust (Pintor et al.
            2022's *silent success*); it costs one forward of x_T. "last" returns x_T, as Madry
            et al.'s code, foolbox and torchattacks do (training adversaries, `TRAINING_ITERATE`,
            and the bit-for-bit checks).

    Inside `attacks.trace.tracing()` each call records, per sample, whether any iterate was
    adversarial and the late progress of its loss trace (Pintor et al. 2022 Sec. 3.2's
    indicators 1 and 2), from the passes the attack makes anyway.
    """

    threat: Threat = Threat()
    steps: int = 10
    step_size: float | None = None
    loss: str = "ce"
    kappa: float = 0.0
    target: str | None = None
    retarget: bool = False
    random_start: bool = True
    restarts: int = 1
    momentum: float = 0.0
    start_std: float | None = None
    seed: int = 0
    noise: str = "per_sample"
    attention: float = 0.0
    iterate: str = "best"

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.steps, int) and self.steps >= 1, "steps", self.steps, "an integer >= 1"),
            (isinstance(self.restarts, int) and self.restarts >= 1, "restarts", self.restarts,
             "an integer >= 1"),
            (self.step_size is None or self.step_size > 0, "step_size", self.step_size, "> 0"),
            (self.momentum >= 0, "momentum", self.momentum, ">= 0"),
            (self.loss in LOSSES, "loss", self.loss, f"one of {', '.join(LOSSES)}"),
            (self.target is None or self.target in TARGETS, "target", self.target,
             f"null or one of {', '.join(TARGETS)}"),
            (self.start_std is None or self.start_std > 0, "start_std", self.start_std, "> 0 or null"),
            (self.noise in ("per_sample", "global"), "noise", self.noise, "per_sample or global"),
            (self.loss != "kl" or self.random_start, "random_start", self.random_start,
             "true with loss=kl (its gradient is zero at the clean input)"),
            (self.attention >= 0, "attention", self.attention, ">= 0 (A3's sigma)"),
            (self.iterate in ITERATES, "iterate", self.iterate, " or ".join(ITERATES)),
        ]
        check_ranges(checks)

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.threat.eps / self.steps

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        check_inputs(x, y, target)
        rule = TARGETS[self.target] if self.target and target is None else None
        seeds = sample_seeds(x, self.seed, "target") if self.target == "random" else ()
        x = x.detach()
        # enable_grad: callers often evaluate under no_grad; the attack still needs input grads.
        with frozen_eval(model), torch.enable_grad():
            params = {"kappa": self.kappa} if self.loss == "cw" else {}
            if rule is not None or self.restarts > 1 or self.loss == "kl":
                with torch.no_grad():
                    clean_logits = model(x)
                if rule is not None:
                    target = rule(clean_logits, y, seeds)
                if self.loss == "kl":
                    params = {"reference": clean_logits.float().log_softmax(1)}
            loss_fn = LOSSES[self.loss](**params)
            area = self._attention_area(model, x, y)
            best, best_loss, best_hit, seen, progress = x.clone(), None, None, None, None
            for restart in range(self.restarts):
                path = self._run(model, x, y, target, rule, seeds, loss_fn, restart, area)
                if self.restarts == 1:
                    record(seen=path.seen, progress=path.progress)
                    return path.x_adv
                value, hit = path.loss, path.hit
                if value is None:  # the last iterate: not evaluated by the restart
                    with torch.no_grad():
                        logits = model(path.x_adv)
                        value, hit = loss_fn(logits, y, path.target), is_adversarial(logits, y, path.target)
                if best_loss is None:
                    best, best_loss, best_hit = path.x_adv, value, hit
                    seen, progress = path.seen, path.progress
                    continue
                better = (hit & ~best_hit) | ((hit == best_hit) & (value > best_loss))
                best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), path.x_adv, best)
                best_loss = torch.where(better, value, best_loss)
                best_hit = best_hit | hit
                seen, progress = seen | path.seen, torch.where(better, path.progress, progress)
            record(seen=seen, progress=progress)
            return best

    def _attention_area(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor | None:
        """Att(x), the clean image's attention area for A3 (AAD eq. 3), or None without A3."""
        if not self.attention:
            return None
        if not all(hasattr(model, name) for name in ("features", "embed", "head")):
            raise UserError("A3 (attention > 0) needs a robustlab Classifier (features / embed / head)")
        return threshold_area(grad_cam(model, x, y)).to(x.dtype)

    def _step_loss(self, model: nn.Module, x_adv: Tensor, y: Tensor, target, rule, seeds, loss_fn,
                   area: Tensor | None, first: bool = False) -> tuple[Tensor, Tensor | None, Tensor]:
        """The loss the step ascends, the target it used and the logits. With A3 (AAD eq. 12)
        one forward gives the feature map and the logits, and the attention deviation is added.
        The `first` step of a call checks that the model returns logits (on that step's outputs:
        a separate clean forward would cost FGSM half again)."""
        if area is None:
            logits = model(x_adv)
        else:
            feats, logits = features_and_logits(model, x_adv, None, differentiable=True)
        if first:
            warn_if_probabilities(logits.detach())
        if self.retarget and rule is not None:
            target = rule(logits.detach(), y, seeds)
        loss = loss_fn(logits, y, target)
        if area is not None:
            cam = normalize(cam_from(feats, logits, y, create_graph=True), "minmax")
            loss = loss + self.attention * (area - cam).abs().mean((1, 2))
        return loss, target, logits

    def _run(self, model, x, y, target, rule, seeds, loss_fn, restart, area=None) -> Path:
        """One restart: the returned iterate (`iterate`), its target, and the path's record."""
        x_adv = self._start(x, restart) if self.random_start else x.clone()
        g = torch.zeros_like(x) if self.momentum else None
        best = BestIterate(x_adv, keep=self.iterate == "best")
        for step in range(self.steps):
            x_adv.requires_grad_(True)
            loss, target, logits = self._step_loss(model, x_adv, y, target, rule, seeds, loss_fn, area,
                                                   first=step == 0 and restart == 0)
            best.update(x_adv.detach(), loss.detach(), is_adversarial(logits.detach(), y, target),
                        candidate=step > 0 or self.random_start)
            grad = input_grad(loss, x_adv)
            if g is not None:
                l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
                g = self.momentum * g + grad / l1
                grad = g
            x_adv = self.threat.project(x_adv.detach() + self.threat.ascent(grad, self.alpha), x)
        x_adv = x_adv.detach()
        if self.iterate == "last":
            return Path(x_adv, target, best.seen, self._progress(best))
        with torch.no_grad():  # x_T: the one point the loop never evaluated
            logits = model(x_adv)
            if self.retarget and rule is not None:
                target = rule(logits, y, seeds)
            best.update(x_adv, loss_fn(logits, y, target), is_adversarial(logits, y, target))
        # the returned point is adversarial exactly when some iterate was (the first one is kept)
        return Path(best.x, target, best.seen, self._progress(best), best.loss, best.seen)

    def _progress(self, best: BestIterate) -> Tensor:
        """The trace's late progress; NaN for a one-step attack, whose trace (the start and its
        one step) shows no optimisation to judge."""
        if self.steps == 1:
            return torch.full((len(best.seen),), float("nan"))
        return late_progress(best.losses)

    def _start(self, x: Tensor, restart: int) -> Tensor:
        """A random point of the ball: uniform, or Gaussian with `start_std` (projected)."""
        if self.noise == "global":
            noise = torch.rand_like(x)
            radius = torch.rand(len(x), device=x.device, dtype=x.dtype)
        else:
            noise = seeded_uniform(x, self.seed, "start", restart)
            radius = seeded_uniform(x, self.seed, "radius", restart).flatten(1)[:, 0]
        if self.start_std is not None:
            gauss = torch.special.ndtri(noise.clamp(1e-6, 1 - 1e-6))
            return self.threat.project(x + self.start_std * gauss, x)
        return self.threat.random_start(x, noise, radius)
