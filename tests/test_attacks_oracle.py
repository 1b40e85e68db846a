"""Attack strength against independent implementations: the Adversarial Robustness Toolbox (ART)
for FGSM, PGD and CW-L2, and the AutoAttack wrapper against the authors' reference behaviour.

On the `trained_fmnist` model (500 Fashion-MNIST test images): our robust accuracy must be within
1.5 points of ART's or lower; our CW-L2 must succeed at least as often as ART's, with a mean L2
at most 10% larger on the images both break.
"""

import copy
import sys

import numpy as np
import pytest
import torch
from torch import nn

from robustlab.attacks import ATTACKS, Threat
from robustlab.attacks.autoattack import AutoAttack
from robustlab.errors import UserError

art = pytest.importorskip("art", reason="the oracle tests need adversarial-robustness-toolbox")
from art.attacks.evasion import (  # noqa: E402
    CarliniL2Method,
    FastGradientMethod,
    ProjectedGradientDescent,
)
from art.estimators.classification import PyTorchClassifier  # noqa: E402

TOLERANCE = 0.015  # 1.5 points of robust accuracy


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def predictions(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def art_classifier(model):
    """ART's wrapper around a copy (ART switches modes itself; the shared fixture stays as it is)."""
    return PyTorchClassifier(copy.deepcopy(model).eval(), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                             nb_classes=10, clip_values=(0.0, 1.0))


def art_attack(attack, x, y):
    np.random.seed(0)  # ART's random starts draw from numpy's global generator: one fixed draw per test
    return torch.from_numpy(attack.generate(x.numpy(), y=y.numpy())).to(x.dtype)


@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_fgsm_matches_art(trained_fmnist, eps):
    model, x, y = trained_fmnist
    ours = ATTACKS.build("fgsm", eps=eps)(model, x, y)
    theirs = art_attack(FastGradientMethod(art_classifier(model), eps=eps, batch_size=len(x)), x, y)
    acc_ours, acc_art = accuracy(model, ours, y), accuracy(model, theirs, y)
    assert acc_ours <= acc_art + TOLERANCE, (acc_ours, acc_art)
    assert acc_ours < accuracy(model, x, y) - 0.1  # the comparison is not between two no-ops
    # Same algorithm, same model: the same decision on (nearly) every image.
    assert (predictions(model, ours) == predictions(model, theirs)).float().mean() >= 0.98


@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_pgd20_without_random_start_matches_art(trained_fmnist, eps):
    model, x, y = trained_fmnist
    step = 2.5 * eps / 20  # our default step size (Madry et al.), given to ART explicitly
    # ART returns the last iterate: so does ours here (the default, the best iterate, returns the
    # path's first adversarial point, whose class differs from the last one's on 16% of images)
    ours = ATTACKS.build("pgd", eps=eps, steps=20, random_start=False, iterate="last")(model, x, y)
    theirs = art_attack(ProjectedGradientDescent(
        art_classifier(model), eps=eps, eps_step=step, max_iter=20, num_random_init=0,
        batch_size=len(x), verbose=False), x, y)
    acc_ours, acc_art = accuracy(model, ours, y), accuracy(model, theirs, y)
    assert acc_ours <= acc_art + TOLERANCE, (acc_ours, acc_art)
    assert acc_ours < accuracy(model, ATTACKS.build("fgsm", eps=eps)(model, x, y), y)
    assert (predictions(model, ours) == predictions(model, theirs)).float().mean() >= 0.98


def test_pgd20_with_random_start_matches_art(trained_fmnist):
    """Both random: only the accuracies can be compared (at the brief's eps, 0.1)."""
    model, x, y = trained_fmnist
    eps = 0.1
    ours = ATTACKS.build("pgd", eps=eps, steps=20)(model, x, y)  # random start by default
    theirs = art_attack(ProjectedGradientDescent(
        art_classifier(model), eps=eps, eps_step=2.5 * eps / 20, max_iter=20, num_random_init=1,
        batch_size=len(x), verbose=False), x, y)
    acc_ours, acc_art = accuracy(model, ours, y), accuracy(model, theirs, y)
    assert acc_ours <= acc_art + TOLERANCE, (acc_ours, acc_art)


@pytest.mark.slow
def test_cw_l2_matches_art(trained_fmnist):
    """Each attack with its defaults (ours: CW's 1000 steps x 9 constants with early abort; ART:
    10 iterations x 10 constants, its line search) on 16 correctly classified images."""
    model, x, y = trained_fmnist
    keep = predictions(model, x) == y
    x, y = x[keep][:16], y[keep][:16]
    ours = ATTACKS.build("cw_l2")(model, x, y)
    theirs = art_attack(CarliniL2Method(art_classifier(model), batch_size=len(x), verbose=False), x, y)
    hit_ours, hit_art = predictions(model, ours) != y, predictions(model, theirs) != y
    assert hit_ours.float().mean() >= hit_art.float().mean(), (hit_ours, hit_art)
    both = hit_ours & hit_art
    assert both.sum() >= 8
    l2_ours = Threat("l2", 1.0).norm_of(ours - x)[both].mean()
    l2_art = Threat("l2", 1.0).norm_of(theirs - x)[both].mean()
    assert l2_ours <= 1.1 * l2_art, (l2_ours.item(), l2_art.item())


# AutoAttack through the reference code (pyautoattack).

@pytest.mark.slow
def test_autoattack_is_at_least_as_strong_as_pgd(trained_fmnist):
    pytest.importorskip("pyautoattack")
    model, x, y = trained_fmnist
    x, y = x[:32], y[:32]
    pgd = accuracy(model, ATTACKS.build("pgd", eps=0.03, steps=20)(model, x, y), y)
    apgd = accuracy(model, ATTACKS.build("apgd_ce", eps=0.03)(model, x, y), y)
    aa = accuracy(model, ATTACKS.build("autoattack", eps=0.03)(model, x, y), y)
    assert aa <= apgd <= pgd + 1 / len(y), (aa, apgd, pgd)
    assert aa < accuracy(model, x, y)


def tiny_model():
    """A random linear model: unlike a random CNN, its predictions vary and eps 0.1 flips them."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()


def tiny_batch(model, n=6):
    """Random images labelled with the model's own predictions: all correctly classified."""
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    return x, predictions(model, x)


def test_autoattack_restores_rng_and_tracer_and_breaks_points():
    pytest.importorskip("pyautoattack")
    model = tiny_model()
    x, y = tiny_batch(model)
    rng = torch.get_rng_state()
    tracer = lambda frame, event, arg: None  # noqa: E731
    before = sys.gettrace()  # coverage's, when it runs
    sys.settrace(tracer)
    try:
        x_adv = ATTACKS.build("apgd_ce", eps=0.1)(model, x, y)
        traced = sys.gettrace()
    finally:
        sys.settrace(before)
    assert traced is tracer  # the reference's dynamic-defense check calls sys.settrace(None)
    assert torch.equal(torch.get_rng_state(), rng)  # the reference reseeds the global RNG
    assert (predictions(model, x_adv) != y).all()  # eps 0.1 breaks this random model everywhere
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6


def test_autoattack_misclassified_points_unchanged_or_pushed():
    pytest.importorskip("pyautoattack")
    model = tiny_model()
    x, y = tiny_batch(model)
    y = y.clone()
    y[:3] = (y[:3] + 1) % 10  # three points misclassified from the start
    plain = ATTACKS.build("apgd_ce", eps=0.1, push_misclassified=False)(model, x, y)
    assert torch.equal(plain[:3], x[:3])  # the reference leaves non-robust points as they are
    pushed = ATTACKS.build("apgd_ce", eps=0.1)(model, x, y)
    assert torch.equal(pushed[3:], plain[3:])  # robust points: the reference's result
    assert (pushed[:3] != x[:3]).flatten(1).any(1).all()
    assert (predictions(model, pushed[:3]) != y[:3]).all()  # still misclassified: same robust accuracy
    ce = lambda xs: nn.functional.cross_entropy(model(xs), y[:3], reduction="none")  # noqa: E731
    with torch.no_grad():
        assert (ce(pushed[:3]) > ce(x[:3])).all()  # pushed up the loss, not just moved


def test_autoattack_settings_and_misuse():
    model = tiny_model()
    x, y = tiny_batch(model)
    with pytest.raises(UserError, match="untargeted"):
        ATTACKS.build("autoattack", eps=0.1)(model, x, y, (y + 1) % 10)
    with pytest.raises(UserError, match="version='custom'"):
        AutoAttack(version="custom")
    with pytest.raises(UserError, match="attacks=\\['pgd'\\] is out of range: expected AutoAttack's"):
        AutoAttack(version="custom", attacks=("pgd",))
    with pytest.raises(UserError, match="version='bogus' is out of range"):
        ATTACKS.build("autoattack", eps=0.1, version="bogus")
    with pytest.raises(UserError, match="unknown parameter\\(s\\) steps"):
        ATTACKS.build("apgd_t", eps=0.1, steps=10)
    assert ATTACKS.build("autoattack", eps=0.1)(model, x[:0], y[:0]).shape == (0, 1, 28, 28)


def test_autoattack_bf16_runs_apgd_and_square_on_the_fast_copy_and_fab_and_decisions_in_float32():
    """With FAB-T's linearisations in bfloat16 one image of 200 the reference broke stayed robust
    (benchmarks/autoattack.py's images): FAB-T, like the robust checks, keeps the float32 copy."""
    pyautoattack = pytest.importorskip("pyautoattack")
    exact, fast = nn.Linear(4, 10), nn.Linear(4, 10)
    aa = AutoAttack(impl="robustlab", precision="bf16")._build(pyautoattack, exact, fast,
                                                               torch.device("cpu"), 10)
    assert aa.model is exact and aa.fab.predict is exact
    assert aa.apgd.model is fast and aa.apgd_targeted.model is fast and aa.square.predict is fast
    x = torch.rand(3, 4)
    with torch.no_grad():  # FAB's gradients and label tests both run the exact model
        assert torch.equal(aa.fab._get_predicted_label(x), exact(x).argmax(1))
        df, _ = aa.fab.get_diff_logits_grads_batch_targeted(x, torch.zeros(3, dtype=torch.long),
                                                            torch.ones(3, dtype=torch.long))
        logits = exact(x)
        assert torch.allclose(df.flatten(), logits[:, 1] - logits[:, 0])


def test_autoattack_robustlab_impl_runs_the_reference_on_a_folded_copy_with_the_same_verdicts(trained_fmnist):
    pytest.importorskip("pyautoattack")
    model, x, y = trained_fmnist
    x, y = x[:24], y[:24]
    reference = ATTACKS.build("apgd_ce", eps=0.02)(model, x, y)
    ours = ATTACKS.build("apgd_ce", eps=0.02, impl="robustlab")(model, x, y)
    assert not model.training and all(p.requires_grad for p in model.parameters())  # as it was
    broken = predictions(model, reference) != y
    assert 0 < broken.sum() < len(y)  # a test that could tell the two apart
    assert torch.equal(predictions(model, ours) != y, broken)
    assert (ours - x).abs().max() <= 0.02 + 1e-6
    with pytest.raises(UserError, match="precision='bf16' needs impl='robustlab'"):
        AutoAttack(precision="bf16")
    with pytest.raises(UserError, match="impl='fast' is out of range: expected one of reference, robustlab"):
        ATTACKS.build("autoattack", eps=0.1, impl="fast")
