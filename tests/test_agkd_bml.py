"""AGKD-BML (Wang et al. 2021): its terms against hand-computed values, the bidirectional
adversary's pairs, the frozen teacher, and the teacher stage of `robustlab train`."""

import pytest
import torch

from robustlab.config import load_config
from robustlab.data import ClassIndex, Split
from robustlab.defenses import (
    TERMS,
    AttackAdversary,
    BidirectionalAdversary,
    FrozenTeacher,
    Pairs,
    Step,
    build_objective,
)
from robustlab.defenses.adversaries import training_pgd
from robustlab.errors import UserError
from robustlab.experiment import train
from robustlab.models import Out, create_model

EPS = 0.1
TINY = ["data.name=synthetic", "data.options={train_size: 96, test_size: 32}", "data.batch_size=32",
        "model.options={width: 8, embedding_dim: 32}", "train.epochs=1", "train.monitor_images=0"]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=8, embedding_dim=32)


def split(n=60, seed=3):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def fixed_step(y, clean=None, adv=None, partner_adv=None, teacher_clean=None, teacher_partner=None):
    """A Step whose outputs are given (no model runs); `partner_adv` makes it a paired step."""
    y = torch.tensor(y)
    step = Step(torch.nn.Identity(), torch.zeros(len(y), 1), y, forward_all=lambda x: None)
    cache = {"clean": clean, "adv": adv, "partner_adv": partner_adv, "teacher_clean": teacher_clean,
             "teacher_partner": teacher_partner}
    step.__dict__.update({k: v for k, v in cache.items() if v is not None})
    step.__dict__["x_adv"] = torch.zeros(len(y), 1)
    if partner_adv is not None:
        step._pairs = Pairs(step.x_adv, step.x_adv, y, step.x_adv)
    return step


def emb(rows):
    return Out(None, t(rows), None)


def feats(maps):
    """Features whose channel mean is `maps`: two channels m - 1 and m + 1."""
    m = t(maps)[:, None]
    return Out(None, None, torch.cat([m - 1, m + 1], 1))


def test_bml_triplet_and_norm_hand_computed():
    # anchor a = (1, 0), positive p = (1, 1), negative n = (0, 1): d(a, p) = 1 - 1/sqrt2,
    # d(a, n) = 1; [d(a,p) - d(a,n) + 0.03]_+ = 0.03 - 1/sqrt2 < 0 -> 0. Second triplet:
    # a = (1, 0), p = (0, 2), n = (3, 0): [1 - 0 + 0.03]_+ = 1.03. Mean = 0.515 (AGKD-BML eq. 6).
    step = fixed_step([0, 1], clean=emb([[1, 1], [0, 2]]), adv=emb([[1, 0], [1, 0]]),
                      partner_adv=emb([[0, 1], [3, 0]]))
    assert TERMS.get("bml_triplet")(step, margin=0.03).item() == pytest.approx(0.515)
    # L_norm = mean(||a|| + ||p|| + ||n||) = ((1 + sqrt2 + 1) + (1 + 2 + 3)) / 2 (eq. 7)
    assert TERMS.get("bml_norm")(step).item() == pytest.approx((2 + 2 ** 0.5 + 6) / 2)


def test_attention_kd_is_l1_between_channel_means_over_both_pairs():
    # forward pair: teacher map [[1, 2], [3, 4]] vs student [[0, 2], [3, 6]]: mean |diff| = 3/4
    teacher = feats([[[1, 2], [3, 4]]])
    student = feats([[[0, 2], [3, 6]]])
    step = fixed_step([0], teacher_clean=teacher, adv=student)
    assert TERMS.get("attention_kd")(step).item() == pytest.approx(0.75)
    # backward pair adds |[[1, 1], [1, 1]] - [[1, 1], [1, 5]]| mean = 1 (eq. 8)
    step = fixed_step([0], teacher_clean=teacher, adv=student,
                      teacher_partner=feats([[[1, 1], [1, 1]]]), partner_adv=feats([[[1, 1], [1, 5]]]))
    assert TERMS.get("attention_kd")(step).item() == pytest.approx(1.75)
    # normalised maps: sum-normalising both gives |[.1,.2,.3,.4] - [0, 2/11, 3/11, 6/11]| mean
    step = fixed_step([0], teacher_clean=teacher, adv=student)
    expected = (0.1 + abs(0.2 - 2 / 11) + abs(0.3 - 3 / 11) + abs(0.4 - 6 / 11)) / 4
    assert TERMS.get("attention_kd")(step, normalization="sum").item() == pytest.approx(expected)


def test_bidirectional_pairs_target_the_most_confusing_class_and_start_from_its_samples():
    data = split()
    model = tiny_model().eval()
    adversary = BidirectionalAdversary(AttackAdversary(training_pgd(EPS, 2)), ClassIndex(data))
    x, y = data.images[:20].float() / 255, data.labels[:20]
    pairs = adversary(model, x, y)
    with torch.no_grad():
        logits = model(x)
    expected = logits.masked_fill(torch.nn.functional.one_hot(y, 10).bool(), -float("inf")).argmax(1)
    assert torch.equal(pairs.partner_y, expected)  # eq. 5
    assert (pairs.partner_y != y).all()  # never the true label
    # each partner is a clean training image of class y_mc
    pixels = (pairs.partner * 255).round().to(torch.uint8)
    for image, cls in zip(pixels, pairs.partner_y):
        match = (data.images == image).flatten(1).all(1)
        assert match.any() and (data.labels[match] == cls).all()
    # both examples stay in the eps-ball of their clean images
    assert (pairs.x_adv - x).abs().max() <= EPS + 1e-6
    assert (pairs.partner_adv - pairs.partner).abs().max() <= EPS + 1e-6
    assert not model.training


def test_bidirectional_adversary_without_a_class_index_says_so():
    adversary = BidirectionalAdversary(AttackAdversary(training_pgd(EPS, 1)))
    with pytest.raises(UserError, match="class index"):
        adversary(tiny_model(), torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    step = Step(tiny_model(), torch.rand(2, 1, 28, 28), torch.tensor([0, 1]),
                adversary=lambda m, x, y: x)
    with pytest.raises(UserError, match="bidirectional adversary"):
        _ = step.partner_adv


def test_teacher_stays_frozen_and_gradients_reach_the_student_through_attention_only():
    data = split()
    student = tiny_model(0).train()
    teacher = FrozenTeacher(tiny_model(1))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    objective = build_objective("agkd_bml", eps=EPS)
    objective.adversary.class_index = ClassIndex(data)
    kd_only = build_objective("agkd", eps=EPS, terms={"adv_ce": 0})
    kd_only.adversary.class_index = ClassIndex(data)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    x, y = data.images[:16].float() / 255, data.labels[:16]
    for _ in range(3):
        teacher.train()  # as a trainer would call on everything: the teacher must not follow
        loss = objective(Step(student, x, y, adversary=objective.adversary, teacher=teacher))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not teacher.training and not teacher.model.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    # attention_kd alone: the conv body learns from it, the head cannot (the maps precede it)
    optimizer.zero_grad()
    kd_only(Step(student, x, y, adversary=kd_only.adversary, teacher=teacher))["loss"].backward()
    assert all(p.grad.abs().sum() > 0 for n, p in student.named_parameters()
               if n.startswith("body.") and n.endswith("weight"))
    assert student.classifier.weight.grad is None or student.classifier.weight.grad.abs().sum() == 0


def test_train_builds_the_teacher_stage_once_and_reuses_it(tmp_path):
    logs = []
    cfg = load_config("configs/agkd_bml_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=a"])
    run = train(cfg, log=logs.append)
    assert run.finished
    assert any(line.startswith("training the teacher _teacher_synthetic_small_cnn_") for line in logs)
    stages = list(tmp_path.glob("_teacher_*"))
    assert len(stages) == 1 and (stages[0] / "checkpoints" / "last.pt").is_file()
    assert load_config(stages[0] / "config.yaml").defense.recipe == "standard"
    record = run.history[-1]
    assert {"train_attention_kd", "train_bml_triplet", "train_bml_norm", "train_adv_ce"} <= set(record)
    logs.clear()
    cfg = load_config("configs/agkd_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=b"])
    train(cfg, log=logs.append)
    assert not any("training the teacher" in line for line in logs)  # same settings: reused
    assert any(line.startswith("teacher: small_cnn from ") and "_teacher_synthetic" in line for line in logs)
    # resumed with more epochs (another stage name), the run keeps its recorded teacher
    recorded = (tmp_path / "b" / "teacher.json").read_text()
    logs.clear()
    more = load_config("configs/agkd_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=b", "train.epochs=2"])
    train(more, resume=True, log=logs.append)
    assert not any("training the teacher" in line for line in logs)
    assert (tmp_path / "b" / "teacher.json").read_text() == recorded
    # a named teacher: the first run's model; one of another class count is refused
    cfg = load_config("configs/agkd_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=c",
                                                    f"defense.teacher={tmp_path / 'a'}"])
    logs.clear()
    train(cfg, log=logs.append)
    assert any(str(tmp_path / "a" / "checkpoints" / "last.pt") in line for line in logs)
    five = "data.options={train_size: 96, test_size: 32, num_classes: 5}"
    other = load_config("configs/standard_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=five", five])
    train(other, log=logs.append)
    cfg = load_config("configs/agkd_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=d",
                                                    f"defense.teacher={tmp_path / 'five'}"])
    with pytest.raises(UserError, match="5 classes"):
        train(cfg, log=logs.append)


def test_a_teacher_for_a_recipe_without_teacher_terms_is_an_error(tmp_path):
    cfg = load_config("configs/madry_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "defense.teacher=x"])
    with pytest.raises(UserError, match="no term of recipe 'madry' reads a teacher"):
        train(cfg, log=lambda _: None)
