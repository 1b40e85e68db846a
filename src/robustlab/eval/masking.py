"""Gradient-masking checks: signs that robust accuracy is an artefact of broken gradients.

The checks follow Athalye et al. (2018, Sec. 3.1) and Carlini et al. (2019, "On evaluating
adversarial robustness", Sec. 4-5). Each returns a `Check` (pass / warn / skip) with the numbers
it used; `verdict` puts the warnings into plain words. Two kinds:

- from evaluation results (accuracies of the suite's attacks, per-sample outcomes):
  `iterative_vs_single_step`, `large_eps`, `more_steps`, `black_box_vs_white_box`,
  `gradient_free_vs_gradient`, `autoattack_vs_pgd`;
- from probing the model on a batch: `zero_gradients`, `randomness`, `probability_outputs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.modes import frozen_eval

PASS, WARN, SKIP = "pass", "warn", "skip"


@dataclass
class Check:
    name: str
    status: str  # pass | warn | skip
    message: str
    numbers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _check(name: str, bad: bool, if_bad: str, if_good: str, **numbers) -> Check:
    return Check(name, WARN if bad else PASS, if_bad if bad else if_good, numbers)


# ---- from evaluation results -----------------------------------------------------------------

def iterative_vs_single_step(single: float, iterative: float, tolerance: float = 0.01,
                             names: tuple[str, str] = ("FGSM", "PGD-20")) -> Check:
    """An iterative attack at the same eps must be at least as strong as a one-step one."""
    one, many = names
    return _check(
        "iterative_vs_single_step", iterative > single + tolerance,
        f"the iterative {many} leaves more accuracy ({iterative:.1%}) than the one-step {one} "
        f"({single:.1%}): its gradient steps are misled (masked or noisy gradients)",
        f"{many} {iterative:.1%} <= {one} {single:.1%}",
        single_step=single, iterative=iterative)


def large_eps(accuracy: float, eps: float, num_classes: int, tolerance: float = 0.02) -> Check:
    """With an eps that can turn any image into any other, accuracy must fall to chance or below."""
    chance = 1 / num_classes
    return _check(
        "large_eps", accuracy > chance + tolerance,
        f"at eps {eps:g} the attack still leaves {accuracy:.1%} accuracy (chance {chance:.1%}): "
        "an unbounded attack that fails is not finding the gradient",
        f"{accuracy:.1%} at eps {eps:g} (chance {chance:.1%})",
        accuracy=accuracy, eps=eps, chance=chance)


def more_steps(curve: Mapping[int, float], tolerance: float = 0.01) -> Check:
    """Accuracy under PGD must not rise with more steps (at a fixed eps and step rule)."""
    if len(curve) < 2:
        return Check("more_steps", SKIP, "needs accuracies at two or more step counts")
    steps = sorted(curve)
    rises = [(a, b) for a, b in zip(steps, steps[1:]) if curve[b] > curve[a] + tolerance]
    return _check(
        "more_steps", bool(rises),
        "accuracy rises with more PGD steps ("
        + ", ".join(f"{curve[a]:.1%} at {a} -> {curve[b]:.1%} at {b}" for a, b in rises)
        + "): the optimisation is not converging",
        f"accuracy does not rise from {steps[0]} to {steps[-1]} steps",
        curve={str(k): v for k, v in sorted(curve.items())})


def black_box_vs_white_box(white_broken: Tensor, black_broken: Tensor, tolerance: float = 0.002) -> Check:
    """Per sample: a black-box attack should not succeed where every white-box one failed.
    The fraction is of the images no white-box attack broke."""
    unbroken = int((~white_broken).sum())
    only_black = int((black_broken & ~white_broken).sum()) / max(1, unbroken)
    return _check(
        "black_box_vs_white_box", only_black > tolerance,
        f"a black-box attack breaks {only_black:.2%} of the {unbroken} images no white-box attack "
        "broke: white-box gradients are less useful than a surrogate's",
        f"black-box-only successes {only_black:.2%} of {unbroken} images <= {tolerance:.1%}",
        black_only_fraction=only_black, white_box_unbroken=unbroken)


def gradient_free_vs_gradient(gradient_free: float, gradient: float, tolerance: float = 0.01,
                              names: tuple[str, str] = ("Square", "PGD-20")) -> Check:
    """A gradient-free attack (SPSA, Square) should not beat the gradient attack."""
    free, grad = names
    return _check(
        "gradient_free_vs_gradient", gradient_free < gradient - tolerance,
        f"the gradient-free {free} leaves less accuracy ({gradient_free:.1%}) than {grad} "
        f"({gradient:.1%}): the gradients point the wrong way",
        f"{free} {gradient_free:.1%} >= {grad} {gradient:.1%}",
        gradient_free=gradient_free, gradient=gradient)


def autoattack_vs_pgd(autoattack: float, pgd: float, gap: float = 0.05, pgd_label: str = "PGD-20") -> Check:
    """AutoAttack far below PGD-20 means PGD's CE gradients were weak (Croce & Hein 2020)."""
    return _check(
        "autoattack_vs_pgd", pgd - autoattack > gap,
        f"AutoAttack leaves {autoattack:.1%}, more than {gap:.0%} below {pgd_label}'s {pgd:.1%}: "
        f"{pgd_label} overstates robustness here",
        f"AutoAttack {autoattack:.1%} within {gap:.0%} of {pgd_label} {pgd:.1%}",
        autoattack=autoattack, pgd=pgd)


# ---- from probing the model ------------------------------------------------------------------

def zero_gradients(model: nn.Module, x: Tensor, y: Tensor, limit: float = 0.01) -> Check:
    """The fraction of images whose CE input gradient is exactly zero (saturated softmax, hard
    thresholds, non-differentiable layers)."""
    with frozen_eval(model), torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xr), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xr)
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    return _check(
        "zero_gradients", zero > limit,
        f"{zero:.1%} of the images have an all-zero input gradient: gradient attacks cannot move "
        "them, so their robustness is not measured",
        f"{zero:.1%} zero input gradients", zero_fraction=zero)


def randomness(model: nn.Module, x: Tensor, repeats: int = 3) -> Check:
    """Two forwards of the same input in eval mode must agree; a randomised model needs EOT."""
    with frozen_eval(model), torch.no_grad():
        outs = [model(x) for _ in range(repeats)]
    spread = max((o - outs[0]).abs().max().item() for o in outs)
    return _check(
        "randomness", spread > 1e-4,
        f"repeated forwards of the same images differ (max logit change {spread:.3g}): attack with "
        "expectation over transformation, or fix the model's randomness in eval mode",
        "deterministic in eval mode", max_logit_change=spread)


def probability_outputs(model: nn.Module, x: Tensor) -> Check:
    """Outputs in [0, 1] that sum to 1 are probabilities: CE on them has vanishing gradients."""
    with frozen_eval(model), torch.no_grad():
        out = model(x)
    looks = bool(out.min() >= 0 and torch.allclose(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-3))
    return _check(
        "probability_outputs", looks,
        "the model outputs probabilities (softmax inside the model): attacks need logits; "
        "remove the final softmax", "outputs are logits")


def probe(model: nn.Module, x: Tensor, y: Tensor) -> list[Check]:
    """The model-probing checks on one batch."""
    return [zero_gradients(model, x, y), randomness(model, x), probability_outputs(model, x)]


def verdict(checks: list[Check]) -> str:
    """One paragraph in plain words for the report."""
    warned = [c for c in checks if c.status == WARN]
    if not warned:
        ran = sum(c.status == PASS for c in checks)
        return (f"No sign of gradient masking: all {ran} checks passed. The robust accuracies are "
                "upper bounds on the true robustness, as every empirical evaluation is.")
    names = ", ".join(c.name for c in warned)
    return (f"Robustness is probably overstated by gradient masking: {len(warned)} check(s) warn "
            f"({names}). " + " ".join(c.message[0].upper() + c.message[1:] + "." for c in warned)
            + " Trust only the strongest attack's number, and try adaptive attacks (Tramer et al. "
            "2020).")
