"""CW-L2, JSMA, SPSA and Square: paper equations on hand-checked tensors, and their strength
against the small standard-trained Fashion-MNIST model (the `trained_fmnist` fixture).

The registry contract (mode, parameters, grads, BN statistics, box, ball for bounded attacks,
determinism) is checked for all four by tests/test_attacks.py::test_contract.
"""

import math

import pytest
import torch
from torch import nn

from robustlab.attacks import ATTACKS, PGD, TARGETS, Threat
from robustlab.attacks.base import sample_seeds
from robustlab.attacks.cw import CWL2, cw_objective
from robustlab.attacks.jsma import JSMA, pair_saliency
from robustlab.attacks.losses import cw_margin
from robustlab.attacks.spsa import SPSA
from robustlab.attacks.square import Square, bump, p_schedule
from robustlab.errors import UserError
from robustlab.models import create_model


def tiny_model():
    torch.manual_seed(0)
    return create_model("small_cnn", 10, 1, 28, width=4, embedding_dim=16).eval()


def tiny_batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def l2(a, b):
    return (a - b).flatten(1).norm(dim=1)


# ----------------------------------------------------------------------------------------- CW-L2


def test_cw_objective_hand_values():
    z = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.0, 5.0, 1.0, 2.0]])
    x = torch.zeros(2, 1, 1, 2)
    x_adv = torch.tensor([[[[0.3, 0.4]]], [[[0.0, 1.0]]]])  # squared L2: 0.25 and 1
    y, c = torch.tensor([0, 0]), torch.tensor([0.5, 2.0])
    obj, dist, f = cw_objective(x_adv, x, z, y, None, c)
    # f6 untargeted = max(z_y - max_{j!=y} z_j, -kappa): 3 - 1 = 2; 0 - 5 = -5 -> clamped at -0 = 0
    assert dist.tolist() == pytest.approx([0.25, 1.0])
    assert f.tolist() == pytest.approx([2.0, 0.0])
    assert obj.tolist() == pytest.approx([0.25 + 0.5 * 2.0, 1.0 + 2.0 * 0.0])
    _, _, f = cw_objective(x_adv, x, z, y, None, c, kappa=1.0)
    assert f.tolist() == pytest.approx([2.0, -1.0])  # confidence: pays until the margin is kappa
    t = torch.tensor([2, 3])  # targeted: max(max_{j!=t} z_j - z_t, -kappa) = 3 - 0.5, 5 - 2
    _, _, f = cw_objective(x_adv, x, z, y, t, c)
    assert f.tolist() == pytest.approx([2.5, 3.0])


def test_cw_l2_minimal_distortion_beats_pgd_l2_radius(trained_fmnist):
    model, x, y = trained_fmnist
    x, y = x[:64], y[:64]
    # Shortened schedule (50 Adam steps x 5 constants from c = 1, lr 0.05) to keep the test fast.
    cw = ATTACKS.build("cw_l2", steps=50, search_steps=5, initial_const=1.0, lr=0.05)
    x_adv = cw(model, x, y)
    wrong, dist = predict(model, x_adv) != y, l2(x_adv, x)
    assert wrong.float().mean().item() >= 0.99
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    clean_wrong = predict(model, x) != y
    assert clean_wrong.any() and (dist[clean_wrong] < 1e-3).all()  # already adversarial: ~no change
    radii = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    fooled = [(predict(model, PGD(Threat("l2", r), steps=10)(model, x, y)) != y).float().mean().item()
              for r in radii]
    needed = next(r for r, f in zip(radii, fooled) if f >= 0.99)  # PGD-L2's radius for 99%
    assert dist[wrong].mean().item() < needed, (dist.mean().item(), list(zip(radii, fooled)))
    assert dist[wrong].median().item() < needed / 2


def test_cw_constant_grows_until_success(trained_fmnist):
    model, x, y = trained_fmnist
    # Images the model classifies with a logit margin >= 2: Adam normalises the gradient's scale,
    # so at c = 1e-4 it still walks towards the boundary until the distortion term dominates, and
    # an image near it is crossed (this machine's fixture has one of margin 0.48, crossed at L2 0.42).
    with torch.no_grad():
        top = model(x).topk(2, 1).values
    keep = ((predict(model, x) == y) & (top[:, 0] - top[:, 1] >= 2)).nonzero().flatten()[:8]
    x, y = x[keep], y[keep]
    # c = 1e-4 alone cannot outweigh the distortion: nothing found, the inputs come back unchanged.
    weak = CWL2(steps=50, search_steps=1, initial_const=1e-4, lr=0.05)(model, x, y)
    assert torch.equal(weak, x)
    # x10 per failed search step reaches c = 10 by the sixth: every sample is then adversarial.
    strong = CWL2(steps=50, search_steps=6, initial_const=1e-4, lr=0.05)(model, x, y)
    assert (predict(model, strong) != y).all()


def test_cw_eps_is_ignored_unless_bound(trained_fmnist):
    model, x, y = trained_fmnist
    x, y = x[:8], y[:8]
    settings = dict(steps=20, search_steps=2, initial_const=1.0, lr=0.05)
    free = ATTACKS.build("cw_l2", eps=0.05, norm="l2", **settings)(model, x, y)
    assert torch.equal(free, ATTACKS.build("cw_l2", eps=3.0, norm="l2", **settings)(model, x, y))
    bounded = ATTACKS.build("cw_l2", eps=0.05, norm="l2", bound=True, **settings)(model, x, y)
    assert (l2(free, x) > 0.05).any()
    assert (l2(bounded, x) <= 0.05 + 1e-6).all()
    assert bounded.min() >= 0 and bounded.max() <= 1


# ------------------------------------------------------------------------------------------ JSMA


@pytest.mark.parametrize("increase", [True, False])
def test_jsma_pair_saliency_matches_brute_force(increase):
    g = torch.Generator().manual_seed(3)
    jt, jo = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    domain = torch.rand(5, 6, generator=g) > 0.2
    domain[4] = False
    domain[4, 2] = True  # one feature left: no pair
    p, q, valid = pair_saliency(jt, jo, domain, increase)
    for b in range(5):
        best, arg = -math.inf, None
        for i in range(6):
            for j in range(6):
                a, be = jt[b, i] + jt[b, j], jo[b, i] + jo[b, j]
                ok = (a > 0 and be < 0) if increase else (a < 0 and be > 0)
                if i != j and domain[b, i] and domain[b, j] and ok and -a * be > best:
                    best, arg = -a * be, {i, j}
        assert bool(valid[b]) == (arg is not None)
        if arg is not None:
            assert {int(p[b]), int(q[b])} == arg


def test_jsma_reaches_targets_changing_few_pixels(trained_fmnist):
    model, x, y = trained_fmnist
    x, y = x[:32], y[:32]
    gamma = 0.145  # Papernot et al.'s MNIST setting (Sec. IV-B)
    attack = ATTACKS.build("jsma", gamma=gamma)
    x_adv = attack(model, x, y)
    with torch.no_grad():
        target = TARGETS["random"](model(x), y, sample_seeds(x, attack.seed, "target"))
    assert (predict(model, x_adv) == target).float().mean().item() >= 0.85
    changed = (x_adv != x).flatten(1)
    assert (changed.sum(1) <= gamma * x[0].numel()).all()
    assert (changed.sum(1) % 2 == 0).all()  # pixels change in pairs
    assert (x_adv.flatten(1)[changed] == 1.0).all()  # theta = +1: every changed pixel saturates
    assert torch.equal(attack(model, x[:4], y[:4], target[:4]), x_adv[:4])  # the default target rule


def test_jsma_decreasing_and_ignored_eps():
    model = tiny_model()
    x, y = tiny_batch()
    target = (predict(model, x) + 1) % 10  # not yet reached: the attack must work
    target = torch.where(target == y, (target + 1) % 10, target)
    down = JSMA(theta=-1.0, gamma=0.05)(model, x, y, target)
    moved = down != x
    assert moved.any() and (down[moved] == 0).all()  # theta = -1 sets pixels to 0
    assert (moved.flatten(1).sum(1) <= 0.05 * 784).all()
    a = ATTACKS.build("jsma", eps=0.1, gamma=0.05)(model, x, y)
    assert torch.equal(a, ATTACKS.build("jsma", eps=0.5, norm="l2", gamma=0.05)(model, x, y))


# --------------------------------------------------------------------------------- SPSA, Square


def test_spsa_estimate_matches_the_gradient_of_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x, y = torch.rand(2, 1, 3, 4), torch.tensor([0, 2])
    spsa = SPSA(Threat("linf", 0.1), samples=4000)
    loss = lambda z, yy, t=None: cw_margin(z, yy, t, kappa=math.inf)  # noqa: E731
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    with torch.no_grad():
        est = spsa.gradient(lin, loss, x, y, None, gens)
    xg = x.clone().requires_grad_(True)
    (true,) = torch.autograd.grad(loss(lin(xg), y).sum(), xg)
    cos = nn.functional.cosine_similarity(est.flatten(1), true.flatten(1))
    assert (cos > 0.95).all(), cos


@pytest.mark.parametrize("name, norm, eps", [("spsa", "linf", 0.1), ("square", "linf", 0.1),
                                             ("square", "l2", 1.0)])
def test_gradient_free_attacks_never_use_autograd(name, norm, eps, monkeypatch):
    model = tiny_model()
    for p in model.parameters():
        p.requires_grad_(True)
    grad_modes = []
    model.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))

    def no_autograd(*args, **kwargs):
        raise AssertionError("a gradient-free attack called torch.autograd.grad")

    monkeypatch.setattr(torch.autograd, "grad", no_autograd)
    x, y = tiny_batch()
    target = torch.where((y + 3) % 10 == 7, (y + 4) % 10, (y + 3) % 10)  # 7: the tiny model's guess
    attack = ATTACKS.build(name, eps=eps, norm=norm, steps=5 if name == "spsa" else 50)
    x_adv = attack(model, x, y, target)
    with torch.no_grad():
        assert torch.equal(attack(model, x, y, target), x_adv)  # works inside a caller's no_grad
    assert len(grad_modes) > 4 and not any(grad_modes)  # the loop ran, every forward without autograd
    assert all(p.grad is None for p in model.parameters())
    assert (Threat(norm, eps).norm_of(x_adv - x) <= eps + 1e-6).all()


@pytest.mark.parametrize("name, norm, eps, n, settings", [
    ("spsa", "linf", 0.1, 30, dict(steps=30, samples=32)),
    ("square", "linf", 0.1, 100, dict(steps=200)),
    ("square", "l2", 1.5, 50, dict(steps=200)),
])
def test_gradient_free_attacks_reduce_accuracy(trained_fmnist, name, norm, eps, n, settings):
    model, x, y = trained_fmnist
    x, y = x[:n], y[:n]
    x_adv = ATTACKS.build(name, eps=eps, norm=norm, **settings)(model, x, y)
    clean = (predict(model, x) == y).float().mean().item()
    robust = (predict(model, x_adv) == y).float().mean().item()
    assert robust <= clean - 0.2, (clean, robust)
    assert (Threat(norm, eps).norm_of(x_adv - x) <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_results_do_not_depend_on_the_batch(trained_fmnist):
    model, x, y = trained_fmnist
    x, y = x[:8], y[:8]
    for name, settings in [("cw_l2", dict(steps=30, search_steps=3, initial_const=1.0, lr=0.05)),
                           ("jsma", dict(gamma=0.05)), ("spsa", dict(eps=0.1, steps=5, samples=16)),
                           ("square", dict(eps=0.1, steps=100)),
                           ("square", dict(eps=1.0, norm="l2", steps=100))]:
        attack = ATTACKS.build(name, **settings)
        whole = attack(model, x, y)
        parts = torch.cat([attack(model, x[:3], y[:3]), attack(model, x[3:], y[3:])])
        same = sum(torch.allclose(w, p, atol=1e-5) for w, p in zip(whole, parts))
        # Batched convolutions round differently for different batch sizes (and thread counts);
        # a discrete choice (Square's accept/reject) can amplify that for an odd sample.
        assert same >= len(x) - 1, (name, same)


def test_square_starts_with_stripes_and_updates_only_robust_samples(trained_fmnist):
    model, x, y = trained_fmnist
    x, y = x[:32], y[:32]
    start = Square(Threat("linf", 0.1), steps=1)(model, x, y)  # the initialisation only
    gray = torch.full((2, 1, 28, 28), 0.5)
    stripes = Square(Threat("linf", 0.1), steps=1)(model, gray, torch.tensor([0, 1])) - gray
    assert torch.allclose(stripes.abs(), torch.full_like(stripes, 0.1))
    assert torch.equal(stripes, stripes[:, :, :1].expand_as(stripes))  # one sign per column
    fooled_at_start = predict(model, start) != y
    assert fooled_at_start.any() and (~fooled_at_start).any()
    queried = []
    hook = model.register_forward_hook(lambda m, inp, out: queried.append(len(inp[0])))
    try:  # CE keeps rising past the decision boundary, so a fooled sample queried again would move
        done = Square(Threat("linf", 0.1), steps=100, loss="ce")(model, x, y)
    finally:
        hook.remove()
    assert queried[0] == len(x) and queried[1] == int((~fooled_at_start).sum())
    assert queried[1:] == sorted(queried[1:], reverse=True)  # the robust set only shrinks
    assert torch.equal(done[fooled_at_start], start[fooled_at_start])  # never queried again
    assert not torch.equal(done[~fooled_at_start], start[~fooled_at_start])


def test_square_schedule_and_bump_hand_values():
    # p halves at iterations 10, 50, 200, ... of 10,000, rescaled to the query budget
    assert p_schedule(0.8, 0, 1000) == 0.8 and p_schedule(0.8, 1, 1000) == 0.8
    assert p_schedule(0.8, 2, 1000) == 0.4 and p_schedule(0.8, 100, 1000) == 0.8 / 16
    assert p_schedule(0.8, 850, 1000) == 0.8 / 512
    b = bump(3)
    # rows: [1/4, 1 + 1/4, 1/4] on top; the 2 x 3 bottom block peaks at its centre (1, 1), negated
    top = torch.tensor([0.25, 1.25, 0.25]) / math.sqrt(0.25**2 * 2 + 1.25**2)
    bottom = -torch.tensor([[0.25, 0.25, 0.25], [0.25, 1.25, 0.25]]) / math.sqrt(0.25**2 * 5 + 1.25**2)
    expected = torch.cat([top[None], bottom])
    assert torch.allclose(b, expected / expected.norm())
    assert b.norm().item() == pytest.approx(1.0)


@pytest.mark.parametrize("make, match", [
    (lambda: ATTACKS.build("cw_l2", norm="linf"), "does not support norm='linf'"),
    (lambda: ATTACKS.build("cw_l2", bound=True), "bound=True needs eps"),
    (lambda: ATTACKS.build("cw_l2", confidence=3), "unknown parameter\\(s\\) confidence"),
    (lambda: ATTACKS.build("cw_l2", search_steps=0), "search_steps=0 is out of range"),
    (lambda: ATTACKS.build("cw_l2", kappa=-1), "kappa=-1 is out of range"),
    (lambda: ATTACKS.build("jsma", gamma=1.5), "gamma=1.5 is out of range"),
    (lambda: ATTACKS.build("jsma", theta=0), "theta=0 is out of range"),
    (lambda: ATTACKS.build("jsma", saliency_on="z"), "saliency_on='z' is out of range"),
    (lambda: ATTACKS.build("jsma", target=None), "target=None is out of range"),
    (lambda: ATTACKS.build("spsa"), "needs eps"),
    (lambda: ATTACKS.build("spsa", eps=0.1, samples=7), "samples=7 is out of range"),
    (lambda: ATTACKS.build("spsa", eps=0.1, threat=Threat()), "unknown parameter\\(s\\) threat"),
    (lambda: ATTACKS.build("square", eps=0.1, p_init=0), "p_init=0 is out of range"),
    (lambda: ATTACKS.build("square", eps=0.1, norm="l1"), "does not support norm='l1'"),
])
def test_bad_settings(make, match):
    with pytest.raises(UserError, match=match):
        make()
