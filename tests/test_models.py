"""Contract tests for every model in the registry (robustlab.models)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from robustlab.errors import UserError
from robustlab.models import MODELS, Classifier, Normalize, Out, create_model
from robustlab.models.preact_resnet import PreActBlock
from robustlab.models.resnet import BasicBlock

ALL = MODELS.names()
# Fixed-size presets with 36M-46M parameters: one image per pass keeps the file fast.
HEAVY = {"wrn28_10", "wrn34_10"}
# Small options for the configurable models: the code paths are the ones of the full-size
# models, the tests just run faster. The presets without size options run at full size.
SMALL: dict[str, dict] = {
    "small_cnn": {"width": 8, "embedding_dim": 16},
    "resnet": {"depth": 14, "width": 4},
    "resnet20": {"width": 4},
    "resnet32": {"width": 4},
    "resnet56": {"width": 4},
    "preact_resnet18": {"width": 4},
    "wide_resnet": {"depth": 10, "widen_factor": 2},
}
# Side of the feature map for 28x28 and 32x32 inputs.
FEATURE_SIDE = {
    "small_cnn": (7, 8),
    "lenet": (5, 5),
    "resnet": (7, 8),
    "resnet20": (7, 8),
    "resnet32": (7, 8),
    "resnet56": (7, 8),
    "preact_resnet18": (4, 4),
    "wide_resnet": (7, 8),
    "wrn28_10": (7, 8),
    "wrn34_10": (7, 8),
}
SIZES = [(1, 28), (3, 32)]


def build(name: str, in_channels: int = 3, image_size: int = 32, **kw) -> Classifier:
    torch.manual_seed(0)
    return create_model(name, 10, in_channels, image_size, **{**SMALL.get(name, {}), **kw})


def batch(name: str) -> int:
    return 1 if name in HEAVY else 2


def test_every_model_has_expectations():
    # A newly registered model must be added to the tables above, so it gets tested fully.
    assert set(FEATURE_SIDE) == set(ALL)


# The heavy presets share all code with wide_resnet, which runs at both sizes.
CASES = [(n, c, s) for n in ALL for c, s in SIZES if n not in HEAVY or c == 3]


@pytest.mark.parametrize("name,in_channels,image_size", CASES)
def test_forward_paths_agree_and_have_contract_shapes(name, in_channels, image_size):
    model = build(name, in_channels, image_size).eval()
    x = torch.rand(batch(name), in_channels, image_size, image_size)
    parts = ("body", "embedding", "classifier")
    calls = dict.fromkeys(parts, 0)
    for key in parts:
        getattr(model, key).register_forward_hook(lambda *_, key=key: calls.__setitem__(key, calls[key] + 1))
    with torch.no_grad():
        logits = model(x)
        calls.update(dict.fromkeys(parts, 0))
        out = model.forward_all(x)
        # One pass: forward_all must not re-run any part of the model.
        assert calls == {"body": 1, "embedding": 1, "classifier": 1}
        f = model.features(x)
        e = model.embed(f)
        staged = model.head(e)
    assert isinstance(out, Out)
    b, side = x.shape[0], FEATURE_SIDE[name][SIZES.index((in_channels, image_size))]
    assert logits.shape == (b, 10)
    assert out.embedding.shape == (b, model.embedding_dim)
    assert out.features.shape == (b, model.feature_channels, side, side)
    assert model.num_classes == 10
    assert isinstance(model.classifier, nn.Linear)
    for a in (out.logits, staged):
        torch.testing.assert_close(a, logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.embedding, e, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.features, f, rtol=1e-5, atol=1e-6)
    # Rectified maps, as Grad-CAM and attention maps expect.
    assert out.features.min() >= 0
    assert torch.isfinite(logits).all()


# Parameter counts in millions as the papers print them (10 classes, 3x32x32): ResNet table 6,
# WRN table 1 and the 11.17M of PreAct ResNet-18 in the TRADES/fast-AT code; LeNet-5 on 1x32x32
# has 61,706 (0.061706M).
PAPER_PARAMS = {
    "resnet20": (3, "0.27"),
    "resnet32": (3, "0.46"),
    "resnet56": (3, "0.85"),
    "preact_resnet18": (3, "11.17"),
    "wrn28_10": (3, "36.5"),
    "wrn34_10": (3, "46.2"),
    "lenet": (1, "0.061706"),
}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_presets_have_the_papers_parameter_counts(name):
    in_channels, printed = PAPER_PARAMS[name]
    model = create_model(name, 10, in_channels, 32)
    count = sum(p.numel() for p in model.parameters())
    digits = len(printed.split(".")[1])
    assert f"{count / 1e6:.{digits}f}" == printed, count


def test_generic_factories_default_to_their_presets():
    for generic, preset in (("resnet", "resnet20"), ("wide_resnet", "wrn28_10")):
        a, b = create_model(generic, 10, 3, 32), create_model(preset, 10, 3, 32)
        shapes = {k: v.shape for k, v in a.state_dict().items()}
        assert shapes == {k: v.shape for k, v in b.state_dict().items()}


@pytest.mark.parametrize("name", sorted(set(ALL) - HEAVY))
def test_gradients_reach_the_input_and_every_parameter(name):
    # DDP fails on parameters that get no gradient; attacks need the input gradient. The heavy
    # presets are wide_resnet with fixed options, tested here at a small size.
    model = build(name, 1, 28).train()
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(set(ALL) - HEAVY))
def test_normalization_is_inside_the_model(name):
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    normalized = build(name, mean=mean, std=std).eval()
    identity = build(name).eval()
    weights = {k: v for k, v in normalized.state_dict().items() if not k.startswith("normalize.")}
    result = identity.load_state_dict(weights, strict=False)
    assert sorted(result.missing_keys) == ["normalize.mean", "normalize.std"]
    x = torch.rand(2, 3, 32, 32)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(normalized(x), identity((x - m) / s), rtol=1e-5, atol=1e-5)
        # The statistics matter: without them the outputs differ.
        assert not torch.allclose(normalized(x), identity(x), atol=1e-3)
    state = normalized.state_dict()
    assert state["normalize.mean"].tolist() == pytest.approx(mean)
    assert state["normalize.std"].tolist() == pytest.approx(std)


def test_normalize_module_and_identity_default():
    norm = Normalize([0.5, 0.25], [0.5, 2.0])
    x = torch.rand(3, 2, 4, 4)
    expected = torch.stack([(x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 2.0], dim=1)
    torch.testing.assert_close(norm(x), expected)
    model = create_model("lenet", 10)
    assert model.normalize.mean.tolist() == [0.0] and model.normalize.std.tolist() == [1.0]


@pytest.mark.parametrize("name", sorted(set(ALL) - HEAVY))
def test_arch_round_trips_through_json_and_create_model(name):
    model = build(name, 1, 28, mean=[0.3], std=[0.35])
    arch = json.loads(json.dumps(model.arch))
    assert arch == model.arch
    assert {"name": name, "num_classes": 10, "in_channels": 1, "image_size": 28}.items() <= (arch.items())
    rebuilt = create_model(**arch)
    assert rebuilt.arch == model.arch
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))


def test_arch_fills_defaults_and_tells_architectures_apart():
    assert create_model("small_cnn", 10).arch == create_model("small_cnn", 10, width=32).arch
    # An int for a float option is stored as a float, so the comparison does not depend on it.
    assert create_model("small_cnn", 10, dropout=0).arch["dropout"] == 0.0
    assert create_model("resnet", 10, depth=8).arch != create_model("resnet", 10, depth=14).arch
    assert create_model("resnet20", 10).arch != create_model("resnet", 10).arch
    assert create_model("lenet", 10, 1, 28).arch != create_model("lenet", 10, 1, 32).arch
    # Sizes read from numpy (dataset metadata) still give a JSON-serialisable arch.
    arch = create_model("small_cnn", np.int64(10), np.int64(1), width=np.int64(8)).arch
    assert json.loads(json.dumps(arch))["width"] == 8
    model = create_model("small_cnn", 10, 2, 28, mean=np.array([0.1, 0.2]), std=(1, 2))
    assert model.normalize.std.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("name", ALL)
def test_unknown_option_names_the_valid_ones(name):
    with pytest.raises(UserError, match="bogus") as info:
        create_model(name, 10, bogus=1)
    for option in SMALL.get(name, {}):
        assert option in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_smallest_image_size_is_named_and_accepted(name):
    with pytest.raises(UserError, match="too small") as info:
        create_model(name, 10, 1, 4, **SMALL.get(name, {}))
    smallest = int(re.search(r"image_size >= (\d+)", str(info.value)).group(1))
    with pytest.raises(UserError):
        create_model(name, 10, 1, smallest - 1, **SMALL.get(name, {}))
    if name in HEAVY:  # same size rule as wide_resnet, built below at a small width
        return
    model = build(name, 1, smallest).eval()
    with torch.no_grad():
        f = model.features(torch.rand(1, 1, smallest, smallest))
    assert f.shape[-2:] == (2, 2)


def test_small_inputs_follow_the_spec():
    create_model("small_cnn", 10, 1, 8)
    with pytest.raises(UserError, match="image_size >= 8"):
        create_model("small_cnn", 10, 1, 7)
    for name in ("resnet20", "wide_resnet"):
        create_model(name, 10, 3, 8, **SMALL[name])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "no_such_model"}, "small_cnn.*wrn28_10"),
        ({"name": "resnet", "depth": 21}, "6n \\+ 2"),
        ({"name": "resnet", "depth": 2}, "6n \\+ 2"),
        ({"name": "wide_resnet", "depth": 27}, "6n \\+ 4"),
        ({"name": "wide_resnet", "widen_factor": 0}, "widen_factor"),
        ({"name": "small_cnn", "width": 0}, "width"),
        ({"name": "small_cnn", "width": "wide"}, "must be an integer"),
        ({"name": "small_cnn", "width": True}, "must be an integer"),
        ({"name": "small_cnn", "width": 32.0}, "must be an integer"),
        ({"name": "small_cnn", "dropout": 1.0}, "dropout"),
        ({"name": "small_cnn", "mean": [0.5, 0.5]}, "in_channels=1"),
        ({"name": "small_cnn", "in_channels": 3, "std": [0.2]}, "in_channels=3"),
        ({"name": "small_cnn", "std": [0.0]}, "positive"),
        ({"name": "small_cnn", "mean": 0.5}, "list of 1"),
        ({"name": "small_cnn", "mean": ["a"]}, "numbers"),
        ({"name": "small_cnn", "num_classes": 0}, "num_classes"),
        ({"name": "small_cnn", "in_channels": 2.5}, "in_channels"),
        ({"name": "lenet", "image_size": 12}, "image_size >= 16"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, match):
    kwargs = {"num_classes": 10, **kwargs}
    with pytest.raises(UserError, match=match):
        create_model(**kwargs)


@pytest.mark.parametrize("name", ["small_cnn", "wide_resnet"])
def test_dropout_acts_in_training_only(name):
    model = build(name, 1, 28, dropout=0.5)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        model.train()
        assert not torch.allclose(model(x), model(x))
        model.eval()
        torch.testing.assert_close(model(x), model(x))


def test_resnet_block_adds_the_option_a_shortcut():
    # With the residual branch zeroed a block is its shortcut: subsampled, zero-padded identity.
    block = BasicBlock(4, 8, stride=2).eval()
    nn.init.zeros_(block.bn2.weight)
    x = torch.rand(2, 4, 5, 5)
    zeros = torch.zeros(2, 2, 3, 3)
    expected = torch.cat([zeros, x[:, :, ::2, ::2], zeros], dim=1)
    torch.testing.assert_close(block(x), expected)
    same = BasicBlock(4, 4, stride=1).eval()
    nn.init.zeros_(same.bn2.weight)
    torch.testing.assert_close(same(x), x)


def test_preact_block_adds_its_shortcut():
    # Identity shortcut on the raw input; the projection sees the pre-activated input, as in the
    # reference code of He et al. 2016b and of WRN.
    x = torch.randn(2, 4, 6, 6)
    same = PreActBlock(4, 4, stride=1).eval()
    nn.init.zeros_(same.conv2.weight)
    torch.testing.assert_close(same(x), x)
    wider = PreActBlock(4, 8, stride=2).eval()
    nn.init.zeros_(wider.conv2.weight)
    torch.testing.assert_close(wider(x), wider.projection(torch.relu(wider.bn1(x))))


@pytest.mark.parametrize("name", ["resnet", "preact_resnet18", "wide_resnet"])
def test_residual_models_use_the_papers_init(name):
    model = build(name)
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.weight.numel() >= 2000:
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            ratio = module.weight.std().item() / (2 / fan_out) ** 0.5
            assert 0.85 < ratio < 1.15, (module, ratio)
        elif isinstance(module, nn.BatchNorm2d):
            assert (module.weight == 1).all() and (module.bias == 0).all()
    assert (model.classifier.bias == 0).all()
