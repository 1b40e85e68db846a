"""`Objective`: a weighted sum of named terms; recipes name which terms with which weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor

from robustlab.defenses.step import Step
from robustlab.defenses.terms import TERMS
from robustlab.registry import Registry

Term = Callable[[Step], Tensor]


@dataclass
class Objective:
    """loss = sum_i w_i * term_i(step); returns the total and every term for logging."""

    terms: dict[str, tuple[Term, float]]
    name: str = "custom"
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self, step: Step) -> dict[str, Tensor]:
        values = {name: term(step) for name, (term, _) in self.terms.items()}
        total = sum(weight * values[name] for name, (_, weight) in self.terms.items())
        return {"loss": torch.as_tensor(total), **values}


RECIPES: Registry = Registry("recipe")


@RECIPES.register("standard", paper="standard (non-adversarial) training", terms={"clean_ce": 1.0})
def standard(label_smoothing: float = 0.0) -> Objective:
    """Plain empirical risk minimisation: the baseline every paper compares against."""
    term = partial(TERMS.get("clean_ce"), label_smoothing=label_smoothing)
    return Objective({"clean_ce": (term, 1.0)}, name="standard")


def build_objective(recipe: str, **params: Any) -> Objective:
    return RECIPES.build(recipe, **params)
