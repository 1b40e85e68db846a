"""eval/stats.py against hand values and scipy (the Verdicts issue's paired statistics)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from robustlab.detectors import detection_auc
from robustlab.eval.stats import (
    Paired,
    bootstrap_p,
    detectable_difference,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    wilson,
)


def test_mcnemar_exact_is_the_binomial_tail_of_the_discordant_images():
    # 1 of 10 discordant images each way: 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024, rel=1e-12)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024, rel=1e-12)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == pytest.approx(1.0)


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (50, 50), (731, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    ours = wilson(k, n, 1.959963984540054)
    theirs = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12)


def test_newcombe_without_correlation_is_the_square_and_add_of_two_wilson_intervals():
    t = Paired(both=20, gained=10, lost=20, neither=10)  # ad = bc: phi = 0
    n, p_new, p_ref = 60, 30 / 60, 40 / 60
    new = binomtest(30, n).proportion_ci(0.95, method="wilson")
    ref = binomtest(40, n).proportion_ci(0.95, method="wilson")
    low = p_new - p_ref - math.hypot(p_new - new.low, ref.high - p_ref)
    high = p_new - p_ref + math.hypot(new.high - p_new, p_ref - ref.low)
    assert t.ci() == pytest.approx((low, high), abs=1e-12)
    assert t.difference == pytest.approx(-10 / 60)


def test_a_positive_correlation_narrows_the_interval_and_it_stays_in_minus_one_one():
    correlated = Paired(both=40, gained=5, lost=10, neither=45)  # the usual case: models agree
    independent = Paired(both=20, gained=25, lost=30, neither=25)
    assert correlated.difference == independent.difference == pytest.approx(-0.05)
    width = [hi - lo for lo, hi in (correlated.ci(), independent.ci())]
    # the information is in the discordant images: widths scale as sqrt(15 / 55)
    assert width[0] / width[1] == pytest.approx(math.sqrt(15 / 55), rel=0.1)
    assert -1 <= Paired(0, 0, 10, 0).ci()[0] <= Paired(0, 0, 10, 0).ci()[1] <= 0


def test_newcombe_covers_the_true_difference_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    probabilities = [0.6, 0.1, 0.05, 0.25]  # both, gained, lost, neither: true difference +0.05
    tables = rng.multinomial(300, probabilities, size=3000)
    covered = [lo <= 0.05 <= hi for lo, hi in (Paired(*map(int, t)).ci() for t in tables)]
    assert 0.935 <= np.mean(covered) <= 0.965  # 3000 draws: +-0.8 points of standard error


def test_paired_counts_from_outcome_tensors():
    reference = torch.tensor([True, True, False, False, True])
    new = torch.tensor([True, False, True, False, True])
    assert Paired.of(reference, new) == Paired(both=2, gained=1, lost=1, neither=1)
    with pytest.raises(ValueError, match="outcomes of"):
        Paired.of(reference, new[:4])


def test_detectable_difference_by_hand():
    # (z_0.975 + z_0.8) * sqrt(0.1 / 1000) = (1.959964 + 0.841621) * 0.01
    assert detectable_difference(1000, 0.1) == pytest.approx(0.02801585, abs=1e-7)
    assert detectable_difference(4000, 0.1) == pytest.approx(0.02801585 / 2, abs=1e-7)
    # identical outcomes on 50 images (no discordant image): not 0, but z^2 / n = 2.801585^2 / 50
    assert detectable_difference(50, 0.0) == pytest.approx(2.801585 ** 2 / 50, abs=1e-6)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_a_weighted_auc_is_the_auc_of_the_repeated_images():
    clean, adv = np.array([3.0, 1.0, 2.0, 0.5]), np.array([2.5, 1.5, -1.0, 0.0])  # image i: (clean, adv)
    weights = np.array([2, 0, 1, 3])
    repeated = np.repeat(np.arange(4), weights)
    assert detection_auc(clean, adv, weights) == pytest.approx(detection_auc(clean[repeated], adv[repeated]))
    # by hand: lower density = more suspicious; 6 x 6 pairs (clean, adv), adv below clean wins
    pairs = [(c, a) for c in clean[repeated] for a in adv[repeated]]
    assert detection_auc(clean, adv, weights) == pytest.approx(
        sum((a < c) + 0.5 * (a == c) for c, a in pairs) / len(pairs))
    assert math.isnan(detection_auc(clean, adv, np.zeros(4)))
    # ties (an adversarial score equal to a clean one) count half, as scikit-learn's AUC does
    tied_adv = np.array([1.0, 2.0, 2.0, 3.0])
    assert detection_auc(clean, tied_adv, weights) == pytest.approx(
        roc_auc_score(np.repeat([0, 1], 4), -np.concatenate([clean, tied_adv]),
                      sample_weight=np.concatenate([weights, weights])), rel=1e-12)


def test_paired_bootstrap_resamples_the_same_images_for_both_statistics():
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    b = a + rng.normal(scale=0.1, size=200) - 0.05  # b tracks a closely, 0.05 lower on average
    mean = lambda v: lambda w: float(np.average(v, weights=w))  # noqa: E731
    diffs = paired_bootstrap(mean(a), mean(b), 200, reps=2000)
    observed = float(np.mean(a - b))
    # paired: the spread is that of the per-image differences (sd 0.1), not of a or b (sd 1)
    assert np.std(diffs) == pytest.approx(np.std(a - b) / math.sqrt(200), rel=0.1)
    assert np.mean(diffs) == pytest.approx(observed, abs=0.003)
    assert bootstrap_p(diffs) == pytest.approx(2 / 2001)  # every resample above 0: the floor
    unpaired = paired_bootstrap(mean(a), lambda w: float(np.mean(b)), 200, reps=500)
    assert np.std(unpaired) > 5 * np.std(diffs)


def test_bootstrap_p_by_hand_and_undefined_resamples_dropped():
    assert bootstrap_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(2 * 2 / 5)
    assert bootstrap_p(np.array([]), 0.0) == 1.0
    assert bootstrap_p(np.array([-3.0, -2.0, 1.0]), boundary=-2.5) == pytest.approx(2 * 2 / 4)
    nan_half = paired_bootstrap(lambda w: np.nan if w[0] == 0 else 1.0, lambda w: 0.0, 2, reps=400)
    assert 0 < len(nan_half) < 400 and (nan_half == 1.0).all()
