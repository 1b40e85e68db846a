"""PDM: the Siamese, reduce-variance and reverse cross-entropy terms against hand-computed values,
Siamese pairing, an RCE model that predicts its classes, and the KDE detector."""

import math

import numpy as np
import pytest
import torch

from robustlab.config import load_config
from robustlab.data import ClassIndex, Split
from robustlab.defenses import TERMS, Step
from robustlab.defenses.pairing import SiamesePairing
from robustlab.defenses.step import Siamese
from robustlab.detectors import KDEDetector, detection_auc, detection_rate, roc
from robustlab.errors import UserError
from robustlab.experiment import train
from robustlab.models import Out

TINY = ["data.name=synthetic", "data.options={train_size: 512, test_size: 256}", "data.batch_size=64",
        "model.options={width: 8, embedding_dim: 32}", "train.epochs=5", "train.monitor_images=0",
        "optim.lr=0.05"]


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def fixed_step(y, clean=None, siamese=None, siamese_out=None) -> Step:
    y = torch.tensor(y)
    step = Step(torch.nn.Identity(), torch.zeros(len(y), 1), y, forward_all=lambda x: None)
    for name, value in (("clean", clean), ("siamese", siamese), ("siamese_out", siamese_out)):
        if value is not None:
            step.__dict__[name] = value
    return step


def test_reduce_variance_hand_computed():
    # class 0: (0, 0), (2, 0) -> mean (1, 0), distances 1, 1 -> sigma 1; class 1: (0, 3) alone -> 0;
    # class 2: (0, 0), (0, 4), (0, 8) -> mean (0, 4), distances 4, 0, 4 -> sigma 8/3.
    # RVL = the sum over classes (PDM Alg. 1 lines 18-22: RVL = RVL + sigma_c) = 1 + 0 + 8/3
    z = t([[0, 0], [2, 0], [0, 3], [0, 0], [0, 4], [0, 8]])
    step = fixed_step([0, 0, 1, 2, 2, 2], clean=Out(None, z, None))
    assert TERMS.get("reduce_variance")(step).item() == pytest.approx(1 + 0 + 8 / 3)


def test_reduce_variance_sums_the_classes_as_algorithm_1():
    # class 0 = {(0,0), (2,0)}: sigma 1; class 1 = {(0,0), (0,4)}: sigma 2 -> RVL 3 (the mean over
    # classes, the code before this fix, gave 1.5)
    step = fixed_step([0, 0, 1, 1], clean=Out(None, t([[0, 0], [2, 0], [0, 0], [0, 4]]), None))
    assert TERMS.get("reduce_variance")(step).item() == pytest.approx(3.0)


def test_siamese_cosine_hand_computed():
    # pair 1: (1, 0) vs (1, 1), same class: |cos - 1| = 1 - 1/sqrt2; pair 2: (1, 0) vs (0, 2),
    # other class: |0 - 0| = 0; pair 3: (1, 0) vs (3, 0), other class: |1 - 0| = 1
    step = fixed_step([0, 0, 0], clean=Out(None, t([[1, 0], [1, 0], [1, 0]]), None),
                      siamese=Siamese(None, torch.tensor([0, 1, 2]), t([1.0, 0.0, 0.0])),
                      siamese_out=Out(None, t([[1, 1], [0, 2], [3, 0]]), None))
    assert TERMS.get("siamese_cosine")(step).item() == pytest.approx((1 - 1 / math.sqrt(2) + 0 + 1) / 3)


def test_reverse_cross_entropy_hand_computed():
    # K = 3, y = 0: R = [0, 1/2, 1/2]; logits z = [ln 4, 0, 0] -> softmax(-z) = [1/9, 4/9, 4/9];
    # RCE = -(1/2 ln 4/9 + 1/2 ln 4/9) = ln(9/4)
    z = t([[math.log(4), 0.0, 0.0]])
    step = fixed_step([0], clean=Out(z, None, None),
                      siamese=Siamese(None, torch.tensor([0]), t([1.0])), siamese_out=Out(z, None, None))
    assert TERMS.get("reverse_ce")(step).item() == pytest.approx(math.log(9 / 4))
    assert TERMS.get("siamese_ce")(step, reverse=True).item() == pytest.approx(math.log(9 / 4))
    # CE of the same logits for the second sub-network: -ln(4/6)
    assert TERMS.get("siamese_ce")(step).item() == pytest.approx(-math.log(4 / 6))


def test_siamese_pairing_draws_same_class_with_probability_q():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 1, 4, 4), generator=g, dtype=torch.uint8)
    split = Split(images, torch.arange(200) % 10)
    y = torch.arange(2000) % 10
    torch.manual_seed(0)
    pairs = SiamesePairing(0.3, class_index=ClassIndex(split))(torch.zeros(2000, 1, 4, 4), y)
    same = pairs.same.bool()
    assert torch.equal(pairs.y[same], y[same]) and (pairs.y[~same] != y[~same]).all()
    assert abs(same.float().mean().item() - 0.3) < 0.04
    pixels = (pairs.x * 255).round().to(torch.uint8)
    for image, cls in zip(pixels[:50], pairs.y[:50]):  # each counterpart is a sample of its class
        match = (split.images == image).flatten(1).all(1)
        assert (split.labels[match] == cls).all() and match.any()
    with pytest.raises(UserError, match="class index"):
        SiamesePairing()(torch.zeros(1, 1, 4, 4), torch.tensor([0]))
    with pytest.raises(UserError, match="same_prob"):
        SiamesePairing(1.5)


@pytest.mark.parametrize("recipe, floor", [("rce", 0.9), ("siamese_rvl", 0.9), ("pdm", 0.5)])
def test_rce_and_pdm_models_predict_their_classes(tmp_path, recipe, floor):
    # the argmax of the model's own output is the class (RCE's reversal is inside the loss);
    # chance is 0.1. RCE learns more slowly than CE here (0.99 after 5 epochs; pdm about 0.7).
    cfg = load_config(f"configs/{recipe}_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", f"name={recipe}"])
    run = train(cfg, log=lambda _: None)
    assert run.final["test_acc"] > floor, run.final
    if recipe != "rce":
        assert {"train_siamese_cosine", "train_reduce_variance", "train_siamese_ce"} <= set(run.final)


# ---- KDE detector ---------------------------------------------------------------------------------

def clusters(n=200, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3] * 10
    labels = np.repeat(np.arange(3), n)
    return centres[labels] + rng.normal(size=(3 * n, dim)), labels


def test_kde_auc_is_high_for_far_embeddings_and_half_for_identical_ones():
    z, y = clusters()
    detector = KDEDetector(per_class=100).fit(torch.tensor(z), torch.tensor(y))
    assert 0.01 <= detector.bandwidth <= 10 ** 1.5
    clean, labels = clusters(seed=1)
    far = clean + 6.0  # adversarial embeddings pushed off the class clusters
    s_clean = detector.score(torch.tensor(clean), torch.tensor(labels))
    s_far = detector.score(torch.tensor(far), torch.tensor(labels))
    assert detection_auc(s_clean, s_far) > 0.99
    assert detection_rate(s_clean, s_far, 0.05) > 0.95
    same = detector.score(torch.tensor(clusters(seed=2)[0]), torch.tensor(labels))
    assert abs(detection_auc(s_clean, same) - 0.5) < 0.06
    fpr, tpr = roc(s_clean, s_far)
    assert fpr[0] == 0 and tpr[-1] == 1


def test_kde_save_load_round_trip_and_clear_errors(tmp_path):
    z, y = clusters(n=50)
    with pytest.raises(UserError, match="not fitted"):
        KDEDetector().score(torch.tensor(z), torch.tensor(y))
    detector = KDEDetector(bandwidth=0.7).fit(torch.tensor(z), torch.tensor(y))
    path = detector.save(tmp_path / "kde.pt")
    again = KDEDetector.load(path)
    assert again.bandwidth == 0.7
    z, y = torch.tensor(z), torch.tensor(y)
    assert np.allclose(again.score(z, y), detector.score(z, y))
    with pytest.raises(UserError, match="do not match the detector's 4"):
        detector.score(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(UserError, match=r"predicted class\(es\) \[7\]"):
        detector.score(torch.zeros(1, 4), torch.tensor([7]))
    with pytest.raises(UserError, match="NaN"):
        detector.score(torch.full((1, 4), float("nan")), torch.tensor([0]))
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a robustlab KDE detector"):
        KDEDetector.load(tmp_path / "other.pt")


def brute_force_log_density(points: np.ndarray, z: np.ndarray, h: float) -> np.ndarray:
    from scipy.special import logsumexp

    sq = ((z[:, None, :] - points[None]) ** 2).sum(-1)
    norm = np.log(len(points)) + 0.5 * points.shape[1] * np.log(2 * np.pi * h * h)
    return logsumexp(-sq / (2 * h * h), axis=1) - norm


def test_kde_score_equals_scikit_learn_in_low_dimension_and_brute_force_in_high():
    from sklearn.neighbors import KernelDensity

    z, y = clusters(n=100, dim=3)
    detector = KDEDetector(bandwidth=0.8).fit(torch.tensor(z), torch.tensor(y))
    probe = clusters(n=20, dim=3, seed=4)[0]
    oracle = KernelDensity(bandwidth=0.8).fit(detector.samples[1]).score_samples(probe)
    np.testing.assert_allclose(detector.score(torch.tensor(probe), torch.full((60,), 1)), oracle, rtol=1e-10)
    # 256-d, small bandwidth, points far from the samples: where tree-based KDE goes wrong
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(300, 256)) * 3
    detector = KDEDetector(bandwidth=0.18).fit(torch.tensor(samples), torch.zeros(300, dtype=torch.long))
    far = rng.normal(size=(40, 256)) * 3 + 2
    got = detector.score(torch.tensor(far), torch.zeros(40, dtype=torch.long))
    np.testing.assert_allclose(got, brute_force_log_density(samples, far, 0.18), rtol=1e-9)
    # float32 embeddings (the attack's path) agree closely too
    f32 = detector.log_density(torch.tensor(far, dtype=torch.float32), torch.zeros(40, dtype=torch.long))
    np.testing.assert_allclose(f32.numpy(), got, rtol=1e-4)


def test_kde_cross_validation_picks_a_sensible_bandwidth():
    # 1000 points of N(0, 1) in 1-d: Silverman's rule gives 1.06 * 1000^(-1/5) = 0.27; the
    # held-out likelihood on the grid picks one of its neighbours (0.178 or 0.316)
    z = torch.randn(1000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    detector = KDEDetector().fit(z, torch.zeros(1000, dtype=torch.long))
    assert any(detector.bandwidth == pytest.approx(h, abs=0.001) for h in (0.178, 0.316))
