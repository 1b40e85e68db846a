"""Attacks against a small standard-trained Fashion-MNIST model (issue 3's sanity checks)."""

import pytest
import torch

from robustlab.attacks import ATTACKS, PGD, TARGETS, Threat
from robustlab.attacks.base import sample_seeds


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_iterative_is_stronger_than_one_step(trained_fmnist):
    model, x, y = trained_fmnist
    clean = accuracy(model, x, y)
    fgsm = accuracy(model, ATTACKS.build("fgsm", eps=0.1)(model, x, y), y)
    pgd = accuracy(model, ATTACKS.build("pgd", eps=0.1)(model, x, y), y)
    assert clean > 0.8
    assert pgd <= fgsm < clean


def test_accuracy_falls_with_eps_to_chance(trained_fmnist):
    model, x, y = trained_fmnist
    grid = [0.0, 0.02, 0.05, 0.1, 0.2, 0.5]
    accs = [accuracy(model, ATTACKS.build("pgd", eps=e, steps=20)(model, x, y), y) for e in grid]
    assert all(b <= a + 1 / len(y) for a, b in zip(accs, accs[1:])), accs  # one sample of slack
    assert accs[-1] <= 0.1 + 0.02, accs


def test_targeted_attacks_hit_their_target(trained_fmnist):
    model, x, y = trained_fmnist
    given = (y + 1 + torch.arange(len(y)) % 9) % 10
    x_adv = PGD(Threat("linf", 0.3), steps=40, step_size=0.02)(model, x, y, given)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == given).float().mean().item() >= 0.9
        clean_logits = model(x)
    for rule in ("least_likely", "most_confusing", "random"):
        attack = ATTACKS.build("pgd", eps=0.3, steps=40, target=rule)
        with torch.no_grad():
            pred = model(attack(model, x, y)).argmax(1)
        if rule == "random":
            target = TARGETS[rule](clean_logits, y, sample_seeds(x, attack.seed, "target"))
        else:
            target = TARGETS[rule](clean_logits, y, ())
        assert (pred == target).float().mean().item() >= 0.9, rule


def test_cascade_iter_ll_retargets_every_step(trained_fmnist):
    """The Cascade paper (Sec. 5) re-picks the least-likely class at each iteration; with the
    target fixed on the clean image (Kurakin's original) the attack is much stronger here."""
    model, x, y = trained_fmnist
    wrong = {}
    for retarget in (True, False):
        with torch.no_grad():
            pred = model(ATTACKS.build("iter_ll", eps=0.3, retarget=retarget)(model, x, y)).argmax(1)
        wrong[retarget] = (pred != y).float().mean().item()
    assert wrong[False] >= 0.95
    assert wrong[True] < wrong[False]


def test_worst_case_runs_each_attack_on_still_robust_points(trained_fmnist):
    from robustlab.attacks import worst_case

    model, x, y = trained_fmnist
    x, y = x[:200], y[:200]
    calls = []

    def counting(attack):
        def run(m, xs, ys, target=None):
            calls.append(len(ys))
            return attack(m, xs, ys)
        return run

    fgsm, pgd = ATTACKS.build("fgsm", eps=0.05), ATTACKS.build("pgd", eps=0.05, steps=10)
    result = worst_case(model, x, y, {"fgsm": counting(fgsm), "pgd": counting(pgd)})
    with torch.no_grad():
        clean_ok = model(x).argmax(1) == y
        fgsm_ok = model(fgsm(model, x, y)).argmax(1) == y
    assert calls[0] == int(clean_ok.sum())  # FGSM saw only the clean-correct points
    assert calls[1] == int((clean_ok & fgsm_ok).sum())  # PGD only what FGSM left
    assert result.robust_after["pgd"] <= result.robust_after["fgsm"] < clean_ok.float().mean()
    assert result.broken_by.count("clean") == int((~clean_ok).sum())
    assert result.broken_by.count("fgsm") == int((clean_ok & ~fgsm_ok).sum())
    broken = torch.tensor([b not in ("", "clean") for b in result.broken_by])
    with torch.no_grad():
        assert (model(result.x_adv[broken]).argmax(1) != y[broken]).all()
    assert result.accuracy == pytest.approx(result.robust_after["pgd"])
