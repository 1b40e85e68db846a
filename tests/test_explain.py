"""`robustlab explain` and the analyses behind it: finite numbers, non-empty figures, hand-checked
pieces, and a page whose every image loads in headless Chromium."""

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustlab.analysis import (
    attention_trace,
    foreground,
    label_transitions,
    loss_landscape,
    object_iou_study,
)
from robustlab.analysis.attention_study import _top_area
from robustlab.attacks import ATTACKS
from robustlab.cli import main
from robustlab.config import load_config
from robustlab.experiment import train
from robustlab.experiment.explain import explain

TINY = ["data.name=synthetic", "data.options={train_size: 256, test_size: 128}", "data.batch_size=32",
        "model.options={width: 8, embedding_dim: 32}", "train.epochs=1", "train.monitor_images=0"]
SMALL = dict(images=2, study_images=48, embed_images=60, trace_steps=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    quiet = lambda _: None  # noqa: E731
    train(load_config(None, [*TINY, f"out_dir={out}", "name=std"]), log=quiet)
    train(load_config("configs/agkd_fmnist.yaml", [*TINY, f"out_dir={out}", "name=agkd"]), log=quiet)
    return out


def model_and_batch(runs, n=8):
    from robustlab.experiment import load_data, load_run

    loaded = load_run(runs / "std")
    test = load_data(loaded.cfg).test
    return loaded.model.eval(), test.images[:n].float() / 255, test.labels[:n]


def test_every_analysis_gives_finite_numbers_and_real_figures(runs, tmp_path):
    from PIL import Image

    result = explain([runs / "agkd", runs / "std"], out=str(tmp_path / "e"), log=lambda _: None, **SMALL)
    numbers = json.loads(Path(result["files"]["json"]).read_text())
    assert numbers["runs"] == ["agkd", "std"]

    def finite(value):
        if isinstance(value, dict):
            return all(finite(v) for v in value.values())
        if isinstance(value, list):
            return all(finite(v) for v in value)
        return value is None or not isinstance(value, float) or math.isfinite(value)

    assert all(finite(numbers[k]) for k in ("attention_study", "embeddings", "landscape"))
    for run in ("agkd", "std"):
        table1 = numbers["attention_study"][run]["object_iou"]["table1"]
        assert table1["succeed"]["percentage"] + table1["fail"]["percentage"] == pytest.approx(1.0)
        assert set(numbers["attention_study"][run]["shift_iou"]["rows"]) == {"5", "10", "20", "30"}
        assert sum(map(sum, numbers["embeddings"][run]["transitions"])) == SMALL["embed_images"]
    for png in ("attention_grid.png", "attention_trace.png", "tsne.png", "transitions.png", "landscape.png"):
        image = Image.open(result["files"][png])
        assert min(image.size) > 100
        assert np.asarray(image.convert("L")).std() > 10, f"{png} is blank"
    # the agkd run had a teacher: the grid has its rows too (2 runs + 1 teacher, 2 images each)
    grid = Image.open(result["files"]["attention_grid.png"])
    one = Image.open(explain([runs / "std"], what=("grid",), out=str(tmp_path / "one"),
                             log=lambda _: None, **SMALL)["files"]["attention_grid.png"])
    assert grid.size[1] > 2.5 * one.size[1]


def test_analyses_leave_the_model_as_they_found_it(runs):
    from robustlab.analysis import attention_grid, embeddings, shift_iou_study

    model, x, y = model_and_batch(runs, 16)
    model.train()
    stats = [b.clone() for b in model.buffers()]
    pgd = ATTACKS.build("pgd", eps=0.1, steps=2)
    grid = attention_grid(model, x[:2], y[:2], pgd)
    shift_iou_study(model, x, y, pgd, cells=(5,))
    embeddings(model, x)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))
    # the maps equal Grad-CAM computed on its own (one forward served all three maps)
    from robustlab.attention import grad_cam, upsample

    with torch.no_grad():
        model.eval()
    assert torch.allclose(grid["cam_true_clean"], upsample(grad_cam(model, x[:2], y[:2]), 28), atol=1e-6)


def test_loss_landscape_centre_is_the_clean_loss(runs):
    model, x, y = model_and_batch(runs)
    land = loss_landscape(model, x, y, radius=0.1, steps=5)
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y).item()
    assert land["losses"].shape == (5, 5) and np.isfinite(land["losses"]).all()
    assert land["losses"][2, 2] == pytest.approx(clean, rel=1e-5)
    assert land["losses"][4, 2] > land["losses"][0, 2]  # along +sign(grad) the loss rises


def test_attention_trace_follows_the_attack_iterates(runs):
    model, x, y = model_and_batch(runs, 3)
    pgd = ATTACKS.build("pgd", eps=0.1, steps=3)
    trace = attention_trace(model, x, y, pgd)
    assert trace["images"].shape == (3, 4, 1, 28, 28) and trace["cam"].shape == (3, 4, 28, 28)
    assert torch.equal(trace["images"][:, 0], x)
    assert torch.equal(trace["images"][:, -1], pgd(model, x, y))  # same start, same step size


def test_label_transitions_foreground_and_equal_size_areas():
    m = label_transitions(torch.tensor([0, 0, 1, 2]), torch.tensor([1, 0, 1, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 1] = 0.5
    assert foreground(x).tolist() == [[[False, True], [False, False]]]
    maps = torch.tensor([[[0.1, 0.9], [0.5, 0.2]], [[4.0, 3.0], [2.0, 1.0]]])
    area = _top_area(maps, torch.tensor([2, 1]))
    assert area.tolist() == [[[False, True], [True, False]], [[True, False], [False, False]]]


def test_object_study_splits_by_attack_outcome(runs):
    model, x, y = model_and_batch(runs, 64)
    never = object_iou_study(model, x, y, lambda m, xx, yy: xx)  # an attack that changes nothing
    assert never["table1"]["fail"]["percentage"] == 1.0 and never["table1"]["succeed"]["iou"] is None
    assert 0 <= never["table1"]["fail"]["iou"] <= 1


@pytest.mark.parametrize("args, expected", [
    (["--what", "grid,nonsense"], "unknown analysis nonsense"),
    (["--images", "0"], "--images=0"),
    (["--overlay-classes", "a,b"], "--overlay-classes"),
    (["--eps", "2"], "--eps=2"),
])
def test_explain_bad_input(runs, capsys, args, expected):
    code = main(["explain", str(runs / "std"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err


CHECK = ("<script>addEventListener('load', () => { const i = [...document.images]; "
         "document.body.dataset.loaded = i.filter(m => m.complete && m.naturalWidth > 0).length "
         "+ '/' + i.length; });</script>")


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (scripts/setup.sh installs Debian's chromium)")
def test_explain_page_renders_in_headless_chromium_with_every_image_loaded(runs, tmp_path):
    result = explain([runs / "std"], out=str(tmp_path / "e"), log=lambda _: None, **SMALL)
    page = Path(result["files"]["html"]).read_text()
    assert "<script" not in page  # the report itself runs nothing; the check below is the test's
    checked = tmp_path / "check.html"
    checked.write_text(page.replace("</body>", CHECK + "</body>"))
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}",
           "--virtual-time-budget=5000", "--dump-dom", checked.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-loaded="5/5"' in dom.stdout, dom.stdout[:300]
    assert "Attention maps" in dom.stdout and "<table" in dom.stdout


def test_embedding_study_has_no_davies_bouldin_when_each_class_has_one_image():
    """Davies-Bouldin needs fewer classes than images; with one image per class it is None
    (scikit-learn would raise), with two it is a number."""
    from robustlab.analysis import embedding_study
    from robustlab.models import create_model

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=3, in_channels=1, image_size=28).eval()
    fgsm = ATTACKS.build("fgsm", eps=0.1)
    x = torch.rand(6, 1, 28, 28)
    single = embedding_study(model, x[:3], torch.tensor([0, 1, 2]), fgsm, 3)
    assert single["davies_bouldin_clean"] is None and single["davies_bouldin_adv"] is None
    paired = embedding_study(model, x, torch.tensor([0, 1, 2, 0, 1, 2]), fgsm, 3)
    assert paired["davies_bouldin_clean"] > 0
