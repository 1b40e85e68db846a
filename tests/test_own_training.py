"""Train your own model: `robustlab.train` (any nn.Module, any recipe, through `fit`),
`robustlab train --model` and `robustlab eval RUN` on its run, `robustlab.defense` as a loss in a
hand-written loop, the RobustBench entry, and the one-line errors that write nothing."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_any_model import ConvNet, one_thread  # noqa: F401 (one_thread: autouse, one CPU thread)
from torch import nn

import robustlab
from robustlab.attacks import ATTACKS
from robustlab.cli import main
from robustlab.data import load_dataset
from robustlab.errors import UserError
from robustlab.report import robustbench_entry
from robustlab.train import Callback, Interrupted

EPS = 0.1
N = 256  # random 28x28 images: the mechanics, not the accuracy


class AllConv(nn.Module):
    """No nn.Linear at all: logits from a 1x1 conv and global pooling (no embedding)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5, stride=2)
        self.classes = nn.Conv2d(8, 10, 1)

    def forward(self, x):
        return self.classes(torch.relu(self.conv(x))).mean((2, 3))


class Probabilities(ConvNet):
    def forward(self, x):
        return super().forward(x).softmax(1)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, 1, 28, 28, generator=g), torch.randint(0, 10, (N,), generator=g)


def quiet(_):
    pass


COMMON = dict(epochs=1, eps=EPS, batch_size=64, overrides=["train.monitor_images=16"], log=quiet)


def weights_of(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def changed(before: dict, model: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


# (recipe, its arguments): one per family: PGD-based, TRADES / MART, attention with a feature
# layer (with and without a teacher), embeddings (SML, PDM), the Cascade paper's
@pytest.mark.parametrize("recipe, extra", [
    ("madry", {}), ("trades", {}), ("mart", {}),
    ("aad_madry", {"feature_layer": "conv"}), ("agkd_bml", {"feature_layer": "conv"}),
    ("sml", {}), ("pdm", {}), ("bidirection", {}), ("cascade", {}),
])
def test_every_recipe_family_trains_a_plain_module_through_the_run_loop(recipe, extra, images, tmp_path):
    torch.manual_seed(0)
    model = ConvNet()
    before = weights_of(model)
    trained = robustlab.train(model, images, recipe, out=tmp_path / recipe, **extra, **COMMON)
    assert trained is model and changed(before, model)  # trained in place
    run = tmp_path / recipe
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["kind"] == "epoch"][-1]
    assert epoch["epoch"] == 1 and "robust_acc" in epoch and "test_acc" in epoch  # monitor and eval ran
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["arch"]["name"] == "external" and state["arch"]["class"] == "ConvNet"
    assert all(torch.equal(state["model"][f"model.{k}"], v) for k, v in model.state_dict().items())


def test_a_teacher_given_as_a_model_is_saved_and_named_in_the_run(images, tmp_path):
    torch.manual_seed(0)
    teacher = robustlab.train(ConvNet(), images, "standard", out=tmp_path / "teacher", **COMMON)
    robustlab.train(ConvNet(), images, "atat", out=tmp_path / "atat", teacher=teacher, feature_layer="conv",
                    **COMMON)
    saved = Path(json.loads((tmp_path / "atat" / "teacher.json").read_text())["checkpoint"])
    assert saved.parent == tmp_path and saved.name.startswith("_teacher-given_ConvNet_")
    state = torch.load(saved, weights_only=True)
    assert all(torch.equal(state["model"][f"model.{k}"], v) for k, v in teacher.state_dict().items())


def test_an_interrupted_run_resumes_to_the_same_weights(images, tmp_path):
    """Ctrl-C (here a callback asking to stop) saves the state; resume=True finishes it to the
    weights of an uninterrupted run, as for a registered model."""

    class StopAt(Callback):
        def on_step(self, run, metrics):
            if run.global_step == 2:
                run.stop_requested = True

    settings = dict(COMMON, epochs=2)
    torch.manual_seed(0)
    whole = robustlab.train(ConvNet(), images, "trades", out=tmp_path / "whole", **settings)
    torch.manual_seed(0)
    model = ConvNet()
    with pytest.raises(Interrupted):
        robustlab.train(model, images, "trades", out=tmp_path / "cut", callbacks=[StopAt()], **settings)
    torch.manual_seed(1)  # another initialisation: the checkpoint's weights replace it
    resumed = robustlab.train(ConvNet(), images, "trades", out=tmp_path / "cut", resume=True, **settings)
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())


SPEC_MODULE = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5, stride=2)
        self.fc = nn.Linear(8 * 12 * 12, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))
'''


def test_the_cli_trains_a_factory_and_evaluates_its_run_like_any_other(images, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ownnet.py").write_text(SPEC_MODULE)
    x, y = images
    np.savez(tmp_path / "data.npz", x=(x * 255).round().byte().numpy(), y=y.numpy())
    code = main(["train", "--model", "ownnet:Net", "--data", "data.npz", "--recipe", "aad_madry",
                 "--feature-layer", "conv", "train.epochs=1", "defense.eps=0.1", "data.batch_size=64",
                 "train.monitor_images=16", "name=own"])
    assert code == 0
    cfg = (tmp_path / "runs" / "own" / "config.yaml").read_text()
    assert "spec: ownnet:Net" in cfg and "feature_layer: conv" in cfg
    capsys.readouterr()
    # a new process would rebuild Net from the spec: no object of this one is needed
    assert main(["eval", "runs/own", "--suite", "autoattack", "--limit", "8", "--robustbench"]) == 0
    out = capsys.readouterr().out
    assert "RobustBench entry" in out
    report = json.loads((tmp_path / "runs/own/report/report.json").read_text())
    card = json.loads((tmp_path / "runs/own/report/robustbench.json").read_text())
    assert card == robustbench_entry(report)
    assert card["architecture"] == "Net" and card["eps"] == "0.1" and card["threat_model"] == "Linf"
    assert card["clean_acc"] == f"{100 * report['clean_accuracy']:.2f}"
    assert float(card["autoattack_acc"]) <= float(card["clean_acc"])
    assert "8 test images" in card["footnote"] and card["autoattack_version"].startswith("pyautoattack ")


def test_robustbench_eps_and_a_suite_without_autoattack():
    from robustlab.report.robustbench import eps_text

    assert (eps_text(8 / 255), eps_text(0.3), eps_text(0.1)) == ("8/255", "0.3", "0.1")
    with pytest.raises(UserError, match="needs AutoAttack's accuracy, which suite 'quick' did not run"):
        robustbench_entry({"attacks": [], "suite": "quick"})
    assert main(["eval", "runs/none", "--suite", "quick", "--robustbench"]) == 2


@pytest.mark.parametrize("model, recipe, extra, expected", [
    (Probabilities(), "madry", {}, r"returns probabilities \(each row is >= 0 and sums to 1\)"),
    (AllConv(), "sml", {}, r"recipe 'sml' reads an embedding, the input of the last nn.Linear, and AllConv "
                           "has none"),
    (ConvNet(), "atat", {}, r"recipe 'atat' reads a feature map \(attention, Grad-CAM\): name ConvNet's last "
                            r"conv layer with feature_layer="),
    (ConvNet(), "madry", {"beta": 6}, r"unknown option\(s\) beta for recipe 'madry'; valid: steps"),
    (ConvNet(), "madry", {"feature_layer": "conv9"}, r"feature layer 'conv9' is not a module of ConvNet"),
    ("wrong", "madry", {}, r"model spec 'wrong' must look like package.module:factory"),
])
def test_bad_input_is_one_line_and_writes_nothing(model, recipe, extra, expected, images, tmp_path):
    with pytest.raises(UserError, match=expected) as error:
        robustlab.train(model, images, recipe, out=tmp_path / "runs" / "bad", **extra, **COMMON)
    assert "\n" not in str(error.value)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_images_of_the_wrong_size_name_the_data_and_the_error(images, tmp_path):
    x, y = images
    with pytest.raises(UserError, match=r"ConvNet fails on npz's 1x32x32 images: mat1 and mat2"):
        robustlab.train(ConvNet(), (torch.rand(N, 1, 32, 32), y), "madry", out=tmp_path / "bad", **COMMON)
    with pytest.raises(UserError, match=r"eps is needed for npz"):
        robustlab.train(ConvNet(), images, "madry", out=tmp_path / "bad", **dict(COMMON, eps=None))
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# ---- robustlab.defense: a recipe as the loss of your own loop ----------------------------------

def digits_loop(loss_fn, epochs: int = 4) -> tuple[float, float]:
    """Train an MLP on scikit-learn's digits with Adam in a hand-written loop; (clean, PGD-10)
    accuracy on the 359 test images at eps 0.1."""
    ds = load_dataset("digits")
    x, y = ds.train.images.float() / 255, ds.train.labels
    xt, yt = ds.test.images.float() / 255, ds.test.labels
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    order = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=order).split(64):
            model.train()
            loss = loss_fn(model, x[idx], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    adv = ATTACKS.build("pgd", eps=EPS, steps=10)(model, xt, yt)
    with torch.no_grad():
        return ((model(xt).argmax(1) == yt).float().mean().item(),
                (model(adv).argmax(1) == yt).float().mean().item())


def test_a_defense_in_a_hand_written_loop_makes_the_model_robust():
    """Same data, seed, optimizer and loop: only the loss differs. Measured: PGD-10 accuracy
    44.8% (cross-entropy) -> 71.6% (madry) and 76.0% (trades), clean 96.4 / 94.7 / 92.5%."""
    pytest.importorskip("sklearn")
    clean_std, robust_std = digits_loop(lambda m, x, y: nn.functional.cross_entropy(m(x), y))
    for recipe in ("madry", "trades"):
        defense = robustlab.defense(recipe, eps=EPS)
        clean, robust = digits_loop(defense)
        assert robust >= robust_std + 0.15, (recipe, robust, robust_std)
        assert clean >= 0.85
        assert set(defense.last) == {"loss", *defense.objective.weights}


def test_a_defense_keeps_the_models_modes_and_batchnorm_as_the_trainer_does():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 26 * 26, 10))
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    defense = robustlab.defense("madry", eps=EPS, steps=3)
    model.train()
    bn = model[1]
    stats = bn.running_mean.clone()
    loss = defense(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert bn.num_batches_tracked.item() == 1  # one train-mode forward (on x_adv), none by the attack
    assert not torch.equal(bn.running_mean, stats)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert defense.last["loss"] == pytest.approx(loss.item())


def test_defense_with_a_feature_layer_and_a_teacher():
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    teacher = ConvNet().train()
    defense = robustlab.defense("atat", eps=EPS, feature_layer="conv", teacher=teacher, steps=2)
    loss = defense(ConvNet(), x, y)
    # the defense freezes a copy: your teacher keeps its mode and its trainable parameters
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert torch.isfinite(loss) and {"attention_transfer", "logit_pairing"} <= set(defense.last)
    pairs = robustlab.defense("agkd_bml", eps=EPS, feature_layer="conv", teacher=teacher, data=(x, y))
    assert torch.isfinite(pairs(ConvNet(), x, y)) and "bml_triplet" in pairs.last


@pytest.mark.parametrize("recipe, extra, expected", [
    ("free_at", {}, "replays each minibatch 8 times inside the trainer"),
    ("cascade", {}, "injects a source network's saved images"),
    ("atat", {"feature_layer": "conv"}, "learns from a frozen teacher: give teacher="),
    ("madry", {"teacher": ConvNet()}, "reads no teacher: drop teacher="),
    ("pdm", {}, r"draws images of other classes to pair with each image: give data=\(x, y\)"),
])
def test_defense_refuses_what_only_the_trainer_can_do(recipe, extra, expected):
    with pytest.raises(UserError, match=expected):
        robustlab.defense(recipe, eps=EPS, **extra)


def test_defense_refuses_a_model_without_the_layers_its_terms_read():
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    with pytest.raises(UserError, match="recipe 'aad_madry' reads a feature map"):
        robustlab.defense("aad_madry", eps=EPS)(ConvNet(), x, y)
    with pytest.raises(UserError, match="recipe 'sml' reads an embedding"):
        robustlab.defense("sml", eps=EPS)(AllConv(), x, y)


def test_robustlab_train_is_the_package_and_the_function():
    import robustlab.train as package
    from robustlab.experiment.own_training import train_model

    assert robustlab.train is package and callable(robustlab.train)
    assert package.fit is not None and "train" in dir(robustlab) and "defense" in dir(robustlab)
    assert train_model.__doc__ and robustlab.defense.__name__ == "defense"


def test_a_dataloader_and_its_tensors_are_one_data_set_and_test_images_may_be_given(images, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    x, y = images
    loader = DataLoader(TensorDataset(x, y), batch_size=50)
    robustlab.train(ConvNet(), loader, "standard", out=tmp_path / "loader", **COMMON)
    robustlab.train(ConvNet(), (x, y), "standard", out=tmp_path / "tensors", **COMMON)
    saved = {(tmp_path / run / "config.yaml").read_text().split("data_dir: ")[1].split("\n")[0]
             for run in ("loader", "tensors")}
    assert len(saved) == 1 and len(list(tmp_path.glob("_data_*.npz"))) == 1  # one file, stored once
    robustlab.train(ConvNet(), (x[:200], y[:200]), "standard", test=(x[200:], y[200:]),
                    out=tmp_path / "split", **COMMON)
    arrays = np.load(next(p for p in tmp_path.glob("_data_*.npz") if str(p) not in saved))
    assert sorted(arrays.files) == ["x_test", "x_train", "y_test", "y_train"] and len(arrays["y_test"]) == 56
    assert torch.equal(torch.from_numpy(arrays["x_train"]), (x[:200] * 255).round().byte())


def test_a_run_of_a_given_object_names_the_fix_in_another_process(images, tmp_path, monkeypatch):
    from robustlab.experiment import load_run
    from robustlab.models import own

    robustlab.train(ConvNet(), images, "standard", out=tmp_path / "given", **COMMON)
    assert load_run(tmp_path / "given").model.arch["class"] == "ConvNet"  # this process remembers it
    monkeypatch.setattr(own, "_GIVEN", {})  # as a new process
    with pytest.raises(UserError, match=r"this run's model \(ConvNet\) was given to robustlab.train as a "
                                        r"Python object.*model='package.module:factory'"):
        load_run(tmp_path / "given")
