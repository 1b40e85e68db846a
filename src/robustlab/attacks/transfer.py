"""Black-box transfer attacks (Papernot et al. 2016; Tramer et al. 2018): adversarial examples
crafted white-box on a *source* model, then evaluated on the target.

`Transfer` is the one attack that holds a model (the source), so it is not in `ATTACKS` by name;
build it with `transfer(source, "pgd", eps=0.1)` or `transfer(source, any_attack)`. It has the
Attack signature, so evaluation code treats it like any other attack, but it never looks at the
target model: a transfer attack that used the target's gradients would be white-box.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Attack
from robustlab.attacks.losses import is_adversarial
from robustlab.attacks.pgd import PGD
from robustlab.attacks.presets import ATTACKS
from robustlab.attacks.trace import active, record, untraced
from robustlab.errors import UserError
from robustlab.models.modes import eval_mode


@dataclass(frozen=True, eq=False)
class Transfer:
    """attack(source, x, y, target) whatever model it is called with.

    Inputs move to the source model's device for the attack and come back to the caller's, so
    a GPU source can attack for a CPU target and back. The source's modes and weights are
    guarded by the wrapped attack (`frozen_eval`), as for any white-box attack.
    """

    source: nn.Module
    attack: Attack

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        param = next(self.source.parameters(), None)
        device = param.device if param is not None else x.device
        moved = None if target is None else target.to(device)
        with untraced():  # the inner attack's path is on the source, not on the model evaluated
            x_adv = self.attack(self.source, x.to(device), y.to(device), moved)
        if active():  # Pintor et al.'s transfer failure reads whether the source was fooled
            with torch.no_grad(), eval_mode(self.source):
                logits = self.source(x_adv)
            record(source_fooled=is_adversarial(logits, y.to(device), moved))
        return x_adv.to(x.device)


def transfer(source: nn.Module, attack: Attack | str, **params: Any) -> Transfer:
    """A transfer attack from `source`: `attack` is an attack callable, or a name of `ATTACKS`
    built with `params` (e.g. `transfer(model_a, "pgd", eps=0.1, steps=20)`)."""
    if not isinstance(source, nn.Module):
        raise UserError(f"transfer needs a source model (an nn.Module), got {type(source).__name__}")
    if isinstance(attack, str):
        attack = ATTACKS.build(attack, **params)
    elif params:
        raise UserError(f"parameters {', '.join(sorted(params))} are only used with an attack name; "
                        "build the attack with them first, or pass its name")
    if not callable(attack):
        raise UserError(f"attack must be an attack callable or a name of ATTACKS, got {attack!r}")
    if isinstance(attack, PGD):
        # The source attack runs to its last iterate: its best iterate, the first point across the
        # source's boundary, transfers worst (PGD-20 at eps 0.1 between two small_cnn seeds left
        # the target 76.8% accurate with the best iterate, below 73.6% with the last).
        attack = replace(attack, iterate="last")
    return Transfer(source, attack)
