"""Registry factories for attacks that are their own dataclass (SPSA, Square, AutoAttack).

Every factory has the registry's signature `(eps=None, norm="linf", **params)` and checks its
parameters with `attacks.params`, as the PGD presets do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustlab.attacks.params import attack_params, bounded_threat
from robustlab.attacks.presets import ATTACKS


def register_bounded(name: str, cls: type, *, paper: str, norms: tuple[str, ...], kind: str = "iterative",
                     **defaults: Any) -> Callable[..., Any]:
    """Register `cls(threat=Threat(norm, eps), **params)` as a bounded attack `name` of `kind`
    (`robustlab.attacks.presets.KINDS`)."""
    def factory(eps: float | None = None, norm: str = "linf", **params: Any) -> Any:
        threat = bounded_threat(name, eps, norm, norms)
        return cls(threat=threat, **attack_params(name, cls, params, defaults))

    factory.__doc__ = paper
    return ATTACKS.register(name, paper=paper, defaults=defaults, norms=norms, bounded=True,
                            kind=kind)(factory)
