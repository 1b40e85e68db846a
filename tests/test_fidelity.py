"""The Fidelity issue: each defense as its paper (and its authors' code) specifies it.

BatchNorm statistics of AAD's masked forward, one concatenated train-mode forward, ATAT's
initialisation and weights, AGKD-BML's label smoothing over the wrong classes, and bit-identical
gradients and trainings (no order-dependent parallel accumulation).
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F

import robustlab.experiment as experiment
import robustlab.experiment.training as training
from robustlab.config import load_config
from robustlab.defenses import RECIPES, TERMS, FrozenTeacher, Step, build_objective
from robustlab.defenses.step import Pairs, Siamese
from robustlab.defenses.terms import smoothed_ce
from robustlab.errors import UserError
from robustlab.models import create_model


def tiny(seed=0, embedding_dim=32, width=4):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=width,
                        embedding_dim=embedding_dim)


def bn_buffers(model):
    return {name: b.clone() for name, b in model.named_buffers()
            if "running" in name or "num_batches" in name}


def fixed_adversary(delta=0.05):
    return lambda model, x, y: (x + delta * torch.sign(torch.sin(x * 50))).clamp(0, 1)


# ---- fault 1: AAD's masked images do not reach BatchNorm's running statistics -----------------

@pytest.mark.parametrize("recipe", ["aad_madry", "aad_alp"])
def test_an_aad_step_moves_bn_statistics_only_by_the_clean_and_adversarial_forwards(recipe):
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    objective = build_objective(recipe, eps=0.1)
    model = tiny().train()
    reference = copy.deepcopy(model)
    step = Step(model, x, y, adversary=fixed_adversary(), joint=objective.joint)
    objective(step)["loss"].backward()
    # the same forwards of x and x_adv without AAD's terms
    ref_step = Step(reference, x, y, adversary=fixed_adversary(), joint=objective.joint)
    for name in objective.image_sets:
        getattr(ref_step, name)
    moved, expected = bn_buffers(model), bn_buffers(reference)
    assert moved.keys() == expected.keys() and moved
    for name in moved:
        assert torch.equal(moved[name], expected[name]), name


# ---- fault 4: one concatenated train-mode forward ----------------------------------------------

class Counting(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.sizes = model, []

    def forward_all(self, x):
        self.sizes.append(len(x))
        return self.model.forward_all(x)


def test_joint_forward_is_one_call_and_gives_the_same_outputs_as_one_batch():
    model = tiny().train()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    counter = Counting(model)
    step = Step(model, x, y, forward_all=counter.forward_all, adversary=fixed_adversary(),
                joint=("clean", "adv"))
    clean, adv = step.clean, step.adv
    assert counter.sizes == [16]
    together = copy.deepcopy(model).forward_all(torch.cat([x, step.x_adv]))
    torch.testing.assert_close(clean.logits, together.logits[:8], rtol=0, atol=0)
    torch.testing.assert_close(adv.features, together.features[8:], rtol=0, atol=0)
    separate = Step(model, x, y, forward_all=counter.forward_all, adversary=fixed_adversary())
    separate.clean, separate.adv  # noqa: B018
    assert counter.sizes == [16, 8, 8]


def test_joint_forward_takes_the_bidirectional_partners_too():
    model = tiny().train()
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    counter = Counting(model)
    pairs = Pairs(x * 0.9, torch.rand(6, 1, 28, 28), (y + 1) % 10, torch.rand(6, 1, 28, 28))
    objective = build_objective("agkd_bml", eps=0.1)
    assert objective.joint == ("clean", "adv", "partner_adv")
    step = Step(model, x, y, forward_all=counter.forward_all, adversary=lambda m, a, b: pairs,
                joint=objective.joint)
    step.clean, step.adv, step.partner_adv  # noqa: B018
    assert counter.sizes == [18]


def test_recipes_say_which_forward_they_use_and_the_config_can_change_it():
    assert build_objective("alp", eps=0.1).joint == ("clean", "adv")
    assert build_objective("atat", eps=0.1).joint == ("clean", "adv")
    assert build_objective("trades", eps=0.1).joint == ()           # the TRADES authors' code
    assert build_objective("trades", eps=0.1, forward="joint").joint == ("clean", "adv")
    assert build_objective("alp", eps=0.1, forward="separate").joint == ()
    assert build_objective("madry", eps=0.1).joint == ()            # one image set: one forward
    with pytest.raises(UserError, match="defense.forward"):
        build_objective("alp", eps=0.1, forward="both")
    from robustlab.defenses.recipes import describe_recipes
    rows = {r["name"]: r["forward"] for r in describe_recipes()}
    assert rows["alp"] == "joint" and rows["mart"] == "separate" and rows["madry"] == "one forward"


# ---- fault 3: ATAT starts from its teacher, with the paper's weights --------------------------

TINY = ["data.name=synthetic", "data.options={train_size: 128, test_size: 64}", "data.batch_size=32",
        "model.options={width: 4, embedding_dim: 16}", "train.epochs=1", "train.monitor_images=0",
        "defense.eps=0.1"]


def test_atat_student_starts_from_the_teacher(tmp_path, monkeypatch):
    seen = {}
    original = training.fit

    def capture(model, objective, data, cfg, **kw):
        if kw["teacher"] is None:  # the teacher stage's own training
            return original(model, objective, data, cfg, **kw)
        seen["student"] = {k: v.clone() for k, v in model.state_dict().items()}
        seen["teacher"] = kw["teacher"].model.state_dict()
        seen["weights"] = objective.weights
        return original(model, objective, data, cfg, **kw)

    monkeypatch.setattr(training, "fit", capture)
    cfg = load_config("configs/atat_fmnist.yaml", [*TINY, f"out_dir={tmp_path}", "name=a"])
    assert cfg.defense.init_from_teacher
    experiment.train(cfg, log=lambda _: None)
    assert seen["student"].keys() == seen["teacher"].keys()
    assert all(torch.equal(seen["student"][k], seen["teacher"][k].cpu()) for k in seen["student"])
    assert seen["weights"]["attention_transfer"] == 1.0 and seen["weights"]["logit_pairing"] == 1.0
    with pytest.raises(UserError, match="init_from_teacher"):
        madry = load_config("configs/madry_fmnist.yaml",
                            [*TINY, f"out_dir={tmp_path}", "name=m", "defense.init_from_teacher=true"])
        experiment.train(madry, log=lambda _: None)


# ---- fault 5: label smoothing over the wrong classes only (AGKD-BML's code) ---------------------

def test_wrong_class_smoothing_hand_computed():
    logits, y = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])
    log_p = logits.log_softmax(1)[0]
    # s = 0.5, K = 3: q = (0.5, 0.25, 0.25) (torch's "all": (2/3, 1/6, 1/6))
    expected = -(0.5 * log_p[0] + 0.25 * log_p[1] + 0.25 * log_p[2])
    assert smoothed_ce(logits, y, 0.5, "wrong_classes").item() == pytest.approx(expected.item())
    torch_all = -(2 / 3 * log_p[0] + 1 / 6 * log_p[1] + 1 / 6 * log_p[2])
    assert smoothed_ce(logits, y, 0.5, "all").item() == pytest.approx(torch_all.item())
    plain = F.cross_entropy(logits, y).item()
    assert smoothed_ce(logits, y, 0.0, "wrong_classes").item() == pytest.approx(plain)


def test_label_smoothing_mode_reaches_the_recipes_ce_terms():
    logits = torch.randn(4, 10)
    y = torch.arange(4)
    step = Step(torch.nn.Identity(), torch.zeros(4, 1), y, forward_all=lambda x: None)
    step.__dict__["adv"] = step.__dict__["clean"] = type("O", (), {"logits": logits})()
    step.__dict__["x_adv"] = torch.zeros(4, 1)
    objective = build_objective("agkd_bml", eps=0.1, label_smoothing=0.5,
                                label_smoothing_mode="wrong_classes")
    fn, _ = objective.terms["adv_ce"]
    assert fn(step).item() == pytest.approx(smoothed_ce(logits, y, 0.5, "wrong_classes").item())
    with pytest.raises(UserError, match="label_smoothing_mode"):
        build_objective("madry", eps=0.1, label_smoothing_mode="some")


# ---- fault 8: bit-identical gradients and trainings ----------------------------------------------

@contextlib.contextmanager
def threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def universal_step(model, teacher, x, y, pairs, siamese):
    """A Step every term can read: pairs (bidirectional), Siamese counterparts, a teacher."""
    return Step(model, x, y, adversary=lambda m, a, b: pairs, teacher=teacher,
                pairing=lambda a, b: siamese)


def test_every_terms_gradient_is_bit_identical_over_20_backwards_with_2_threads():
    # B = 128, D = 256 and repeated rows: where index_put_(accumulate=True)'s parallel CPU kernel
    # (advanced-index backward) adds in a run-dependent order
    torch.manual_seed(0)
    model = tiny(embedding_dim=256, width=2).train()
    teacher = FrozenTeacher(tiny(seed=1, embedding_dim=256, width=2))
    b = 128
    x, y = torch.rand(b, 1, 28, 28), torch.arange(b) % 4   # 4 classes: hard negatives repeat
    pairs = Pairs((x + 0.05).clamp(0, 1), torch.rand(b, 1, 28, 28), (y + 1) % 4, torch.rand(b, 1, 28, 28))
    siamese = Siamese(torch.rand(b, 1, 28, 28), y.clone(), (torch.arange(b) % 2).float())
    params = [p for p in model.parameters()]
    with threads(2):
        for name in TERMS.names():
            first = None
            for _ in range(20):
                step = universal_step(model, teacher, x, y, pairs, siamese)
                grads = torch.autograd.grad(TERMS.get(name)(step), params, allow_unused=True)
                grads = [g if g is not None else torch.zeros(()) for g in grads]
                if first is None:
                    first = grads
                else:
                    assert all(torch.equal(a, g) for a, g in zip(first, grads)), name


TRAIN = ["data.name=synthetic", "data.options={train_size: 384, test_size: 32}", "data.batch_size=128",
         "model.options={width: 2, embedding_dim: 256}", "train.epochs=1", "train.monitor_images=0",
         "train.eval_every=100", "defense.eps=0.1", "train.threads=2"]


def test_two_trainings_of_every_recipe_end_with_identical_weights(tmp_path):
    # 3 steps of batch 128 each; the teacher / cascade source stages are shared by both runs
    failed = []
    for recipe in sorted(RECIPES.names(), key=lambda r: r != "standard"):  # distill copies standard
        config = f"configs/{recipe}_fmnist.yaml"
        weights = []
        for run in ("a", "b"):
            halved = (["data.batch_size=64", "data.options={train_size: 192, test_size: 32}"]
                      if recipe in ("bidirection", "pivot", "cascade") else [])  # + as many adversarial
            cfg = load_config(config, [*TRAIN, f"out_dir={tmp_path}", f"name={recipe}_{run}", *halved])
            if recipe == "distill":
                cfg.defense.teacher = str(tmp_path / "standard_a")
            weights.append(experiment.train(cfg, log=lambda _: None).model.state_dict())
        if not all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]):
            failed.append(recipe)
    assert not failed


# ---- fault 2: PDM's activation ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["small_cnn", "lenet", "resnet20"])
def test_leaky_relu_option_replaces_every_relu(name):
    model = create_model(name, num_classes=10, in_channels=1, image_size=28, activation="leaky_relu",
                         negative_slope=0.1)
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.LeakyReLU in kinds and torch.nn.ReLU not in kinds
    assert all(m.negative_slope == 0.1 for m in model.modules() if isinstance(m, torch.nn.LeakyReLU))
    assert create_model(name, 10, 1, 28).arch["activation"] == "relu"
    with pytest.raises(UserError, match="activation"):
        create_model(name, 10, 1, 28, activation="gelu")


def test_pdm_configs_use_leaky_relu():
    for recipe in ("pdm", "siamese_rvl"):
        cfg = load_config(f"configs/{recipe}_fmnist.yaml", [])
        assert cfg.model.options["activation"] == "leaky_relu"


# ---- review mends: old runs, stage names, per-term options, Grad-CAM and counts on a joint forward

def test_a_checkpoint_saved_before_the_activation_option_still_loads():
    from robustlab.experiment import model_from_checkpoint
    from robustlab.train import check_architecture

    model = tiny()
    old_arch = {k: v for k, v in model.arch.items() if k not in ("activation", "negative_slope")}
    state = {"arch": old_arch, "model": model.state_dict()}
    check_architecture(state, model)  # the missing options are their defaults
    assert model_from_checkpoint(state).arch == model.arch


def test_stage_names_do_not_change_with_config_keys_added_later():
    from robustlab.experiment.training import stage_config

    # the name the code before init_from_teacher / forward / label_smoothing_mode gave this teacher
    # (d6fc3d56 until stage seeds left the runs' space: seed + 2 -> seed + 2 * 2^32)
    for extra in ([], ["train.label_smoothing=0.5", "train.label_smoothing_mode=wrong_classes"]):
        cfg = load_config("configs/agkd_bml_fmnist.yaml", extra)
        assert stage_config(cfg, "teacher", 2).name == "_teacher_fashion-mnist_small_cnn_f75ba072"
    cfg = load_config("configs/agkd_bml_fmnist.yaml", ["defense.forward=separate"])
    assert stage_config(cfg, "teacher", 2).name == "_teacher_fashion-mnist_small_cnn_f75ba072"


def test_stage_seeds_never_meet_run_seeds():
    """Issue 34 item 11: with seed + offset, the seed-0 teacher (seed 2) was bit-identical to
    reproduce's standard_seed2 and the cascade source to bidirection_seed2."""
    from robustlab.config import STAGE_SEEDS
    from robustlab.errors import UserError
    from robustlab.experiment.training import stage_config

    runs = set(range(10))
    stages = {stage_config(load_config("configs/agkd_bml_fmnist.yaml", [f"seed={s}"]), role, offset).seed
              for s in runs for role, offset in (("teacher", 2), ("source", 1), ("cascade-source", 2))}
    assert not runs & stages and min(stages) >= STAGE_SEEDS
    with pytest.raises(UserError, match=r"seed=4294967296 is out of range"):
        load_config(None, [f"seed={STAGE_SEEDS}"])
    assert load_config(None, [f"seed={STAGE_SEEDS}", "name=_teacher_x"]).seed == STAGE_SEEDS  # a stage


def test_a_terms_own_smoothing_mode_wins_over_the_trains():
    objective = build_objective("madry", eps=0.1, label_smoothing_mode="all",
                                terms={"adv_ce": {"label_smoothing": 0.1, "smoothing_mode": "wrong_classes"}})
    assert objective.terms["adv_ce"][0].keywords["smoothing_mode"] == "wrong_classes"


def test_grad_cam_of_a_joint_forward_equals_each_sets_own():
    from robustlab.attention import cam_from
    from robustlab.defenses.terms import student_cam

    model = tiny().eval()  # eval-mode BN: a set's features do not depend on the other set
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    step = Step(model, x, y, adversary=fixed_adversary(), joint=("clean", "adv"))
    alone = model.forward_all(step.x_adv)
    expected = cam_from(alone.features, alone.logits, y, create_graph=True)
    torch.testing.assert_close(student_cam(step, "adv"), expected)
    assert step.counts().keys() == {"correct", "adv_correct", "adv_n"}  # read through Grad-CAM only
    with pytest.raises(UserError, match="one class per image"):
        cam_from(alone.features, alone.logits, y[:3], rows=slice(0, 6))
