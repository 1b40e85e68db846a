"""The paper-scale configs (configs/paper/<data set>/<recipe>.yaml, docs/paper_scale.md): each one
loads, names its recipe, data set and WRN-28-10, trains at its paper's eps, and its options build
the recipe's objective (a misspelt option is an error there, not at the first GPU step)."""

import math
from pathlib import Path

import pytest
import torch

from robustlab.config import load_config
from robustlab.defenses import RECIPES, build_objective
from robustlab.models import create_model

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
DATASETS = ("cifar10", "cifar100", "svhn")
CONFIGS = sorted(p for p in PAPER.glob("*/*.yaml") if not p.name.startswith("_"))
# The Cascade paper's recipes train at its max_e = 16/255 (Sec. 3.3); every other recipe at 8/255.
CASCADE_EPS = {"kurakin", "bidirection", "pivot", "cascade"}
NOT_PAPER_SCALE = {"distill"}  # distill copies a given model (PDM's black-box proxy)


def expected_eps(recipe: str) -> float:
    return 16 / 255 if recipe in CASCADE_EPS else 8 / 255


def test_every_recipe_has_a_paper_config_for_every_data_set():
    assert sorted(p.name for p in PAPER.iterdir() if p.is_dir()) == sorted(DATASETS)
    recipes = set(RECIPES.names()) - NOT_PAPER_SCALE
    assert len(recipes) == 22
    for dataset in DATASETS:
        assert (PAPER / dataset / "_base.yaml").is_file()
        assert {p.stem for p in (PAPER / dataset).glob("*.yaml")} - {"_base"} == recipes, dataset


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_paper_config_loads_and_builds_its_objective(path):
    dataset, recipe = path.parent.name, path.stem
    cfg = load_config(path)  # validates: a bad key, type or range is a UserError
    assert cfg.name == f"{recipe}_{dataset}_wrn"
    assert cfg.model.name == "wrn28_10" and cfg.model.options == {}
    assert cfg.data.name == dataset
    assert cfg.defense.recipe == recipe
    assert cfg.defense.eps is not None and math.isclose(cfg.defense.eps, expected_eps(recipe))
    assert cfg.defense.teacher is None and cfg.defense.source is None  # stages train on their own
    assert cfg.train.device == "auto" and cfg.optim.name == "sgd"
    assert cfg.train.label_smoothing == 0.0
    # SVHN trains without flips (data.augment is crop + flip together); CIFAR crops and flips.
    assert cfg.data.augment is (False if dataset == "svhn" else None)
    objective = build_objective(recipe, eps=cfg.defense.eps, label_smoothing=cfg.train.label_smoothing,
                                terms=cfg.defense.terms, **cfg.defense.options)
    assert objective.name == recipe
    assert objective.weights and all(w > 0 for w in objective.weights.values())


def test_paper_schedules_match_the_papers():
    """Spot checks of the settings docs/paper_scale.md tabulates."""
    def cfg(dataset, recipe):
        return load_config(PAPER / dataset / f"{recipe}.yaml")

    madry = cfg("cifar10", "madry")  # Madry et al.: PGD-7 of 2/255, lr 0.1 / 10 at 100, 150 of 200
    assert (madry.train.epochs, madry.optim.lr, madry.schedule.milestones) == (200, 0.1, [0.5, 0.75])
    assert madry.defense.options["steps"] == 7
    assert math.isclose(madry.defense.options["step_size"], 2 / 255)
    svhn = cfg("svhn", "agkd_bml")  # AGKD-BML Sec. 4.1: SVHN lr 0.01, decays at epochs 60 and 90
    assert svhn.optim.lr == 0.01
    assert [round(m * svhn.train.epochs) for m in svhn.schedule.milestones] == [60, 90]
    seven = cfg("cifar10", "agkd_bml_7")  # decays at 150, stops at 155
    assert seven.train.epochs == 155 and round(seven.schedule.milestones[0] * 155) == 150
    trades = cfg("cifar10", "trades")  # the authors' code: 76 epochs, lr 0.01 for the last 2
    assert trades.train.epochs == 76 and round(trades.schedule.milestones[0] * 76) == 74
    assert trades.defense.options == {"beta": 6.0, "steps": 10, "step_size": 0.007}
    assert cfg("cifar10", "cascade").data.batch_size == 64  # + 64 adversarial: m 128, k 64


def test_wrn28_10_forward_on_cifar_sized_images():
    torch.manual_seed(0)
    model = create_model("wrn28_10", num_classes=10, in_channels=3, image_size=32).eval()
    with torch.no_grad():
        out = model.forward_all(torch.rand(2, 3, 32, 32))
    assert out.logits.shape == (2, 10) and torch.isfinite(out.logits).all()
    assert out.features.shape[:2] == (2, 640)  # WRN-28-10's last stage: 64 x 10 channels
