"""Every loss term against a value computed by hand on a small tensor (the equation in each
docstring), plus the pieces they share."""

import math

import pytest
import torch
from torch import nn

from robustlab.attacks.losses import kl
from robustlab.defenses import TERMS, Step, angular_distance, make_terms
from robustlab.errors import UserError
from robustlab.models import Out

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def out(logits=None, embedding=None) -> Out:
    logits = torch.tensor(logits, dtype=torch.float64) if logits is not None else None
    embedding = torch.tensor(embedding, dtype=torch.float64) if embedding is not None else None
    return Out(logits, embedding, None)


def fixed_step(y, clean=None, adv=None, mixed=None, k=None) -> Step:
    """A Step whose outputs are given: the cache is filled, so no model ever runs."""
    y = torch.tensor(y)
    step = Step(nn.Identity(), torch.zeros(len(y), 1), y, forward_all=lambda x: None)
    for name, value in (("clean", clean), ("adv", adv), ("mixed", mixed)):
        if value is not None:
            step.__dict__[name] = value
    step.__dict__["x_adv"] = torch.zeros(k if k is not None else len(y), 1)
    return step


def term(name, step, **params):
    return TERMS.get(name)(step, **params).item()


def test_clean_ce_and_label_smoothing():
    # p = softmax([ln 2, 0, 0]) = [1/2, 1/4, 1/4], y = 0: CE = ln 2
    step = fixed_step([0], clean=out([[LN2, 0.0, 0.0]]))
    assert term("clean_ce", step) == pytest.approx(LN2, abs=1e-9)
    # s = 0.3: q = [0.8, 0.1, 0.1]; CE = 0.8 ln 2 + 0.2 ln 4 (Szegedy et al. 2016)
    assert term("clean_ce", step, label_smoothing=0.3) == pytest.approx(0.8 * LN2 + 0.2 * LN4, abs=1e-9)


def test_adv_ce_reads_adversarial_outputs_of_the_first_k():
    # Madry eq. 2.1 outer loss on x_adv: only the k = 1 adversarial image and its label (y = 1)
    step = fixed_step([1, 0], clean=out([[9.0, 0, 0], [9.0, 0, 0]]), adv=out([[LN2, 0.0, 0.0]]), k=1)
    assert term("adv_ce", step) == pytest.approx(LN4, abs=1e-9)


def test_kurakin_ce_weights_adversarial_rows_by_lambda():
    # rows: CE = ln 2 (adversarial, k = 1), ln 3, ln 4; (0.3 ln2 + ln3 + ln4) / ((3 - 1) + 0.3)
    mixed = out([[LN2, 0, 0], [0, 0, 0], [LN2, 0, 0]])
    step = fixed_step([0, 1, 1], mixed=mixed, k=1)
    assert term("kurakin_ce", step, lam=0.3) == pytest.approx((0.3 * LN2 + LN3 + LN4) / 2.3, abs=1e-9)
    # lam = 1 and every image adversarial is plain CE
    step = fixed_step([0, 1, 1], mixed=mixed, k=3)
    assert term("kurakin_ce", step, lam=1.0) == pytest.approx((LN2 + LN3 + LN4) / 3, abs=1e-9)


# p = [1/2, 1/4, 1/4], q = [1/3, 1/3, 1/3]: KL(p || q) = 1/2 ln(3/2) + 1/2 ln(3/4)
KL_PQ = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)


def test_trades_kl():
    step = fixed_step([0], clean=out([[LN2, 0, 0]]), adv=out([[0.0, 0, 0]]))
    assert term("trades_kl", step) == pytest.approx(KL_PQ, abs=1e-9)


def test_attack_kl_loss_matches_trades_term():
    reference = torch.tensor([[LN2, 0, 0]], dtype=torch.float64).log_softmax(1)
    value = kl(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([0]), reference=reference)
    assert value.item() == pytest.approx(KL_PQ, abs=1e-9)


def test_mart_bce():
    # -log p_y(x') - log(1.0001 - max_{k != y} p_k(x') + 1e-12) = ln 2 - ln(0.7501), the authors'
    step = fixed_step([0], adv=out([[LN2, 0, 0]]))
    assert term("mart_bce", step) == pytest.approx(LN2 - math.log(0.7501 + 1e-12), abs=1e-9)


def test_mart_margin_is_capped_as_the_authors_code_when_a_wrong_class_takes_all_the_mass():
    # p_y(x') ~ 0, max wrong = 1: the margin term is -log(1e-4) = 9.21 (1 - p would give 27.6)
    value = term("mart_bce", fixed_step([0], adv=out([[-40.0, 40.0, -40.0]])))
    assert value == pytest.approx(80.0 - math.log(1e-4 + 1e-12), rel=1e-6)
    # max wrong p = 0.9999: d/dz_1 = p (CE) + p (1 - p) / (1.0001 - p) = 0.9999 + 0.49995 (with
    # 1 - p the margin's share would be 0.9999: the 6% gradient gap the audit measured on a batch)
    logits = torch.tensor([[0.0, math.log(19998.0), 0.0]], dtype=torch.float64, requires_grad=True)
    step = fixed_step([0], adv=Out(logits, None, None))
    (grad,) = torch.autograd.grad(TERMS.get("mart_bce")(step), logits)
    p = 19998.0 / 20000.0
    assert grad[0, 1].item() == pytest.approx(p + p * (1 - p) / (1.0001 - p + 1e-12), rel=1e-6)


def test_mart_kl_weighted_by_clean_misclassification():
    # KL(p(x) || p(x')) (1 - p_y(x)); with y = 0, p_y(x) = 1/2; with y = 1, p_y(x) = 1/4
    # (1.0000001 - p_y(x), the authors' weight)
    step = fixed_step([0], clean=out([[LN2, 0, 0]]), adv=out([[0.0, 0, 0]]))
    assert term("mart_kl", step) == pytest.approx(KL_PQ * (0.5 + 1e-7), abs=1e-12)
    step = fixed_step([1], clean=out([[LN2, 0, 0]]), adv=out([[0.0, 0, 0]]))
    assert term("mart_kl", step) == pytest.approx(KL_PQ * (0.75 + 1e-7), abs=1e-12)


def test_logit_pairing_squared_and_plain():
    # z(x) - z(x') = [1, 0, -2]: ||.||^2 = 5 (Kannan et al.), ||.|| = sqrt 5 (ATAT eq. 6)
    step = fixed_step([0], clean=out([[1.0, 2, 3]]), adv=out([[0.0, 2, 5]]))
    assert term("logit_pairing", step) == pytest.approx(5.0, abs=1e-9)
    assert term("logit_pairing", step, squared=False) == pytest.approx(math.sqrt(5), abs=1e-9)


def test_angular_distance():
    a = torch.tensor([[1.0, 0], [1.0, 0], [2.0, 0]])
    b = torch.tensor([[1.0, 1], [-1.0, 0], [0.0, 3]])
    expected = [1 - 1 / math.sqrt(2), 0.0, 1.0]  # |a.b| makes opposite vectors distance 0
    assert angular_distance(a, b).tolist() == pytest.approx(expected, abs=1e-6)


def metric_step() -> Step:
    # clean c0 = [1, 0] (class 0), c1 = [0, 1] (class 1), c2 = [1, 0.1] (class 0);
    # adversarial anchors a0 = [1, 1] (of c0), a1 = [1, 2] (of c1)
    clean = out([[0, 0], [0, 0], [0, 0]], [[1.0, 0], [0, 1], [1, 0.1]])
    adv = out([[0, 0], [0, 0]], [[1.0, 1], [1, 2]])
    return fixed_step([0, 1, 0], clean=clean, adv=adv, k=2)


def test_sml_triplet_uses_the_hardest_negative():
    # a0: positive c0, only negative c1: d(a0,c0) = d(a0,c1) = 1 - 1/sqrt2 -> [0 + m]_+ = 0.5
    # a1: positive c1, negatives c0 (d 0.5528) and c2 (d 0.4660): the nearer, c2, is taken:
    #     d(a1,c1) = 1 - 2/sqrt5; [0.105573 - 0.466009 + 0.5]_+ = 0.139564
    d_a1_c1 = 1 - 2 / math.sqrt(5)
    d_a1_c2 = 1 - 1.2 / (math.sqrt(5) * math.sqrt(1.01))
    expected = (0.5 + (d_a1_c1 - d_a1_c2 + 0.5)) / 2
    assert term("sml_triplet", metric_step(), margin=0.5) == pytest.approx(expected, abs=1e-9)


def test_embedding_norm_of_the_triplets():
    # (|a0| + |c0| + |c1|) and (|a1| + |c1| + |c2|), averaged
    expected = ((math.sqrt(2) + 1 + 1) + (math.sqrt(5) + 1 + math.sqrt(1.01))) / 2
    assert term("embedding_norm", metric_step()) == pytest.approx(expected, abs=1e-9)


def test_metric_terms_in_a_one_class_batch_are_zero_with_a_graph():
    emb = torch.tensor([[1.0, 0], [0, 1]], requires_grad=True)
    step = fixed_step([0, 0], clean=Out(None, emb, None), adv=Out(None, emb * 2, None))
    value = TERMS.get("sml_triplet")(step)
    assert value.item() == 0 and value.requires_grad


def test_step_memo_computes_once():
    step = fixed_step([0])
    calls = []
    assert step.memo("x", lambda: calls.append(1) or 7) == 7
    assert step.memo("x", lambda: calls.append(1) or 8) == 7
    assert calls == [1]


def test_make_terms_errors_name_the_problem():
    with pytest.raises(UserError, match="unknown loss term 'adv_cee'"):
        make_terms({"adv_cee": 1.0})
    with pytest.raises(UserError, match="unknown option.*squar.*valid: squared"):
        make_terms({"logit_pairing": {"weight": 1.0, "squar": True}})
    with pytest.raises(UserError, match="weight of term 'adv_ce' must be a number"):
        make_terms({"adv_ce": "high"})
    terms = make_terms({"logit_pairing": {"weight": 0.25, "squared": False}, "adv_ce": 2})
    assert {name: w for name, (_, w) in terms.items()} == {"logit_pairing": 0.25, "adv_ce": 2.0}


def test_every_term_cites_its_paper_and_declares_its_needs():
    for name in TERMS.names():
        info = TERMS.info[name]
        assert info.get("paper"), name
        known = {"clean", "adv", "mixed", "augmented", "teacher", "partner", "siamese"}
        assert set(info.get("needs", ())) <= known, name


def test_mart_attacks_from_the_authors_gaussian_start_as_trades_does():
    """The authors' mart.py starts at x + 0.001 N(0, 1), not uniformly in the ball."""
    from robustlab.defenses import build_objective

    for recipe in ("mart", "trades"):
        attack = build_objective(recipe, eps=0.1).adversary.attack
        assert attack.start_std == 0.001 and attack.random_start, recipe
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    one_tiny_step = build_objective("mart", eps=0.1, steps=1, step_size=1e-9).adversary.attack
    start = one_tiny_step(model, x, y)  # the start, moved by 1e-9
    assert (start - x).abs().mean().item() == pytest.approx(0.001 * math.sqrt(2 / math.pi), rel=0.05)
