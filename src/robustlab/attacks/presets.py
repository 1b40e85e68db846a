"""The attacks by the names the papers use, as presets of the parts (see `ATTACKS.info`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustlab.attacks.params import attack_params, bounded_threat
from robustlab.attacks.pgd import PGD, TRAINING_ITERATE
from robustlab.errors import UserError
from robustlab.registry import Registry

ATTACKS: Registry = Registry("attack")
# Each attack's registry info `kind`: what the masking checks compare (one step vs iterative,
# gradient-based vs gradient-free); a suite entry with a source is "transfer".
KINDS = ("single_step", "iterative", "gradient_free")
NORMS = ("linf", "l2")  # the PGD family's


def kurakin_steps(eps: float) -> int:
    """min(eps + 4, 1.25 eps) iterations with eps in 0-255 units (Kurakin et al. 2017; the
    Cascade paper Sec. 2), at least one."""
    e = eps * 255
    return max(1, int(min(e + 4, 1.25 * e)))


def one_step_attack(name: str) -> PGD:
    """The attack `name` built at eps 1, checked to be one sign step without random start
    (fgsm, step_fgsm, step_ll): the attacks whose size can be chosen after the fact."""
    attack = ATTACKS.build(name, eps=1.0, iterate=TRAINING_ITERATE)  # its step, never x itself
    if not (isinstance(attack, PGD) and attack.steps == 1 and not attack.random_start):
        raise UserError(f"attack={name!r}: this needs a one-step attack without random start "
                        "(step_ll, step_fgsm or fgsm)")
    return attack


def sign_step(name: str, model, x, y):
    """The step direction of the one-step attack `name` (fgsm, step_fgsm, step_ll), computed once
    for every eps: the attack at eps e is clip(x + e * sign_step, 0, 1) (sign(x_1 - x), with x_1
    the attack at eps 1; where x_1 is clipped the direction is 0 or points back into the box, the
    same as the clip does at any e). The Cascade paper's random eps per image and its eps sweeps
    (Fig. 4, 5) use it."""
    return (one_step_attack(name)(model, x, y) - x).sign()


def _register(name: str, paper: str, step_rule: Callable[[float, int], float] | None = None,
              steps_rule: Callable[[float], int] | None = None, **defaults: Any) -> None:
    def factory(eps: float | None = None, norm: str = "linf", **params: Any) -> PGD:
        threat = bounded_threat(name, eps, norm, NORMS)
        merged = attack_params(name, PGD, params, defaults)
        if steps_rule is not None and "steps" not in params:
            merged["steps"] = steps_rule(eps)
        if step_rule is not None and "step_size" not in params:
            merged["step_size"] = step_rule(eps, merged.get("steps", 1))
        return PGD(threat=threat, **merged)

    factory.__doc__ = paper
    kind = "single_step" if defaults.get("steps") == 1 else "iterative"
    ATTACKS.register(name, paper=paper, defaults=defaults, norms=NORMS, bounded=True,
                     kind=kind)(factory)


ONE_STEP = dict(steps=1, random_start=False)
_register("fgsm", "FGSM, Goodfellow et al. 2015: one step of size eps along sign(grad CE)",
          step_rule=lambda eps, k: eps, **ONE_STEP)
_register("step_fgsm", "step_FGSM, the Cascade paper's name for FGSM (Na et al. 2018, Sec. 2)",
          step_rule=lambda eps, k: eps, **ONE_STEP)
_register("step_ll", "step_ll, Kurakin et al. 2017: one step of size eps towards the least-likely class",
          step_rule=lambda eps, k: eps, target="least_likely", **ONE_STEP)
for _name in ("bim", "iter_fgsm"):
    _register(_name, "BIM / iter_FGSM, Kurakin et al. 2017: alpha 1/255, min(eps+4, 1.25 eps) steps "
              "(eps in 0-255 units) from x", step_rule=lambda eps, k: 1 / 255,
              steps_rule=kurakin_steps, random_start=False)
_register("iter_ll", "iter_ll, Kurakin et al. 2017: iterated step_ll, alpha 1/255, min(eps+4, 1.25 eps) "
          "steps; the target is re-chosen every step as in the Cascade paper (Sec. 5)",
          step_rule=lambda eps, k: 1 / 255, steps_rule=kurakin_steps, random_start=False,
          target="least_likely", retarget=True)
_register("pgd", "PGD, Madry et al. 2018: random start, 20 steps of 2.5 eps / steps on CE",
          steps=20, random_start=True)
_register("cw_inf", "CW-k in AGKD-BML Table 1: PGD on the Carlini-Wagner margin (kappa 0)",
          steps=20, random_start=True, loss="cw")
# A3 (AAD Sec. 4.3, eq. 11-13): the base attack's loss plus sigma * the deviation of the adversarial
# image's Grad-CAM from the clean image's attention area; sigma 10 as AAD Sec. 5.6.
A3 = "A3 (AAD, Sec. 4.3 eq. 11-13): {base} with sigma * |Att(x) - g(x_adv)|_1 added to the loss, sigma 10"
_register("a3_step_ll", A3.format(base="step_ll"), step_rule=lambda eps, k: eps, target="least_likely",
          attention=10.0, **ONE_STEP)
_register("a3_iter_ll", A3.format(base="iter_ll"), step_rule=lambda eps, k: 1 / 255,
          steps_rule=kurakin_steps, random_start=False, target="least_likely", retarget=True,
          attention=10.0)
_register("a3_pgd", A3.format(base="PGD-20"), steps=20, random_start=True, attention=10.0)
_register("mim", "MIM, Dong et al. 2018: momentum mu 1.0, 10 steps of eps / steps, no random start",
          step_rule=lambda eps, k: eps / k, steps=10, momentum=1.0, random_start=False)
