"""Black-box transfer between trained networks (the Cascade paper, Na et al. 2018, Sec. 5,
Table 4): each source's adversarial examples, made once, scored on every target."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from robustlab.errors import UserError
from robustlab.models.modes import frozen_eval


def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int) -> float:
    with frozen_eval(model), torch.no_grad():
        right = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
                    for i in range(0, len(x), batch))
    return right / len(y)


def transfer_matrix(models: Mapping[str, nn.Module], x: Tensor, y: Tensor,
                    attacks: Mapping[str, Callable], batch: int = 500,
                    log: Callable[[str], None] = lambda _: None) -> dict:
    """{attack: {target: {source: accuracy}}}: the accuracy of each target on the examples each
    source makes with each attack (white-box, on the source itself) from x. The diagonal
    (source == target) is the white-box accuracy; the paper's black-box cells pair networks of
    different seeds."""
    if len(models) < 2:
        raise UserError("a transfer matrix needs at least two runs (sources and targets)")
    table: dict = {}
    for label, attack in attacks.items():
        table[label] = {target: {} for target in models}
        for source, source_model in models.items():
            log(f"transfer: {label} examples from {source}")
            x_adv = torch.cat([attack(source_model, x[i:i + batch], y[i:i + batch])
                               for i in range(0, len(x), batch)])
            for target, target_model in models.items():
                table[label][target][source] = _accuracy(target_model, x_adv, y, batch)
    return table
