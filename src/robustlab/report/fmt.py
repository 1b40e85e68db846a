"""How numbers are written on every page: "-" for a missing value."""

from __future__ import annotations


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage with its sign: 0.8123 -> "81.23%"."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def num(value: float | None, digits: int = 3) -> str:
    """An AUC, distortion or index: 0.81234 -> "0.812"."""
    return "-" if value is None else f"{value:.{digits}f}"
