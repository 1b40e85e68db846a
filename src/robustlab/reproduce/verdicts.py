"""Verdicts on the papers' claims: a test per comparison, Holm over the page, and for every
undecided one the smallest difference this budget could have detected.

A comparison is two cells (recipe, column). When both reports hold per-image outcomes for the
same images, the test is paired (eval/stats.py): the exact McNemar test for a ">" claim, and for
an "at least as good" claim a two-sided Wald test of the paired difference against the
non-inferiority boundary -MARGIN points (the discordant images giving its standard error): below
alpha on the paper's side it is non-inferior, on the other side inferior. Otherwise
(older reports, or images that differ) the two accuracies are treated as independent binomial
estimates (a z-test), which is conservative for images that are in fact shared. A detection AUC
or the white-box distortion, which no single image decides, is tested by a paired bootstrap over
the detection images (eval/stats.py: both models' number on the same resamples; 2,000 of them)
when both detect reports keep their per-image scores; older ones give its sign only.

With several seeds (`reproduce --seeds N`), each seed's pair of models gives one difference and
the test is a one-sample t-test of those differences (scipy.stats.ttest_1samp): training's
variance is then in the error bar, not only the images'. Differences with no spread give no
variance estimate (not p = 0): the first seed's paired test of the images decides then, or the
comparison is not testable.

Every tested comparison's two-sided p-value is adjusted by Holm over all the comparisons on the
page; a claim holds (or is reversed) when its adjusted p is below ALPHA with the difference on
the paper's side (or the other). The detectable difference of an undecided claim is given at
ALPHA and at ALPHA / m, the level Holm holds the first of m tests to.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm, ttest_1samp
from scipy.stats import t as t_dist

from robustlab.eval.stats import Paired, bootstrap_p, detectable_difference, holm

ALPHA = 0.05
POWER = 0.8
MARGIN = 2.0  # points: how much worse an "at least as good" claim may be


@dataclass
class Comparison:
    """higher - lower (percent), tested as the claim says."""

    high: float
    low: float
    at_least: bool = False
    paired: Paired | None = None          # per-image outcomes on the same images (seed 0)
    images: tuple[int, int] | None = None  # the two image counts, when not paired (None: no error bar)
    seeds: tuple[float, ...] = ()          # higher - lower of each seed (2 or more: tested across seeds)
    resampled: tuple[float, ...] = ()      # higher - lower on each bootstrap resample (a detection number)

    def __post_init__(self) -> None:
        if self.at_least and self.resampled:
            raise ValueError("the non-inferiority margin is in accuracy points; a resampled detection "
                             "number has no margin")

    @property
    def difference(self) -> float:
        return self.high - self.low

    @property
    def testable(self) -> bool:
        return (self.across_seeds or bool(self.resampled) or self.paired is not None
                or self.images is not None)

    @property
    def across_seeds(self) -> bool:
        """Tested across seeds: two or more, with a spread to estimate the variance from (equal
        differences give no variance estimate: then the images' test decides, or nothing)."""
        return len(self.seeds) >= 2 and statistics.stdev(self.seeds) > 0

    def seed_spread(self) -> float:
        """The standard deviation of the per-seed differences (points)."""
        return statistics.stdev(self.seeds)

    def _se(self) -> float:
        """Standard error of the difference in points."""
        if self.paired is not None:
            t = self.paired
            d = t.difference
            return 100 * max(math.sqrt(max((t.gained + t.lost) / t.n ** 2 - d * d / t.n, 0.0)), 1 / t.n)
        se = [math.sqrt(max(v / 100 * (1 - v / 100), 0.0) / n)
              for v, n in zip((self.high, self.low), self.images)]
        return 100 * max(math.hypot(*se), 1 / max(self.images))

    def p_value(self) -> float:
        """Two-sided p of the claim's test (the side is read off the difference's sign). With
        seeds: a one-sample t-test of the per-seed differences (against -MARGIN for an "at
        least" claim, else 0): training's variance and the images' both in it."""
        if self.across_seeds:
            boundary = -MARGIN if self.at_least else 0.0
            return float(ttest_1samp(self.seeds, boundary).pvalue)
        if self.resampled:
            return bootstrap_p(np.asarray(self.resampled))
        if self.at_least:
            z = (self.difference + MARGIN) / self._se()  # H0: higher is worse by the margin or more
            return min(1.0, 2 * norm.sf(abs(z)))
        if self.paired is not None:
            t = self.paired
            return float(binomtest(t.gained, t.gained + t.lost, 0.5).pvalue) if t.gained + t.lost else 1.0
        return min(1.0, 2 * norm.sf(abs(self.difference) / self._se()))

    def paper_side(self) -> bool:
        """The difference lies on the paper's side of the tested boundary."""
        return self.difference + (MARGIN if self.at_least else 0.0) > 0

    def amount(self, value: float) -> str:
        """A difference in this comparison's unit: accuracy points, or a detection number's own."""
        return f"a difference of {value:.3f}" if self.resampled else f"{value:.1f} points"

    def detectable(self, alpha: float = ALPHA) -> float:
        """The difference (points) a two-sided test at `alpha` finds with POWER at this budget."""
        if self.across_seeds:
            df = len(self.seeds) - 1
            quantiles = t_dist.ppf(1 - alpha / 2, df) + t_dist.ppf(POWER, df)
            return quantiles * self.seed_spread() / math.sqrt(df + 1)
        if self.resampled:
            return (norm.ppf(1 - alpha / 2) + norm.ppf(POWER)) * statistics.stdev(self.resampled)
        if self.paired is not None:
            t = self.paired
            return 100 * detectable_difference(t.n, (t.gained + t.lost) / t.n, alpha, POWER)
        return (norm.ppf(1 - alpha / 2) + norm.ppf(POWER)) * self._se()


def decide(comparisons: list[Comparison | None]) -> list[str]:
    """The verdict text of each comparison (None: not measured), Holm-adjusted over the tested."""
    tested = [i for i, c in enumerate(comparisons) if c is not None and c.testable]
    adjusted = dict(zip(tested, holm([comparisons[i].p_value() for i in tested])))
    out = []
    for i, c in enumerate(comparisons):
        if c is None:
            out.append("not measured")
        elif i not in adjusted:
            spread = (f"{len(c.seeds)} seeds' differences are equal, no variance estimate, and "
                      if len(c.seeds) >= 2 else "")
            out.append(f"not resolved ({spread}no per-image outcomes to test: sign only, "
                       + ("paper's way)" if c.difference > 0 else "not the paper's way)"))
        elif adjusted[i] < ALPHA:
            side = "holds" if c.paper_side() else "reversed"
            how = f" (non-inferior within {MARGIN:g} points)" if c.at_least and side == "holds" else ""
            out.append(f"{side}{how} (p {adjusted[i]:.2g} after Holm{_seeds(c)})")
        else:
            # Holm tests the smallest p at ALPHA / m: a lone real difference among m claims must
            # reach that level, one among many decided claims only ALPHA; both ends are given
            strictest = "" if len(tested) == 1 else (
                f", {c.amount(c.detectable(ALPHA / len(tested)))} at {ALPHA:g}/{len(tested)}, Holm's "
                "strictest level")
            out.append(f"not resolved (p {adjusted[i]:.2g} after Holm; this budget detects "
                       f"{c.amount(c.detectable())} at {POWER:.0%} power and alpha {ALPHA:g}{strictest}"
                       f"{_seeds(c)})")
    return out


def _seeds(c: Comparison) -> str:
    """The seed-to-seed spread beside the images' own error, when there are seeds."""
    if not c.across_seeds:
        return ""
    images = f", images' standard error {c._se():.1f}" if c.paired is not None or c.images else ""
    return f"; {len(c.seeds)} seeds, differences sd {c.seed_spread():.1f}{images}"
