"""Per-sample worst case across attacks (AutoAttack's protocol, Croce & Hein 2020): each attack
runs only on the points every earlier attack left correctly classified."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Attack
from robustlab.models.modes import eval_mode


@dataclass
class WorstCase:
    robust: Tensor  # [N] bool: correct on the clean input and under every attack
    broken_by: list[str]  # [N] "clean", the name of the first attack that broke it, or ""
    x_adv: Tensor  # [N, ...] the breaking example (x itself where nothing broke it)
    robust_after: dict[str, float]  # robust accuracy after each attack, in order

    @property
    def accuracy(self) -> float:
        return self.robust.float().mean().item() if len(self.robust) else float("nan")


@torch.no_grad()
def _correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with eval_mode(model):
        return model(x).argmax(1) == y


def worst_case(model: nn.Module, x: Tensor, y: Tensor, attacks: Mapping[str, Attack]) -> WorstCase:
    """Run `attacks` in order, each on the still-robust points only; record who broke what."""
    robust = _correct(model, x, y)
    broken_by = ["" if ok else "clean" for ok in robust.tolist()]
    x_adv = x.detach().clone()
    after = {}
    for name, attack in attacks.items():
        idx = robust.nonzero().squeeze(1)
        if len(idx):
            candidate = attack(model, x[idx], y[idx])
            broke = ~_correct(model, candidate, y[idx])
            hit = idx[broke]
            x_adv[hit] = candidate[broke]
            robust[hit] = False
            for i in hit.tolist():
                broken_by[i] = name
        after[name] = robust.float().mean().item()
    return WorstCase(robust, broken_by, x_adv, after)
