"""Recipes, adversaries and the Step cache: every recipe trains, combinations are config, a
teacher is never built unless a term reads it, and each adversary does what its paper says."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from robustlab.attacks import ATTACKS, PGD, Threat
from robustlab.cli import main
from robustlab.config import load_config
from robustlab.data import ClassIndex, Split
from robustlab.defenses import (
    RECIPES,
    AttackAdversary,
    FreeAdversary,
    FrozenTeacher,
    RandomEpsOneStep,
    Step,
    build_objective,
)
from robustlab.errors import UserError
from robustlab.experiment import build_defense, load_data, train
from robustlab.models import create_model
from robustlab.train.checkpoint import load_checkpoint
from robustlab.train.monitors import RobustMonitor

EPS = 0.1
CONFIGS = Path(__file__).parents[1] / "configs"
TINY = ["data.name=synthetic", "data.options={train_size: 128, test_size: 64}", "data.batch_size=32",
        "model.options={width: 8, embedding_dim: 32}", "train.epochs=1", "train.monitor_images=32",
        "train.monitor_steps=2"]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=8,
                        embedding_dim=32)


def tiny_batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10


class ExplodingTeacher(nn.Module):
    def forward_all(self, x):
        raise AssertionError("the teacher was used by a recipe that has none")


TEACHER_RECIPES = {"agkd_bml", "agkd_bml_7", "agkd", "atat", "distill"}


@pytest.mark.parametrize("recipe", RECIPES.names())
def test_each_recipe_trains_two_steps_with_gradients_everywhere(recipe):
    model = tiny_model().train()
    objective = build_objective(recipe, eps=EPS)
    # Only the attention-distillation recipes read a teacher; the others never call it.
    assert objective.needs_teacher == (recipe in TEACHER_RECIPES)
    teacher = FrozenTeacher(tiny_model(seed=1)) if objective.needs_teacher else ExplodingTeacher()
    images, labels = tiny_batch(40, seed=3)
    for drawer in (objective.adversary, objective.pairing):
        if hasattr(drawer, "class_index"):
            drawer.class_index = ClassIndex(Split((images * 255).to(torch.uint8), labels))
    if hasattr(objective.adversary, "bank"):  # cascade: saved images looked up by index
        objective.adversary.bank = images
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = tiny_batch()
    for _ in range(2):
        step = Step(model, x, y, adversary=objective.adversary, teacher=teacher,
                    pairing=objective.pairing, index=torch.arange(len(x)))
        terms = objective(step)
        assert set(terms) == {"loss", *objective.terms}
        assert all(torch.isfinite(v) for v in terms.values()), terms
        optimizer.zero_grad()
        terms["loss"].backward()
        objective.after_backward(step)
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{recipe}: {name}"
            assert p.grad.abs().sum() > 0, f"{recipe}: no gradient reaches {name}"
        optimizer.step()
    assert model.training  # the adversary restored the mode


def test_step_runs_the_adversary_and_each_forward_once():
    model = tiny_model()
    calls = {"attack": 0, "forward": 0}

    def adversary(m, x, y):
        calls["attack"] += 1
        return (x + 0.01).clamp(0, 1)

    def forward_all(x):
        calls["forward"] += 1
        return model.forward_all(x)

    objective = build_objective("alp", eps=EPS, terms={"trades_kl": 1.0, "mart_kl": 1.0})
    x, y = tiny_batch()
    objective(Step(model, x, y, forward_all=forward_all, adversary=adversary))
    assert calls == {"attack": 1, "forward": 2}  # clean and adv, shared by five terms


def test_terms_without_an_adversary_or_teacher_say_what_is_missing():
    model = tiny_model()
    x, y = tiny_batch(4)
    with pytest.raises(UserError, match="no adversary"):
        _ = Step(model, x, y).x_adv
    with pytest.raises(UserError, match="needs a teacher"):
        _ = Step(model, x, y).teacher_clean


def test_attack_mode_train_uses_batch_statistics_and_restores_buffers():
    model = tiny_model().eval()
    x, y = tiny_batch()
    model.train()
    with torch.no_grad():  # move the running statistics away from their initial values
        for _ in range(3):
            model(x * 0.5)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attack = ATTACKS.build("pgd", eps=EPS, steps=3)
    in_eval = AttackAdversary(attack, "eval")(model, x, y)
    in_train = AttackAdversary(attack, "train")(model, x, y)
    assert not torch.equal(in_eval, in_train)  # BN batch statistics change the gradient
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} moved during the train-mode attack"
    with pytest.raises(UserError, match="attack_mode='test'"):
        build_objective("madry", eps=EPS, attack_mode="test")


def test_random_eps_one_step_matches_step_ll_at_each_images_eps():
    model = tiny_model().eval()
    x, y = tiny_batch(12)
    torch.manual_seed(3)
    x_adv = RandomEpsOneStep("step_ll", max_eps=0.2, fraction=0.5)(model, x, y)
    assert len(x_adv) == 6  # k = m / 2 images attacked
    delta = (x_adv - x[:6]).flatten(1)
    eps = delta.abs().amax(1)
    assert (eps <= 0.2 + 1e-6).all() and eps.unique().numel() == 6  # one eps per image
    for i in range(6):  # the same image as step_ll with that image's own eps
        expected = ATTACKS.build("step_ll", eps=eps[i].item())(model, x[i:i + 1], y[i:i + 1])
        assert torch.allclose(x_adv[i:i + 1], expected, atol=1e-6)
    with pytest.raises(UserError, match="one-step attack"):
        RandomEpsOneStep("pgd", max_eps=0.1)


def test_free_adversary_steps_with_the_training_gradient_and_keeps_state():
    free = FreeAdversary(eps=0.1)
    x = torch.full((2, 1, 2, 2), 0.5)
    x_adv = free(None, x, torch.zeros(2, dtype=torch.long))
    assert torch.equal(x_adv, x) and x_adv.requires_grad
    x_adv.grad = torch.tensor([1.0, -1, 0, 2]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    free.after_backward(x_adv)
    assert free.delta[0].flatten().tolist() == pytest.approx([0.1, -0.1, 0, 0.1])
    free.after_backward(x_adv)  # clipped to eps
    assert free.delta[0].flatten().tolist() == pytest.approx([0.1, -0.1, 0, 0.1])
    x_adv.grad[0, 0, 0, 0] = float("inf")  # an fp16 overflow: the step is skipped, delta kept
    free.after_backward(x_adv)
    assert free.delta[0].flatten().tolist() == pytest.approx([0.1, -0.1, 0, 0.1])
    restored = FreeAdversary(eps=0.1)
    restored.load_state_dict(free.state_dict())
    assert torch.equal(restored(None, x, None), free(None, x, None))


def test_pgd_training_noise_and_trades_start():
    model = tiny_model().eval()
    x, y = tiny_batch(4)
    seeded = ATTACKS.build("pgd", eps=EPS, steps=1)
    assert torch.equal(seeded(model, x, y), seeded(model, x, y))
    fresh = ATTACKS.build("pgd", eps=EPS, steps=1, noise="global")
    assert not torch.equal(fresh(model, x, y), fresh(model, x, y))  # a new start every call
    gauss = PGD(Threat("linf", EPS), steps=1, step_size=1e-9, start_std=0.001, loss="kl")
    delta = gauss(model, x, y) - x
    assert 0 < delta.abs().max() < 0.01  # N(0, 0.001^2), not uniform in the ball
    with pytest.raises(UserError, match="random_start"):
        PGD(loss="kl", random_start=False)
    with pytest.raises(UserError, match="noise"):
        PGD(noise="fresh")


def test_build_objective_errors():
    with pytest.raises(UserError, match="unknown option.*bta.*valid: beta"):
        build_objective("trades", eps=EPS, bta=6)
    with pytest.raises(UserError, match="unknown recipe 'tradez'"):
        build_objective("tradez", eps=EPS)
    with pytest.raises(UserError, match="needs eps"):
        build_objective("madry")
    with pytest.raises(UserError, match="eps=8"):
        build_objective("madry", eps=8)
    with pytest.raises(UserError, match="no CE term to smooth"):
        build_objective("mart", eps=EPS, label_smoothing=0.1)
    with pytest.raises(UserError, match="no term left"):
        build_objective("madry", eps=EPS, terms={"adv_ce": 0})


def test_two_recipes_combined_from_config(tmp_path):
    cfg = load_config(None, [*TINY, f"out_dir={tmp_path}", "name=combo", "defense.recipe=trades",
                             "defense.options={beta: 3.0, steps: 2}", "defense.terms={logit_pairing: 0.5}"])
    assert build_defense(cfg, load_data(cfg)).weights == {"clean_ce": 1.0, "trades_kl": 3.0,
                                                          "logit_pairing": 0.5}
    run = train(cfg, log=lambda _: None)
    record = run.final
    for key in ("train_clean_ce", "train_trades_kl", "train_logit_pairing", "train_adv_acc", "robust_acc"):
        assert key in record, key
    assert record["train_loss"] == pytest.approx(
        record["train_clean_ce"] + 3 * record["train_trades_kl"] + 0.5 * record["train_logit_pairing"],
        rel=1e-4)
    logged = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "train_logit_pairing" in logged[-1]
    assert (run.checkpoint_dir / "best_robust.pt").is_file()


def test_free_at_resumes_with_its_perturbation(tmp_path):
    cfg = load_config(None, [*TINY, f"out_dir={tmp_path}", "name=free", "defense.recipe=free_at",
                             "defense.options={replays: 2}", "train.monitor_images=0"])
    run = train(cfg, log=lambda _: None)
    state = load_checkpoint(run.last_checkpoint)
    delta = state["objective"]["adversary"]["delta"]
    assert delta.shape == (32, 1, 28, 28) and 0 < delta.abs().max() <= EPS + 1e-6
    assert run.global_step == 4  # minibatches of 32, each trained on twice


def test_robust_monitor_raises_the_overfitting_alarm():
    model = tiny_model().eval()
    x, y = tiny_batch(20)
    identity = lambda m, x, y: x  # noqa: E731
    acc = (model(x).argmax(1) == y).float().mean().item()
    monitor = RobustMonitor(x, y, identity, drop=0.2, batch_size=7)
    assert monitor(model, "cpu", []) == {"robust_acc": pytest.approx(acc)}
    assert "overfitting_alarm" not in monitor(model, "cpu", [{"robust_acc": acc + 0.19}])
    alarm = monitor(model, "cpu", [{"robust_acc": acc + 0.21}])["overfitting_alarm"]
    assert "catastrophic overfitting" in alarm


def test_recipe_configs_build_and_extend_the_standard_one():
    names = sorted(p.name for p in CONFIGS.glob("*_fmnist.yaml"))
    recipes = {p.removesuffix("_fmnist.yaml") for p in names}
    assert set(RECIPES.names()) <= recipes
    for name in names:
        cfg = load_config(CONFIGS / name)
        assert cfg.data.name == "fashion-mnist" and cfg.model.name == "small_cnn"
        objective = build_objective(cfg.defense.recipe, eps=cfg.defense.eps or EPS,
                                    terms=cfg.defense.terms, **cfg.defense.options)
        assert objective.name == cfg.defense.recipe


def test_config_extends(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\ntrain: {epochs: 4, amp: bf16}\n"
                                        "defense: {recipe: trades, options: {beta: 6.0, steps: 3}}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\ntrain: {epochs: 2}\n"
                                         "defense: {recipe: madry, options: {steps: 5}}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.name, cfg.train.epochs, cfg.train.amp) == ("child", 2, "bf16")
    assert cfg.defense.options == {"steps": 5}  # options are replaced whole, never mixed
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(UserError, match="cycle"):
        load_config(tmp_path / "loop.yaml")


def test_cli_lists_recipes(capsys):
    assert main(["recipes"]) == 0
    text = capsys.readouterr().out
    for name in RECIPES.names():
        assert f"{name}: " in text
    assert "1 clean_ce + 6 trades_kl" in text
