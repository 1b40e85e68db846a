"""Paired statistics for two models attacked on the same images.

Two accuracies measured on the same images are paired: only the images where the models
disagree (one correct, the other not) carry information about their difference. Hence
- `mcnemar_exact`: the exact McNemar test, a two-sided binomial test of the discordant images
  (scipy.stats.binomtest);
- `paired_difference_ci`: Newcombe's (1998) hybrid score interval for a difference of paired
  proportions ("method 10", Statistics in Medicine 17:2635-2650), built from two Wilson
  intervals and the phi correlation of the 2x2 table;
- `detectable_difference`: the smallest difference a test at `alpha` finds with `power`
  given n images and their discordance rate (the normal approximation of Connor 1987);
- `holm`: Holm's (1979) step-down adjustment of several p-values;
- `paired_bootstrap` and `bootstrap_p`: for a statistic with no per-image outcome of its own
  (a detection AUC, a mean distortion), both models' statistic on the same resamples of the
  images (Efron & Tibshirani 1993, Ch. 6 and 16), so the difference's spread is the paired one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm


@dataclass(frozen=True)
class Paired:
    """new - reference on the same n images: `gained` images only the new model gets right,
    `lost` only the reference gets right, `both` and `neither` the rest."""

    both: int
    gained: int
    lost: int
    neither: int

    @classmethod
    def of(cls, reference, new) -> Paired:
        """From two boolean per-image outcome tensors (True: correct)."""
        if reference.shape != new.shape:
            raise ValueError(f"outcomes of {tuple(reference.shape)} and {tuple(new.shape)} images")
        return cls(int((reference & new).sum()), int((~reference & new).sum()),
                   int((reference & ~new).sum()), int((~reference & ~new).sum()))

    @property
    def n(self) -> int:
        return self.both + self.gained + self.lost + self.neither

    @property
    def difference(self) -> float:
        return (self.gained - self.lost) / self.n

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.gained, self.lost)

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        return paired_difference_ci(self, level)


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: the discordant images split as a fair coin would."""
    if gained + lost == 0:
        return 1.0
    return float(binomtest(gained, gained + lost, 0.5).pvalue)


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of k successes in n (Wilson 1927)."""
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def paired_difference_ci(t: Paired, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's method 10 interval for P(new correct) - P(reference correct)."""
    z = norm.ppf(0.5 + level / 2)
    n = t.n
    p_new, p_ref = (t.both + t.gained) / n, (t.both + t.lost) / n
    l_new, u_new = wilson(t.both + t.gained, n, z)
    l_ref, u_ref = wilson(t.both + t.lost, n, z)
    margins = (t.both + t.gained) * (t.neither + t.lost) * (t.both + t.lost) * (t.neither + t.gained)
    phi = (t.both * t.neither - t.gained * t.lost) / math.sqrt(margins) if margins else 0.0
    below = math.sqrt(max(0.0, (p_new - l_new) ** 2 - 2 * phi * (p_new - l_new) * (u_ref - p_ref)
                          + (u_ref - p_ref) ** 2))
    above = math.sqrt(max(0.0, (u_new - p_new) ** 2 - 2 * phi * (u_new - p_new) * (p_ref - l_ref)
                          + (p_ref - l_ref) ** 2))
    d = p_new - p_ref
    return max(-1.0, d - below), min(1.0, d + above)


def detectable_difference(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The paired difference a two-sided test at `alpha` detects with `power` on n images whose
    discordance rate (the fraction where the two models disagree) is `discordance`."""
    if n <= 0:
        raise ValueError("n must be positive")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    # a difference d needs at least d n discordant images: fewer observed (none, say, for two
    # identical outcome sets) cannot bring the detectable difference below z^2 / n
    return z * math.sqrt(max(discordance, z * z / n) / n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (the same order as given): the k-th smallest times (m - k + 1),
    made monotone, capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def paired_bootstrap(high: Callable[[np.ndarray], float], low: Callable[[np.ndarray], float], n: int,
                     reps: int = 2000, seed: int = 0) -> np.ndarray:
    """high(w) - low(w) for `reps` resamples with replacement of the same n images; `w` [n] says
    how often each image was drawn (a multinomial draw, the same resample for both). A resample
    where either statistic is undefined (NaN: say, no adversarial image drawn) is dropped."""
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, np.full(n, 1 / n), size=reps)
    diffs = np.array([high(w) - low(w) for w in draws], dtype=float)
    return diffs[np.isfinite(diffs)]


def bootstrap_p(diffs: np.ndarray, boundary: float = 0.0) -> float:
    """Two-sided bootstrap p-value of "the difference is `boundary`": twice the smaller tail of
    the resampled differences beyond it, counting the boundary itself as in both tails (with the
    +1 of Davison & Hinkley 1997, Eq. 4.11, so that p is never 0)."""
    if len(diffs) == 0:
        return 1.0
    tail = min(int((diffs <= boundary).sum()), int((diffs >= boundary).sum()))
    return min(1.0, 2 * (tail + 1) / (len(diffs) + 1))
