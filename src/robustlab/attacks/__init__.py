"""Attacks: `ATTACKS.build(name, eps=..., **params)` gives a callable
`attack(model, x, y, target=None) -> x_adv`; docs/architecture.md ("Contracts as built") gives
the contract."""

from robustlab.attacks import (  # noqa: F401  (registers cw_l2, jsma, spsa, square)
    autoattack,  # noqa: F401  (registers autoattack, apgd_ce, apgd_t)
    cw,
    jsma,
    spsa,
    square,
)
from robustlab.attacks.adversarial_set import load_adversarial_set, save_adversarial_set
from robustlab.attacks.base import Attack, check_inputs
from robustlab.attacks.losses import LOSSES, ce, cw_margin, dlr, is_adversarial
from robustlab.attacks.pgd import PGD
from robustlab.attacks.presets import ATTACKS, kurakin_steps, sign_step
from robustlab.attacks.targets import TARGETS, least_likely, most_confusing, random_other
from robustlab.attacks.threat import Threat
from robustlab.attacks.transfer import Transfer, transfer
from robustlab.attacks.worst_case import WorstCase, worst_case
from robustlab.models.modes import frozen_eval

__all__ = [
    "ATTACKS", "LOSSES", "PGD", "TARGETS", "Attack", "Threat", "ce", "check_inputs", "cw_margin",
    "dlr", "frozen_eval", "is_adversarial", "kurakin_steps", "least_likely", "most_confusing",
    "random_other", "sign_step",
    "Transfer", "load_adversarial_set", "save_adversarial_set", "transfer",
    "WorstCase", "worst_case",
]
