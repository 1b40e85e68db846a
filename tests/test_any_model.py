"""Any nn.Module through the suites: `robustlab.evaluate` and `robustlab eval --model`, the hook
adapter for the Classifier contract, skipped entries with their reasons, the weights loaders and
their one-line errors."""

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import robustlab
from robustlab.attacks import ATTACKS
from robustlab.cli import main
from robustlab.errors import UserError
from robustlab.eval.suite import load_suite
from robustlab.models import HookedClassifier, create_model, load_model
from robustlab.report import schema

# TorchScript is deprecated in recent torch, but it is what many users still ship
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
LIMIT = 8
EPS = 0.3  # an undefended model is broken at once, so AutoAttack's later stages have nothing left


class MLP(nn.Module):
    """A plain model, [0, 1] images -> logits, with nothing of the Classifier contract."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(784, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(self.flatten(x))))


class ConvNet(nn.Module):
    """A plain model with a conv layer, whose output can stand for the feature map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5, stride=2)
        self.fc = nn.Linear(8 * 12 * 12, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        return self.out(torch.relu(self.fc(torch.relu(self.conv(x)).flatten(1))))


def needs_width(width):
    return MLP(width)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared CPU: more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained():
    """MLP and ConvNet, each trained for 200 Adam steps on 2,048 Fashion-MNIST images (~75%)."""
    from conftest import fashion_mnist_here  # here: the CLI imports this module without pytest's path

    if not fashion_mnist_here():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    from robustlab.data import load_dataset

    train = load_dataset("fashion-mnist").train
    x, y = train.images[:2048].float() / 255, train.labels[:2048]
    models = {}
    for model in (MLP(), ConvNet()):
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(200):
            i = torch.randint(0, len(y), (64,))
            loss = nn.functional.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        models[type(model).__name__] = model.eval()
    return models


def quiet(_):
    pass


def check_papers_report(report, out: Path, *, a3_runs: bool):
    """The report is written and valid; A3 ran or is skipped with its reason; every other entry
    of the papers suite has a number."""
    written = json.loads((out / "report.json").read_text())
    jsonschema.validate(written, schema())
    labels = [a.label for a in load_suite("papers").attacks]
    measured = {a["label"]: a["accuracy"] for a in report["attacks"]}
    skipped = {s["label"]: s["reason"] for s in report["skipped"]}
    assert set(measured) | set(skipped) == set(labels) and not set(measured) & set(skipped)
    assert ("A3-PGD-20" in measured) == a3_runs and set(skipped) == (set() if a3_runs else {"A3-PGD-20"})
    assert all(0 <= v <= report["clean_accuracy"] for v in measured.values())  # robust implies clean
    assert report["clean_accuracy"] >= 0.5  # the trained model on its own labels, in order
    assert measured["PGD-20"] <= 0.25  # an undefended model at eps 0.3: the attacks really ran
    assert report["worst_case"]["accuracy"] <= min(measured.values())
    text = (out / "report.md").read_text()
    for label, reason in skipped.items():
        assert "feature layer" in reason
        assert f"| {label} | 0.3 | skipped: {reason} |" in text
        assert html.escape(f"skipped: {reason}") in (out / "report.html").read_text()
    return written


def test_papers_suite_on_a_plain_mlp_skips_a3_with_its_reason(trained, tmp_path):
    report = robustlab.evaluate(trained["MLP"], "fashion-mnist", suite="papers", eps=EPS, limit=LIMIT,
                                out=tmp_path, log=quiet)
    written = check_papers_report(report, tmp_path, a3_runs=False)
    assert written["name"] == written["model"] == "MLP" and "run" not in written
    assert written["images"] == LIMIT and written["dataset"] == "fashion-mnist"
    assert (tmp_path / "report.md").read_text().startswith("# Robustness report: MLP\n")


def test_a_named_feature_layer_makes_a3_run(trained, tmp_path):
    report = robustlab.evaluate(trained["ConvNet"], "fashion-mnist", eps=EPS, limit=LIMIT, out=tmp_path,
                                feature_layer="conv", name="my convnet", log=quiet)
    check_papers_report(report, tmp_path, a3_runs=True)
    assert report["feature_layer"] == "conv" and report["name"] == "my convnet"
    assert "feature map of layer conv" in (tmp_path / "report.md").read_text()


def test_the_cli_evaluates_a_factory_in_a_subprocess(trained, tmp_path):
    weights = tmp_path / "mlp.pt"
    torch.save(trained["MLP"].state_dict(), weights)
    cmd = [sys.executable, "-m", "robustlab", "eval", "--model", "tests.test_any_model:MLP",
           "--weights", str(weights), "--data", "fashion-mnist", "--limit", str(LIMIT), "--eps", str(EPS),
           "--out", str(tmp_path / "r"), "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped: a3_pgd reads the model's feature map" in done.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    check_papers_report(report, tmp_path / "r", a3_runs=False)


def test_the_cli_with_a_feature_layer_and_a_torchscript_file(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    weights = tmp_path / "conv.pt"
    torch.save(trained["ConvNet"].state_dict(), weights)
    args = ["eval", "--data", "fashion-mnist", "--limit", str(LIMIT), "--eps", str(EPS), "--json"]
    assert main([*args, "--model", "tests.test_any_model:ConvNet", "--weights", str(weights),
                 "--feature-layer", "conv", "--out", str(tmp_path / "r")]) == 0
    report = json.loads(capsys.readouterr().out)
    check_papers_report(report, tmp_path / "r", a3_runs=True)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(trained["MLP"]), scripted)
    assert main([*args, "--weights", str(scripted), "--suite", "quick", "--out", str(tmp_path / "s")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "MLP" and [a["label"] for a in report["attacks"]] == ["FGSM", "PGD-20"]


def test_loaders_and_tensors_give_the_same_report(trained):
    torch.manual_seed(1)
    x, y = torch.rand(7, 1, 28, 28), torch.randint(0, 10, (7,))
    model = trained["MLP"].train()  # the caller's mode comes back unchanged
    direct = robustlab.evaluate(model, x, y, suite="quick", eps=0.1, log=quiet)
    loader = robustlab.evaluate(model, DataLoader(TensorDataset(x, y), batch_size=3), suite="quick",
                                eps=0.1, log=quiet)
    limited = robustlab.evaluate(model, DataLoader(TensorDataset(x, y), batch_size=3), suite="quick",
                                 eps=0.1, limit=4, log=quiet)
    assert model.training
    model.eval()
    keys = ("label", "accuracy", "success_rate", "linf_mean")
    rows = [[[a[k] for k in keys] for a in report["attacks"]] for report in (direct, loader)]
    assert rows[0] == rows[1]
    assert direct["images"] == loader["images"] == 7 and limited["images"] == 4
    assert loader["dataset"] == "DataLoader 1x28x28" and "files" not in direct  # no out: no files
    with pytest.raises(UserError, match="eps is needed"):
        robustlab.evaluate(model, x, y, suite="quick", log=quiet)
    with pytest.raises(UserError, match=r"in \[0, 1\]"):
        robustlab.evaluate(model, x * 255, y, suite="quick", eps=0.1, log=quiet)
    with pytest.raises(UserError, match="label 10 is outside the model's 10 outputs"):
        robustlab.evaluate(model, x, torch.full((7,), 10), suite="quick", eps=0.1, log=quiet)


def test_data_paths_are_your_folder_or_npz_data_set(tmp_path, capsys, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", x=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), y=np.arange(20) % 2)
    report = robustlab.evaluate(MLP(), tmp_path / "mine.npz", suite="quick", eps=0.1, log=quiet)
    assert report["dataset"] == "npz" and report["images"] == 20  # one set: all of it, not a split
    with pytest.raises(UserError, match="eps is needed for npz"):
        robustlab.evaluate(MLP(), tmp_path / "mine.npz", suite="quick", log=quiet)
    for i in range(10):
        (tmp_path / "images" / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(
            tmp_path / "images" / f"class{i % 2}" / f"{i}.png")
    monkeypatch.chdir(REPO)
    assert main(["eval", "--model", "tests.test_any_model:MLP", "--data", str(tmp_path / "images"),
                 "--eps", "8/255", "--suite", "quick", "--out", str(tmp_path / "r"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "folder" and report["images"] == 10 and report["eps"] == 8 / 255


def test_transfer_entries_need_a_source_model(trained, tmp_path):
    suite = tmp_path / "mine.yaml"
    suite.write_text("name: mine\nattacks:\n  - {label: FGSM, attack: fgsm}\n"
                     "  - {label: transfer PGD-20, attack: pgd, steps: 20, source: standard}\n")
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    alone = robustlab.evaluate(trained["MLP"], x, y, suite=suite, eps=0.1, log=quiet)
    assert [a["label"] for a in alone["attacks"]] == ["FGSM"]
    (skip,) = alone["skipped"]
    assert skip["label"] == "transfer PGD-20" and "source model" in skip["reason"]
    both = robustlab.evaluate(trained["MLP"], x, y, suite=suite, eps=0.1, source=trained["ConvNet"],
                              log=quiet)
    assert [a["kind"] for a in both["attacks"]] == ["single_step", "transfer"] and both["skipped"] == []
    jsonschema.validate(both, schema())


def test_the_adapter_equals_the_classifier_contract_it_imitates():
    """small_cnn's own contract and the hooks on its body give the same A3 examples."""
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=8,
                         embedding_dim=32).eval()
    hooked = HookedClassifier(model, "body")
    assert hooked.head_layer == "classifier"
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    mine, theirs = hooked.forward_all(x), model.forward_all(x)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b)
    a3 = ATTACKS.build("a3_pgd", eps=0.1, steps=3)
    torch.testing.assert_close(a3(hooked, x, y), a3(model, x, y))
    with pytest.raises(UserError, match="shape"):  # a substituted feature map of another shape
        hooked.features(x)
        hooked.embed(torch.zeros(1, 2, 3, 3))
    assert not model.body._forward_hooks and not model.classifier._forward_pre_hooks  # removed


def test_feature_layer_errors_name_the_layer(trained):
    x, y = torch.rand(2, 1, 28, 28), torch.randint(0, 10, (2,))
    with pytest.raises(UserError, match=r"feature layer 'layer4' is not a module of MLP; its modules: "
                                        r"flatten, hidden, out"):
        robustlab.evaluate(trained["MLP"], x, y, suite="quick", eps=0.1, feature_layer="layer4", log=quiet)
    with pytest.raises(UserError, match=r"layer 'hidden' gives Tensor \(2, 64\), not a \[B, C, h, w\]"):
        robustlab.evaluate(trained["MLP"], x, y, suite="quick", eps=0.1, feature_layer="hidden", log=quiet)
    with pytest.raises(UserError, match="TorchScript model runs no Python hooks"):
        HookedClassifier(torch.jit.script(MLP()), "hidden")


def test_state_dict_and_torchscript_weights_load(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    torch.manual_seed(0)
    model, x = MLP().eval(), torch.rand(3, 1, 28, 28)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.jit.save(torch.jit.script(model), tmp_path / "ts.pt")
    from_state = load_model("tests.test_any_model:MLP", tmp_path / "sd.pt")
    from_script = load_model(None, tmp_path / "ts.pt")
    assert type(from_state).__name__ == "MLP" and isinstance(from_script, torch.jit.ScriptModule)
    with torch.no_grad():
        torch.testing.assert_close(from_state.eval()(x), model(x))
        torch.testing.assert_close(from_script(x), model(x))
    with pytest.raises(UserError, match="TorchScript model, which carries its architecture"):
        load_model("tests.test_any_model:MLP", tmp_path / "ts.pt")


def test_a_factory_in_the_current_directory_imports(tmp_path, monkeypatch):
    (tmp_path / "usernet_here.py").write_text("from torch import nn\n\n"
                                               "def make():\n    return nn.Sequential(nn.Flatten(), "
                                               "nn.Linear(784, 10))\n")
    (tmp_path / "usernet_broken.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)
    try:
        assert isinstance(load_model("usernet_here:make"), nn.Sequential)
        with pytest.raises(UserError, match="cannot import 'usernet_broken'.*no_such_dependency_xyz"):
            load_model("usernet_broken:make")
    finally:
        sys.modules.pop("usernet_here", None)
    assert sys.path == before  # the current directory is on the path only while importing


def write_weights(tmp_path: Path, kind: str) -> Path:
    """A weights file that is not MLP's state_dict: another model's, other shapes, a dict."""
    state = {"other model": ConvNet().state_dict(),
             "other shape": {**MLP().state_dict(), "hidden.weight": torch.zeros(32, 784)},
             "checkpoint dict": {"epoch": 3, "state_dict": MLP().state_dict()}}[kind]
    path = tmp_path / f"{kind.replace(' ', '_')}.pt"
    torch.save(state, path)
    return path


SPEC = ["--model", "tests.test_any_model:MLP"]
DATA = ["--data", "synthetic"]


@pytest.mark.parametrize("case, extra, expected", [
    ("no colon", ["--model", "tests.test_any_model", *DATA], "must look like package.module:factory"),
    ("two colons", ["--model", "a:b:c", *DATA], "must look like package.module:factory"),
    ("import failure", ["--model", "no_such_module_xyz:make", *DATA], "cannot import 'no_such_module_xyz'"),
    ("missing attribute", ["--model", "tests.test_any_model:Nope", *DATA],
     "has no attribute 'Nope'; callables"),
    ("factory with arguments", ["--model", "tests.test_any_model:needs_width", *DATA],
     "needs arguments (width)"),
    ("weights of another model", [*SPEC, *DATA, "--weights", "{other model}"],
     "do not match the model of 'tests.test_any_model:MLP': missing keys hidden.weight, hidden.bias; "
     "unexpected keys conv.weight, conv.bias, fc.weight, fc.bias; other shapes: out.weight [10, 32]"),
    ("weights of another shape", [*SPEC, *DATA, "--weights", "{other shape}"],
     "other shapes: hidden.weight [32, 784] in the file, [64, 784] in the model"),
    ("a checkpoint dict", [*SPEC, *DATA, "--weights", "{checkpoint dict}"],
     "is not a state_dict (it holds epoch, state_dict)"),
    ("missing weights", [*SPEC, *DATA, "--weights", "nowhere/none.pt"], "none.pt does not exist"),
    ("unknown feature layer", [*SPEC, *DATA, "--feature-layer", "layer4"],
     "feature layer 'layer4' is not a module of MLP; its modules: flatten, hidden, out"),
    ("no data", SPEC, "needs --data"),
    ("unknown data", [*SPEC, "--data", "imagenet-9"], "neither a registered data set"),
    ("run and model", ["runs/x", *SPEC, *DATA], "not a run: drop RUN or --model"),
    ("data but no model", DATA, "name the model as package.module:factory"),
    ("neither run nor model", [], "give a run directory or checkpoint (RUN), or your own model"),
])
def test_bad_model_inputs_are_one_line_errors(tmp_path, capsys, monkeypatch, case, extra, expected):
    monkeypatch.chdir(REPO)
    extra = [str(write_weights(tmp_path, a[1:-1])) if a.startswith("{") else a for a in extra]
    code = main(["eval", "--eps", "0.1", "--limit", "2", "--suite", "quick", "--out", str(tmp_path / "r"),
                 *extra])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, case + ": " + err
    assert lines[0].startswith("robustlab: error: ") and expected in lines[0], case


def test_a_saved_state_is_never_reused_for_other_images(trained, tmp_path):
    from robustlab.data import load_dataset

    test = load_dataset("fashion-mnist").test
    x, y = test.images[:16].float() / 255, test.labels[:16]
    other_x, other_y = test.images[16:32].float() / 255, test.labels[16:32]
    model = trained["ConvNet"]
    first = robustlab.evaluate(model, x, y, suite="quick", eps=0.1, out=tmp_path, log=quiet)
    other = robustlab.evaluate(model, other_x, other_y, suite="quick", eps=0.1, out=tmp_path, log=quiet)
    fresh = robustlab.evaluate(model, other_x, other_y, suite="quick", eps=0.1, log=quiet)
    assert first["outcomes"]["clean"] != fresh["outcomes"]["clean"]  # the two sets differ image by image
    assert other["outcomes"]["robust"] == fresh["outcomes"]["robust"]
    assert other["outcomes"]["clean"] == fresh["outcomes"]["clean"]
