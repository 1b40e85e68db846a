"""`Objective`: a weighted sum of named terms, with the adversary that feeds them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import torch
from torch import Tensor

from robustlab.defenses.step import JOINT_SETS, Adversary, Pairing, Prepared, Step
from robustlab.defenses.terms import TERMS
from robustlab.errors import UserError

Term = Callable[[Step], Tensor]
FORWARDS = ("joint", "separate")


class TrainingObjective(Protocol):
    """What `robustlab.train.fit` needs of an objective (`Objective` is the implementation)."""

    replays: int

    def step(self, model, x: Tensor, y: Tensor, *, forward_all=None, teacher=None,
             index: Tensor | None = None) -> Step: ...

    def __call__(self, step: Step) -> dict[str, Tensor]: ...

    def after_backward(self, step: Step) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: Mapping) -> None: ...


@dataclass
class Objective:
    """loss = sum_i w_i * term_i(step); returns the total and every term for logging.

    `adversary` makes the step's adversarial inputs (None: the terms need none); `replays`
    trains on each minibatch that many times in a row (Free AT's m; 1 otherwise); `pairing`
    draws PDM's Siamese counterparts; `forward` is "joint" (the clean, adversarial and partner
    images the terms read go through one concatenated train-mode forward, as the AGKD-BML and
    ATAT authors' code) or "separate" (one forward per image set, as the TRADES and MART code).
    """

    terms: dict[str, tuple[Term, float]]
    name: str = "custom"
    adversary: Adversary | None = None
    replays: int = 1
    pairing: Pairing | None = None
    forward: str = "joint"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.forward not in FORWARDS:
            raise UserError(f"forward={self.forward!r}: choose {' or '.join(FORWARDS)}")

    def __call__(self, step: Step) -> dict[str, Tensor]:
        values = {name: term(step) for name, (term, weight) in self.terms.items() if weight != 0}
        total = sum(self.terms[name][1] * value for name, value in values.items())
        return {"loss": torch.as_tensor(total), **values}

    @property
    def needs_teacher(self) -> bool:
        """Whether a term reads teacher outputs; only then is a teacher built."""
        return any("teacher" in TERMS.info[name].get("needs", ()) for name in self.terms)

    @property
    def reads(self) -> frozenset[str]:
        """What the terms read of a model's outputs beyond the logits ("embedding", "features"):
        a plain nn.Module must offer those layers (`models.HookedModel`) to train with them."""
        parts: set[str] = set()
        for name, (fn, _) in self.terms.items():
            reads = TERMS.info[name].get("reads", ())
            parts.update(reads(**getattr(fn, "keywords", {})) if callable(reads) else reads)
        return frozenset(parts)

    @property
    def image_sets(self) -> tuple[str, ...]:
        """The Step image sets ("clean", "adv", "partner_adv") the terms read with gradients."""
        needs = {need for name in self.terms for need in TERMS.info[name].get("needs", ())}
        wanted = {"clean": "clean", "adv": "adv", "partner_adv": "partner"}
        return tuple(s for s in JOINT_SETS if wanted[s] in needs)

    @property
    def joint(self) -> tuple[str, ...]:
        """What the Step forwards together: every image set under "joint", none under "separate"."""
        sets = self.image_sets if self.forward == "joint" else ()
        return sets if len(sets) > 1 else ()

    @property
    def weights(self) -> dict[str, float]:
        return {name: weight for name, (_, weight) in self.terms.items()}

    @property
    def needs_bank(self) -> bool:
        """Whether the adversary injects a source network's images (cascade training)."""
        return isinstance(self.adversary, Prepared) and self.adversary.needs_bank

    def prepare(self, *, class_index=None, bank=None) -> None:
        """Hand the adversary and the pairing what only the trainer has (see `Prepared`)."""
        for part in (self.adversary, self.pairing):
            if isinstance(part, Prepared):
                part.prepare(class_index=class_index, bank=bank)

    def step(self, model, x: Tensor, y: Tensor, *, forward_all=None, teacher=None,
             index: Tensor | None = None) -> Step:
        """The Step of one training batch, with this objective's adversary, pairing and forward."""
        return Step(model, x, y, forward_all=forward_all, adversary=self.adversary, teacher=teacher,
                    pairing=self.pairing, index=index, joint=self.joint)

    def after_backward(self, step: Step) -> None:
        """Lets a stateful adversary (Free AT) use the input gradient of the training backward."""
        hook = getattr(self.adversary, "after_backward", None)
        if hook is not None and step.cached("x_adv"):
            hook(step.x_adv)

    def state_dict(self) -> dict:
        """Adversary state that a resumed run needs (Free AT's running perturbation)."""
        state = getattr(self.adversary, "state_dict", None)
        return {"adversary": state()} if state is not None else {}

    def load_state_dict(self, state: Mapping) -> None:
        if "adversary" in state and hasattr(self.adversary, "load_state_dict"):
            self.adversary.load_state_dict(state["adversary"])


def check_params(kind: str, name: str, fn: Callable, params: Mapping[str, Any],
                 skip: tuple[str, ...] = ()) -> None:
    """A `UserError` naming any keyword `fn` does not take, with the ones it does."""
    signature = inspect.signature(fn)
    valid = [p for p in signature.parameters if p not in skip]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for {kind} {name!r}; "
                        f"valid: {', '.join(valid) or '(none)'}")


def make_terms(spec: Mapping[str, Any]) -> dict[str, tuple[Term, float]]:
    """{"adv_ce": 1.0, "logit_pairing": {"weight": 0.5, "squared": False}} -> named terms.

    A number is the weight; a mapping holds `weight` (default 1) and the term's parameters.
    """
    terms: dict[str, tuple[Term, float]] = {}
    for name, value in spec.items():
        fn = TERMS.get(name)
        if isinstance(value, Mapping):
            params = dict(value)
            weight = params.pop("weight", 1.0)
        else:
            weight, params = value, {}
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UserError(f"the weight of term {name!r} must be a number, got {weight!r}")
        check_params("loss term", name, fn, params, skip=("step",))
        terms[name] = (partial(fn, **params), float(weight))
    return terms
