"""How a recipe makes its training-time adversarial examples, from `robustlab.attacks` parts.

An adversary is `(model, x, y) -> x_adv` for the first k <= B images of the batch. Attacks run
the model in eval mode (BN running statistics, no dropout), as most reference implementations
do; `mode="train"` attacks the model as it trains (BN batch statistics, dropout on) and restores
every buffer afterwards, so the attack's forwards never move the running statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks import ATTACKS, PGD, Attack, sign_step
from robustlab.attacks.pgd import TRAINING_ITERATE
from robustlab.attacks.presets import one_step_attack
from robustlab.attacks.targets import most_confusing
from robustlab.data import check_eps
from robustlab.data.class_index import ClassIndex
from robustlab.defenses.step import Pairs, Prepared
from robustlab.errors import UserError, check_ranges
from robustlab.models.modes import buffers_kept, frozen_eval, mode

MODES = ("eval", "train")


class _TrainModeView(nn.Module):
    """Runs `model` in train mode whatever mode the attack asks for. The model is hidden from
    `modules()`, so the attack's eval()/freeze touches only this view."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._hidden = (model,)

    def forward(self, x: Tensor) -> Tensor:
        (model,) = self._hidden
        with mode(model, True):
            return model(x)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"attack_mode={mode!r} is not allowed: choose eval or train")


@dataclass
class AttackAdversary:
    """Attack the first round(fraction * B) images of each batch with `attack`."""

    attack: Attack
    mode: str = "eval"
    fraction: float = 1.0

    def __post_init__(self) -> None:
        check_mode(self.mode)
        check_ranges([(0 < self.fraction <= 1, "fraction", self.fraction, "in (0, 1]")])

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        k = max(1, round(self.fraction * len(x)))
        return self.run(model, x[:k], y[:k])

    def run(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """The attack on all of x (towards `target` if given), in this adversary's mode."""
        kwargs = {} if target is None else {"target": target}
        if self.mode == "eval":
            return self.attack(model, x, y, **kwargs)
        with buffers_kept(model):
            return self.attack(_TrainModeView(model), x, y, **kwargs)


def training_pgd(eps: float, steps: int, step_size: float | None = None, **params) -> PGD:
    """The PGD preset with fresh random starts every step (torch's checkpointed generator),
    returning the last iterate (`attacks.pgd.TRAINING_ITERATE`)."""
    return ATTACKS.build("pgd", eps=eps, steps=steps, step_size=step_size, noise="global",
                         **{"iterate": TRAINING_ITERATE, **params})


def random_eps(n: int, max_eps: float, like: Tensor) -> Tensor:
    """n eps values from N(0, (max_eps / 2)^2) truncated to [0, max_eps] (Kurakin et al. 2017
    Sec. 3; the Cascade paper Sec. 3.1), by inverting the half-normal CDF erf(e / (sigma sqrt 2))
    on U(0, erf(max_eps / (sigma sqrt 2))): exact truncation, never outside [0, max_eps]."""
    sigma = max_eps / 2
    top = torch.erf(torch.tensor(max_eps / (sigma * 2 ** 0.5), dtype=torch.float64))
    u = torch.rand(n, dtype=torch.float64) * top
    eps = sigma * 2 ** 0.5 * torch.erfinv(u)
    return eps.clamp(0, max_eps).to(like.device, like.dtype)


@dataclass
class RandomEpsOneStep:
    """A one-step L-inf attack whose size is drawn per image from `random_eps` (Kurakin et al.
    2017 Sec. 3; the Cascade paper Sec. 3.1), on the first round(fraction * B) images.

    One attack call gives every image its own size: the attack at eps e is
    clip(x + e * sign_step, 0, 1) (`robustlab.attacks.sign_step`).
    """

    attack: str = "step_ll"
    max_eps: float = 0.1
    fraction: float = 0.5
    mode: str = "eval"

    def __post_init__(self) -> None:
        check_mode(self.mode)
        check_eps(self.max_eps, "max_eps")
        check_ranges([(0 < self.fraction <= 1, "fraction", self.fraction, "in (0, 1]")])
        one_step_attack(self.attack)  # an unknown or iterative attack fails here, not mid-training

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        k = max(1, round(self.fraction * len(x)))
        return self.run(model, x[:k], y[:k])

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The attack on all of x, each image at its own random eps."""
        if self.mode == "eval":
            direction = sign_step(self.attack, model, x, y)
        else:
            with buffers_kept(model):
                direction = sign_step(self.attack, _TrainModeView(model), x, y)
        eps = random_eps(len(x), self.max_eps, x)
        return (x + eps.view(-1, *[1] * (x.dim() - 1)) * direction).clamp(0, 1)


@dataclass
class CascadeAdversary(Prepared):
    """Cascade adversarial training (Na et al. 2018 Sec. 6): of the k = round(fraction * B)
    adversarial images, the last round(saved_fraction * k) are the images' iter_FGSM versions from
    an already defended network (`robustlab.attacks.image_bank.SourceImages`); the others
    are one-step images from the network being trained (`one_step`). Table 5: 32 of k = 64.

    `bank` comes from `prepare` (robustlab.experiment.train makes it); the Step passes the
    batch's training-split indices (`needs_index`), which is how an image finds its version.
    """

    one_step: RandomEpsOneStep
    saved_fraction: float = 0.5
    bank: Any = None
    needs_index = True
    needs_bank = True

    def prepare(self, *, class_index=None, bank=None) -> None:
        self.bank = bank

    def __post_init__(self) -> None:
        check_ranges([(0 <= self.saved_fraction <= 1, "saved_fraction", self.saved_fraction, "in [0, 1]")])

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, index: Tensor | None = None) -> Tensor:
        if self.bank is None:
            raise UserError("cascade training needs its source's adversarial images; they are handed "
                            "over by Objective.prepare (robustlab.experiment.train, defense.source)")
        if index is None or len(index) != len(x):
            raise UserError("cascade training needs each batch image's index in the training split "
                            "(robustlab's Batches provides it)")
        k = max(1, round(self.one_step.fraction * len(x)))
        saved = round(self.saved_fraction * k)
        fresh = self.one_step.run(model, x[: k - saved], y[: k - saved]) if k > saved else x[:0]
        stored = self.bank[index[k - saved : k]].to(x.device, x.dtype)
        return torch.cat([fresh, stored.view_as(x[k - saved : k])])


class FreeAdversary:
    """Free adversarial training (Shafahi et al. 2019, Alg. 1): one perturbation delta, carried
    across replays and minibatches, ascends with the input gradient of the same backward pass
    that updates the weights: delta <- clip(delta + eps * sign(grad_x), -eps, eps)."""

    def __init__(self, eps: float):
        self.eps = check_eps(eps, "eps")
        self.delta: Tensor | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.delta is None or self.delta.shape[1:] != x.shape[1:]:
            self.delta = torch.zeros_like(x)
        if len(self.delta) < len(x):  # a larger batch than before: pad with zeros
            pad = torch.zeros_like(x[len(self.delta):])
            self.delta = torch.cat([self.delta, pad])
        self.delta = self.delta.to(x.device, x.dtype)
        return (x + self.delta[: len(x)]).clamp(0, 1).requires_grad_(True)

    def after_backward(self, x_adv: Tensor) -> None:
        """Take the ascent step with the gradient the training backward left on x_adv."""
        if x_adv.grad is None:
            raise UserError("free adversarial training found no input gradient: its loss must "
                            "read the adversarial outputs (adv_ce)")
        if not torch.isfinite(x_adv.grad).all():  # an fp16 overflow step: the scaler skips it too
            return
        step = self.eps * x_adv.grad.sign()
        with torch.no_grad():
            k = len(x_adv)
            self.delta[:k] = (self.delta[:k] + step).clamp(-self.eps, self.eps)

    def state_dict(self) -> dict:
        return {"delta": None if self.delta is None else self.delta.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.delta = state.get("delta")


@dataclass
class BidirectionalAdversary(Prepared):
    """AGKD-BML Alg. 1, steps a-b2: for each x^s of class s, its most confusing class y_mc
    (eq. 5, on the model's clean logits), a random clean sample x^{y_mc} of that class, the
    forward example x^s attacked towards y_mc and the backward example x^{y_mc} attacked towards
    s, both with the same targeted attack.

    `class_index` (the training split grouped by class) comes from `prepare`; its draws use
    torch's global generator, which checkpoints save, so a resumed run draws the same partners.
    """

    attack: AttackAdversary
    class_index: ClassIndex | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Pairs:
        if self.class_index is None:
            raise UserError("the bidirectional adversary needs the training set's class index to "
                            "draw partners; it is handed over by Objective.prepare")
        with frozen_eval(model), torch.no_grad():
            y_mc = most_confusing(model(x), y)
        partner = self.class_index.sample_of_classes(y_mc).to(x.dtype)
        forward = self.attack.run(model, x, y, target=y_mc)
        backward = self.attack.run(model, partner, y_mc, target=y)
        return Pairs(forward, partner, y_mc, backward)
