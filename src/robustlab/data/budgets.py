"""Each data set's default L-inf budget and the one check every eps passes."""

from __future__ import annotations

from robustlab.errors import UserError

# AGKD-BML / ATAT / AAD settings; Fashion-MNIST: 0.1.
DEFAULT_EPS = {"fashion-mnist": 0.1, "mnist": 0.3, "cifar10": 8 / 255, "cifar100": 8 / 255,
               "svhn": 8 / 255, "digits": 0.1, "synthetic": 0.1}


def default_eps(dataset: str) -> float:
    """The budget robustlab attacks and trains `dataset` at when none is given (0.1 if unknown)."""
    return DEFAULT_EPS.get(dataset, 0.1)


def check_eps(eps: float, name: str = "eps") -> float:
    """`eps` if it is an L-inf budget in (0, 1] (inputs are in [0, 1]), else a UserError naming `name`."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
        raise UserError(f"{name}={eps!r} is out of range: L-inf eps in (0, 1], in [0, 1] input units "
                        "(e.g. 0.1, 8/255 = 0.0314)")
    return float(eps)
