"""ATAT and AAD: Grad-CAM terms against hand-computed values, the attention mask, double
backward into the student with a frozen teacher, and the A3 attack."""

import math

import pytest
import torch

from robustlab.attacks import ATTACKS
from robustlab.attention import mask_out
from robustlab.defenses import TERMS, FrozenTeacher, Step, build_objective
from robustlab.errors import UserError
from robustlab.models import Out, create_model

EPS = 0.1


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=8, embedding_dim=32)


def batch(n=8, seed=1):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)), torch.arange(n) % 10


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def fixed_step(y, *, clean=None, adv=None, memo=(), teacher_cam=None) -> Step:
    """A Step with given outputs and memoised Grad-CAMs: no model runs."""
    y = torch.tensor(y)
    step = Step(torch.nn.Identity(), torch.zeros(len(y), 1, 2, 2), y, forward_all=lambda x: None)
    step.__dict__["x_adv"] = torch.zeros(len(y), 1, 2, 2)
    for name, value in (("clean", clean), ("adv", adv), ("teacher_cam", teacher_cam)):
        if value is not None:
            step.__dict__[name] = value
    step._memo.update(dict(memo))
    return step


def logits(rows):
    return Out(t(rows), None, None)


def test_attention_transfer_hand_computed():
    # teacher [[3, 0], [0, 0]]; student on x_adv [[0, 0], [0, 4]]: ||.||_2 = 5; on x
    # [[3, 0], [0, 1]]: 1. ATAT eq. 5 = 6; with p = 1: 7 + 1 = 8.
    step = fixed_step([0], teacher_cam=t([[[3, 0], [0, 0]]]),
                      memo={"cam_adv": t([[[0, 0], [0, 4]]]), "cam_clean": t([[[3, 0], [0, 1]]])})
    assert TERMS.get("attention_transfer")(step).item() == pytest.approx(6.0)
    assert TERMS.get("attention_transfer")(step, p=1.0).item() == pytest.approx(8.0)


def test_mask_removes_exactly_the_area_above_the_mean():
    x = torch.ones(1, 2, 3, 3)
    maps = torch.tensor([[[1.0, 3.0, 0.0], [4.0, 0.0, 0.0], [2.0, 2.0, 0.0]]])  # mean 4/3
    area = torch.tensor([[0, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    masked = mask_out(x, maps)
    assert torch.equal(masked[0, :, area], torch.zeros(2, 4))  # every channel of the area is 0
    assert torch.equal(masked[0, :, ~area], torch.ones(2, 5))  # everything else untouched
    # a map of the feature size is resized to the image: a 2 x 2 map with one hot cell masks the
    # quarter of a 4 x 4 image around it
    small = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    masked = mask_out(torch.ones(1, 1, 4, 4), small)
    assert masked[0, 0, 0, 0] == 0 and masked[0, 0, 3, 3] == 1
    assert mask_out(torch.ones(1, 1, 3, 3), maps, kappa=3.5).eq(0).sum() == 1  # only the 4
    with pytest.raises(UserError, match="one map"):
        mask_out(torch.ones(2, 1, 3, 3), maps)


def test_attention_rectification_hand_computed():
    # softmax([0, 0]) = [.5, .5], softmax([ln 3, 0]) = [.75, .25]: ||diff||_2 = sqrt(2) / 4, on
    # both pairs; AAD eq. 8 = -(sqrt(2)/4 + sqrt(2)/4)
    ln3 = math.log(3)
    step = fixed_step([0], clean=logits([[0.0, 0.0]]), adv=logits([[0.0, ln3]]),
                      memo={"masked_None": (logits([[ln3, 0.0]]), logits([[0.0, 0.0]]))})
    assert TERMS.get("attention_rectification")(step).item() == pytest.approx(-math.sqrt(2) / 2)


def test_attention_preservation_is_the_l1_between_the_maps():
    # |[[1, 2], [0, 0]] - [[0, 2], [3, 0]]|_1 = 1 + 3 (AAD eq. 9)
    step = fixed_step([0], memo={"cam_clean": t([[[1, 2], [0, 0]]]), "cam_adv": t([[[0, 2], [3, 0]]])})
    assert TERMS.get("attention_preservation")(step).item() == pytest.approx(4.0)


def test_multilabel_soft_margin_and_its_swap_in_the_aad_recipes():
    # z = [0, 0], y = 0: mean over classes of -log sigmoid(0) and -log sigmoid(-0) = ln 2
    step = fixed_step([0], clean=logits([[0.0, 0.0]]), adv=logits([[2.0, 0.0]]))
    assert TERMS.get("clean_soft_margin")(step).item() == pytest.approx(math.log(2))
    # z = [2, 0]: (-log sigmoid(2) - log sigmoid(0)) / 2
    expected = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert TERMS.get("adv_soft_margin")(step).item() == pytest.approx(expected)
    objective = build_objective("aad_alp", eps=EPS, classification="soft_margin")
    assert set(objective.weights) == {"clean_soft_margin", "adv_soft_margin", "logit_pairing",
                                      "attention_rectification", "attention_preservation"}
    with pytest.raises(UserError, match="classification='bce'"):
        build_objective("aad_madry", eps=EPS, classification="bce")


@pytest.mark.parametrize("recipe,term", [("atat", "attention_transfer"),
                                         ("aad_madry", "attention_preservation"),
                                         ("aad_madry", "attention_rectification")])
def test_grad_cam_terms_reach_the_student_by_double_backward_and_leave_the_teacher(recipe, term):
    student = tiny_model(0).train()
    teacher = FrozenTeacher(tiny_model(1))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    base = build_objective(recipe, eps=EPS)
    objective = build_objective(recipe, eps=EPS, terms={name: 0 for name in base.terms if name != term}
                                | {term: 1.0})
    assert list(objective.terms) == [term]
    x, y = batch()
    step = Step(student, x, y, adversary=objective.adversary, teacher=teacher)
    objective(step)["loss"].backward()
    # the conv body gets a gradient through the maps (the term has no other path to it)
    for name, p in student.named_parameters():
        if name.startswith("body.") and name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training and student.training


@pytest.mark.parametrize("name", ["a3_step_ll", "a3_iter_ll", "a3_pgd"])
def test_a3_with_sigma_zero_is_its_base_attack_and_otherwise_moves_attention(name):
    model = tiny_model().eval()
    x, y = batch()
    base = {"a3_step_ll": "step_ll", "a3_iter_ll": "iter_ll", "a3_pgd": "pgd"}[name]
    plain = ATTACKS.build(base, eps=EPS)(model, x, y)
    assert torch.equal(ATTACKS.build(name, eps=EPS, attention=0.0)(model, x, y), plain)
    a3 = ATTACKS.build(name, eps=EPS)(model, x, y)
    assert not torch.equal(a3, plain)
    assert (a3 - x).abs().max() <= EPS + 1e-6 and a3.min() >= 0 and a3.max() <= 1
    assert all(p.grad is None and p.requires_grad for p in model.parameters()) and not model.training
    with pytest.raises(UserError, match="attention"):
        ATTACKS.build(name, eps=EPS, attention=-1.0)


def test_a3_needs_a_classifier():
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x, y = batch(2)
    with pytest.raises(UserError, match="A3"):
        ATTACKS.build("a3_pgd", eps=EPS)(plain, x, y)


def test_attention_transfer_sums_over_named_layers():
    # the top layer by name ("body", whose output is the feature map) gives the same value as the
    # default; listing it with another layer adds that layer's (positive) distance
    student, teacher = tiny_model(0).train(), FrozenTeacher(tiny_model(1))
    x, y = batch()
    objective = build_objective("atat", eps=EPS)

    def value(**params):
        step = Step(student, x, y, adversary=lambda m, x_, y_: (x_ + 0.05).clamp(0, 1), teacher=teacher)
        return TERMS.get("attention_transfer")(step, **params)

    default, by_name = value(), value(layers=["body"])
    assert by_name.item() == pytest.approx(default.item(), rel=1e-5)
    both = value(layers=["body", "body.5"])
    assert both.item() > default.item()
    both.backward()
    assert student.body[0].weight.grad.abs().sum() > 0
    assert objective.needs_teacher
