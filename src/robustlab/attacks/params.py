"""The parameter checks every attack factory shares: unknown names, the eps ball, the norm. Each
names the bad value and the valid choices in its `UserError`."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from robustlab.attacks.threat import Threat
from robustlab.errors import UserError


def attack_params(name: str, cls: type, params: dict[str, Any], defaults: dict[str, Any],
                  extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """`defaults` updated by `params`, after refusing any name that is not a field of the
    dataclass `cls` (`threat` is built from eps and norm, so it is refused too)."""
    valid = {f.name for f in fields(cls)} - {"threat"}
    unknown = sorted(set(params) - valid)
    if unknown:
        allowed = sorted(valid | {"eps", "norm", *extra})
        raise UserError(f"unknown parameter(s) {', '.join(unknown)} for attack {name!r}; "
                        f"valid: {', '.join(allowed)}")
    return {**defaults, **params}


def bounded_threat(name: str, eps: float | None, norm: str, norms: tuple[str, ...]) -> Threat:
    """The ball a bounded attack stays in; eps is required and norm must be one it supports."""
    if eps is None:
        raise UserError(f"attack {name!r} needs eps (e.g. eps=0.1 for Fashion-MNIST, 8/255 for CIFAR)")
    check_norm(name, norm, norms)
    return Threat(norm, eps)


def check_norm(name: str, norm: str, norms: tuple[str, ...]) -> None:
    if norm not in norms:
        raise UserError(f"attack {name!r} does not support norm={norm!r}: choose {' or '.join(norms)}")
