"""The paper-scale configs (configs/paper/<data set>/<recipe>.yaml, docs/paper_scale.md): each one
loads, names its recipe, data set and its paper's network, trains at its paper's eps, and its
options build the recipe's objective (a misspelt option is an error there, not at the first GPU
step)."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from robustlab.config import load_config
from robustlab.defenses import RECIPES
from robustlab.experiment import build_defense
from robustlab.models import create_model

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
CIFAR_SVHN = ("cifar10", "cifar100", "svhn")
DATASETS = (*CIFAR_SVHN, "mnist")
CONFIGS = sorted(p for p in PAPER.glob("*/*.yaml") if not p.name.startswith("_"))
NOT_PAPER_SCALE = {"distill"}  # distill copies a given model (PDM's black-box proxy)
# MNIST: only the recipes whose paper reports MNIST (PDM; AAD and its Madry / ALP baselines; the
# Cascade paper's Table 1, which has no cascade row).
MNIST_RECIPES = {"pdm", "rce", "siamese_rvl", "aad_madry", "aad_alp", "madry", "alp",
                 "kurakin", "bidirection", "pivot"}
# (classes, channels, image side) of each data set, for building the models.
SHAPE = {"cifar10": (10, 3, 32), "cifar100": (100, 3, 32), "svhn": (10, 3, 32), "mnist": (10, 1, 28)}

# The network each paper names; every other recipe trains WRN-28-10 (AGKD-BML's; ATAT's "Wide
# ResNet"; the baselines compared on one architecture).
PDM = {"pdm", "rce", "siamese_rvl"}       # PDM Sec. 4, App. B: ResNet-56, Leaky-ReLU(0.1)
CASCADE = {"kurakin", "bidirection", "pivot", "cascade"}  # the Cascade paper Sec. 3.3: ResNet-20
AAD_MNIST = {"aad_madry", "aad_alp", "madry", "alp"}      # AAD Sec. 5.1: LeNet on MNIST
LEAKY = {"activation": "leaky_relu", "negative_slope": 0.1}
TAG = {"wrn28_10": "wrn", "resnet56": "resnet56", "resnet20": "resnet20", "lenet": "lenet"}
# Labels smoothed by 0.5 over the wrong classes (AGKD-BML Sec. 4.1, the authors' code).
SMOOTHED = {"agkd_bml", "agkd_bml_7", "agkd", "bml"}


def expected_model(dataset: str, recipe: str) -> tuple[str, dict]:
    if recipe in PDM:
        return "resnet56", LEAKY
    if recipe in CASCADE:
        return "resnet20", {}
    if dataset == "mnist" and recipe in AAD_MNIST:
        return "lenet", {}
    return "wrn28_10", {}


def expected_eps(dataset: str, recipe: str) -> float:
    if recipe in CASCADE:  # the Cascade paper's max_e (Sec. 3.3): 32 on MNIST, 16 on CIFAR-10
        return 32 / 255 if dataset == "mnist" else 16 / 255
    return 0.3 if dataset == "mnist" else 8 / 255


def cfg_of(dataset: str, recipe: str):
    return load_config(PAPER / dataset / f"{recipe}.yaml")


def test_every_recipe_has_a_paper_config_for_every_data_set():
    assert sorted(p.name for p in PAPER.iterdir() if p.is_dir()) == sorted(DATASETS)
    recipes = set(RECIPES.names()) - NOT_PAPER_SCALE
    assert len(recipes) == 22 and MNIST_RECIPES <= recipes
    for dataset in DATASETS:
        assert (PAPER / dataset / "_base.yaml").is_file()
        want = MNIST_RECIPES if dataset == "mnist" else recipes
        assert {p.stem for p in (PAPER / dataset).glob("*.yaml")} - {"_base"} == want, dataset


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_paper_config_loads_and_builds_its_objective(path):
    dataset, recipe = path.parent.name, path.stem
    cfg = load_config(path)  # validates: a bad key, type or range is a UserError
    model, options = expected_model(dataset, recipe)
    assert (cfg.model.name, cfg.model.options) == (model, options)
    assert cfg.name == f"{recipe}_{dataset}_{TAG[model]}"
    assert cfg.data.name == dataset
    assert cfg.defense.recipe == recipe
    assert cfg.defense.eps is not None and math.isclose(cfg.defense.eps, expected_eps(dataset, recipe))
    assert cfg.defense.teacher is None and cfg.defense.source is None  # stages train on their own
    assert cfg.defense.init_from_teacher is (recipe == "atat")  # ATAT Sec. 3.2
    assert cfg.train.device == "auto"
    # AAD's MNIST setting (lr 0.001, optimizer not stated) is trained with Adam; the rest with SGD.
    assert cfg.optim.name == ("adam" if dataset == "mnist" and recipe in AAD_MNIST else "sgd")
    smoothed = recipe in SMOOTHED
    assert cfg.train.label_smoothing == (0.5 if smoothed else 0.0)
    assert cfg.train.label_smoothing_mode == ("wrong_classes" if smoothed else "all")
    # SVHN and MNIST train without augmentation (data.augment is crop + flip together; the
    # Cascade paper: none on MNIST); CIFAR crops and flips.
    assert cfg.data.augment is (None if dataset.startswith("cifar") else False)
    classes, channels, side = SHAPE[dataset]
    ds = SimpleNamespace(name=dataset, num_classes=classes, in_channels=channels, image_size=side)
    objective = build_defense(cfg, ds)  # the trainer's call: options, smoothing mode, terms
    assert objective.name == recipe
    assert objective.weights and all(w > 0 for w in objective.weights.values())
    if model != "wrn28_10":  # the small networks build, with their options, and run forward
        net = create_model(model, num_classes=classes, in_channels=channels, image_size=side,
                           **cfg.model.options).eval()
        with torch.no_grad():
            logits = net(torch.rand(2, channels, side, side))
        assert logits.shape == (2, classes) and torch.isfinite(logits).all()


def test_paper_schedules_match_the_papers():
    """Spot checks of the settings docs/paper_scale.md tabulates."""
    madry = cfg_of("cifar10", "madry")  # Madry et al.: PGD-7 of 2/255, lr 0.1 / 10 at 100, 150 of 200
    assert (madry.train.epochs, madry.optim.lr, madry.schedule.milestones) == (200, 0.1, [0.5, 0.75])
    assert madry.defense.options["steps"] == 7
    assert math.isclose(madry.defense.options["step_size"], 2 / 255)
    svhn = cfg_of("svhn", "agkd_bml")  # AGKD-BML Sec. 4.1: SVHN lr 0.01, decays at epochs 60 and 90
    assert svhn.optim.lr == 0.01
    assert [round(m * svhn.train.epochs) for m in svhn.schedule.milestones] == [60, 90]
    assert svhn.defense.options["normalization"] == "minmax"
    seven = cfg_of("cifar10", "agkd_bml_7")  # decays at 150, stops at 155
    assert seven.train.epochs == 155 and round(seven.schedule.milestones[0] * 155) == 150
    trades = cfg_of("cifar10", "trades")  # the authors' code: 76 epochs, lr 0.01 for the last 2
    assert trades.train.epochs == 76 and round(trades.schedule.milestones[0] * 76) == 74
    assert trades.defense.options == {"beta": 6.0, "steps": 10, "step_size": 0.007}

    atat = cfg_of("cifar10", "atat")  # ATAT Sec. 4.1, 4.3: PGD-7 of 2/255 = eps / 4, lambdas 1
    assert math.isclose(atat.defense.options["step_size"], atat.defense.eps / 4)
    assert (atat.defense.options["at_weight"], atat.defense.options["lp_weight"]) == (1.0, 1.0)

    for dataset, epochs in (("cifar10", 400), ("mnist", 80)):  # PDM App. B
        pdm = cfg_of(dataset, "pdm")
        assert (pdm.optim.lr, pdm.optim.weight_decay, pdm.data.batch_size) == (0.1, 0.002, 128)
        assert pdm.train.epochs == epochs and pdm.defense.options["variance_weight"] == 1.0

    aad = cfg_of("mnist", "aad_madry")  # AAD Sec. 5.1: LeNet, batch 100, lr 0.001, 5 epochs, PGD-40
    assert (aad.data.batch_size, aad.optim.lr, aad.train.epochs) == (100, 0.001, 5)
    assert aad.defense.options["steps"] == 40 and aad.defense.options["step_size"] == 0.01
    assert aad.defense.options["classification"] == "soft_margin"
    assert cfg_of("cifar10", "aad_alp").defense.options["classification"] == "soft_margin"

    # The Cascade paper Sec. 3.3: m 128 = 64 clean + 64 adversarial; wd 1e-4; lr / 10 at 4k and
    # 6k of 8k iterations on MNIST (60,000 images, last partial batch dropped), 48k / 72k of 94k
    # on CIFAR-10.
    assert cfg_of("cifar10", "cascade").data.batch_size == 64
    for recipe in ("kurakin", "bidirection", "pivot"):
        cfg = cfg_of("mnist", recipe)
        steps = cfg.train.epochs * (60_000 // cfg.data.batch_size)
        assert abs(steps - 8_000) < 500 and cfg.schedule.milestones == [0.5, 0.75], recipe
        assert cfg.optim.weight_decay == 0.0001
    kurakin = cfg_of("cifar10", "kurakin")
    assert abs(kurakin.train.epochs * (50_000 // 128) - 94_000) < 400
    assert [round(m * 94) for m in kurakin.schedule.milestones] == [48, 72]


def test_wrn28_10_forward_on_cifar_sized_images():
    torch.manual_seed(0)
    model = create_model("wrn28_10", num_classes=10, in_channels=3, image_size=32).eval()
    with torch.no_grad():
        out = model.forward_all(torch.rand(2, 3, 32, 32))
    assert out.logits.shape == (2, 10) and torch.isfinite(out.logits).all()
    assert out.features.shape[:2] == (2, 640)  # WRN-28-10's last stage: 64 x 10 channels
