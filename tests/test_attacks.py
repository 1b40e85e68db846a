import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.attacks import (
    ATTACKS,
    PGD,
    Threat,
    cw_margin,
    dlr,
    kurakin_steps,
    least_likely,
    most_confusing,
    random_other,
)
from robustlab.data import load_dataset
from robustlab.errors import UserError
from robustlab.models import create_model

EPS = 0.1


@functools.lru_cache(maxsize=1)
def _fitted_state():
    """A small BN model fitted for 60 steps on synthetic classes: its logits carry information,
    so attacks must really move inputs to change its mind (a random init predicts one class)."""
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, 28, width=4, embedding_dim=16)
    data = load_dataset("synthetic", train_size=512, test_size=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = data.train.images.float() / 255, data.train.labels
    for step in range(60):
        i = torch.arange(step * 64, step * 64 + 64) % len(y)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def bn_model():
    model = create_model("small_cnn", 10, 1, 28, width=4, embedding_dim=16)
    model.load_state_dict(_fitted_state())
    return model


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


# Every registered attack, in each norm it declares (ATTACKS.info[name]["norms"]).
CONTRACT = [(n, norm) for n in ATTACKS.names() for norm in ATTACKS.info[n]["norms"]]


@pytest.mark.parametrize("name, norm", CONTRACT)
def test_contract(name, norm):
    eps = EPS if norm == "linf" else 1.0
    bounded = ATTACKS.info[name]["bounded"]  # minimal-distortion attacks (CW-L2, JSMA) are not
    model = bn_model().eval()
    x, _ = batch()
    with torch.no_grad():  # labels = the model's own predictions: every attack has work to do
        y = model(x).argmax(1)
    model.train()
    model.body[1].eval()  # a mixed-mode model: each module's mode must come back as it was
    modes = [m.training for m in model.modules()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x_before = x.clone()
    attack = ATTACKS.build(name, eps=eps, norm=norm)
    x_adv = attack(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad
    assert torch.isfinite(x_adv).all()
    assert torch.equal(x, x_before)  # input not mutated
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if bounded:
        assert (Threat(norm, eps).norm_of(x_adv - x) <= eps + 1e-6).all()
    assert (x_adv - x).abs().amax() > 1e-3  # a real perturbation, not float round-off
    assert [m.training for m in model.modules()] == modes
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    for k, v in model.state_dict().items():  # weights and BN running statistics untouched
        assert torch.equal(v, state[k]), k
    assert torch.equal(attack(model, x, y), x_adv)  # deterministic for a seed


@pytest.mark.parametrize("name", ["pgd", "mim", "iter_ll"])
def test_same_result_whatever_the_batch_size(name):
    model = bn_model().eval()
    x, y = batch(8)
    attack = ATTACKS.build(name, eps=EPS)
    whole = attack(model, x, y)
    parts = torch.cat([attack(model, x[:3], y[:3]), attack(model, x[3:], y[3:])])
    # Random starts come from each sample's content; only float rounding may differ.
    assert torch.allclose(whole, parts, atol=1e-5)
    assert not torch.equal(ATTACKS.build(name, eps=EPS, seed=1)(model, x, y), whole) or name != "pgd"


def test_fgsm_matches_closed_form_on_linear_softmax_model():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    x = torch.rand(5, 1, 3, 4)
    y = torch.tensor([0, 1, 2, 3, 1])
    W, b = lin[1].weight.detach(), lin[1].bias.detach()
    p = torch.softmax(x.flatten(1) @ W.T + b, 1)
    grad = (p - F.one_hot(y, 4).float()) @ W  # W^T (p - onehot(y)) per sample
    expected = (x + EPS * grad.view_as(x).sign()).clamp(0, 1)
    assert torch.allclose(ATTACKS.build("fgsm", eps=EPS)(lin, x, y), expected, atol=1e-7)


def test_l2_projection_and_random_start_stay_in_ball_and_box():
    threat = Threat("l2", 0.5)
    x = torch.rand(16, 3, 8, 8)
    far = x + torch.randn_like(x) * 3
    projected = threat.project(far, x)
    assert (threat.norm_of(projected - x) <= 0.5 + 1e-6).all()
    assert projected.min() >= 0 and projected.max() <= 1
    inside = x + 0.01 * torch.randn_like(x)
    inside = inside.clamp(0, 1)
    assert torch.allclose(threat.project(inside, x), inside)  # already feasible: unchanged
    start = threat.random_start(x, torch.rand_like(x), torch.rand(16))
    assert (threat.norm_of(start - x) <= 0.5 + 1e-6).all()
    linf = Threat("linf", 0.1)
    assert torch.allclose(linf.project(x + 1.0, x), (x + 0.1).clamp(0, 1))


def test_cw_margin_and_dlr_hand_values():
    z = torch.tensor([[3.0, 1.0, 0.5, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    assert cw_margin(z, y).item() == pytest.approx(min(1.0 - 3.0, 0.0))  # max_{j!=y} z_j - z_y = -2
    assert cw_margin(z, y, kappa=-5.0).item() == pytest.approx(-5.0)  # clamped at kappa
    assert cw_margin(z, y, t).item() == pytest.approx(0.5 - 3.0)  # z_t - max_{j!=t} z_j
    # DLR: -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3) = -(3 - 1) / (3 - 0.5)
    assert dlr(z, y).item() == pytest.approx(-2.0 / 2.5)
    # targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(3 - 0.5) / (3 - (0.5 - 1) / 2)
    assert dlr(z, y, t).item() == pytest.approx(-2.5 / 3.25)


def test_target_rules_hand_values():
    z = torch.tensor([[0.1, 2.0, -3.0, 1.5], [5.0, -1.0, 0.0, 4.0]])
    y = torch.tensor([1, 0])
    assert least_likely(z, y).tolist() == [2, 1]
    assert most_confusing(z, y).tolist() == [3, 3]  # AGKD-BML eq. 5: best other class
    t = random_other(z, y, seeds=[1, 2])
    assert (t != y).all() and t.tolist() == random_other(z, y, seeds=[1, 2]).tolist()


def test_kurakin_iterations():
    assert kurakin_steps(16 / 255) == 20 and kurakin_steps(8 / 255) == 10  # min(e+4, 1.25e)
    assert kurakin_steps(2 / 255) == 2 and kurakin_steps(0.0) == 1


@pytest.mark.parametrize("make, match", [
    (lambda: Threat("linf", -0.1), "eps=-0.1 is out of range"),
    (lambda: Threat("linf", 8), "larger than the \\[0, 1\\] input range"),
    (lambda: Threat("l1", 0.1), "norm='l1' is not supported"),
    (lambda: ATTACKS.build("pgd"), "needs eps"),
    (lambda: ATTACKS.build("pgd", eps=0.1, stepz=3), "unknown parameter\\(s\\) stepz"),
    (lambda: ATTACKS.build("pgd", eps=0.1, steps=0), "steps=0 is out of range"),
    (lambda: ATTACKS.build("pgd", eps=0.1, loss="hinge"), "loss='hinge'"),
    (lambda: ATTACKS.build("deepfool", eps=0.1), "unknown attack 'deepfool'"),
])
def test_bad_settings(make, match):
    with pytest.raises(UserError, match=match):
        make()


def test_bad_inputs():
    model, attack = bn_model().eval(), ATTACKS.build("fgsm", eps=EPS)
    x, y = batch()
    with pytest.raises(UserError, match="must lie in \\[0, 1\\]"):
        attack(model, x * 255, y)
    with pytest.raises(UserError, match="matching x's batch"):
        attack(model, x, y[:3])
    with pytest.raises(UserError, match="NaN or inf"):
        attack(model, x.clone().fill_(math.nan), y)
    with pytest.raises(UserError, match="equal the true label"):
        attack(model, x, y, target=y.clone())


def test_warns_on_probability_outputs():
    model = nn.Sequential(bn_model().eval(), nn.Softmax(1))
    x, y = batch()
    with pytest.warns(UserWarning, match="look like probabilities"):
        ATTACKS.build("step_ll", eps=EPS)(model, x, y)


def test_works_inside_callers_no_grad():
    model = bn_model().eval()
    x, y = batch()
    with torch.no_grad():
        x_adv = ATTACKS.build("pgd", eps=EPS)(model, x, y)
    assert (x_adv != x).any()


def test_restarts_keep_each_samples_best():
    model = bn_model().eval()
    x, y = batch(8)
    one = PGD(Threat("linf", 0.02), steps=3, seed=0)
    many = PGD(Threat("linf", 0.02), steps=3, restarts=4, seed=0)
    loss = lambda xa: F.cross_entropy(model(xa), y, reduction="none")  # noqa: E731
    with torch.no_grad():
        wrong_one = model(one(model, x, y)).argmax(1) != y
        wrong_many = model(many(model, x, y)).argmax(1) != y
        assert (wrong_many >= wrong_one).all()  # never loses an adversarial sample
        keep = ~wrong_many & ~wrong_one
        assert (loss(many(model, x, y))[keep] >= loss(one(model, x, y))[keep] - 1e-6).all()
