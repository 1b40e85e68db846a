"""The `Classifier` contract every model follows, input normalization, and `create_model`.

A model is three modules run in order, with the input normalization in front:

    x in [0, 1] -> normalize -> body -> features [B, C, h, w] -> embedding -> [B, D] -> classifier -> [B, K]

Subclasses only build `body`, `embedding` and `classifier`; the forward logic lives here once, so
every model answers `features` / `embed` / `head` / `forward_all` the same way (timm's
`forward_features` / `forward_head(pre_logits=True)` split, with the feature map kept for
attention maps and Grad-CAM).
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from robustlab.errors import UserError
from robustlab.registry import Registry


class Out(NamedTuple):
    """All outputs of one forward pass: logits [B, K], embedding [B, D], features [B, C, h, w]
    (a `HookedModel` of a plain nn.Module leaves those it has no layer for None)."""

    logits: Tensor
    embedding: Tensor
    features: Tensor

    def rows(self, which: slice) -> Out:
        """The outputs of the images `which` (a slice of the batch)."""
        return Out(*(None if part is None else part[which] for part in self))


class Normalize(nn.Module):
    """Per-channel `(x - mean) / std` on inputs in [0, 1].

    mean and std are buffers, so they travel with the weights in `state_dict` and a checkpoint
    always normalizes the way it was trained; eps stays in the [0, 1] input scale.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]))
        self.register_buffer("std", torch.tensor([float(s) for s in std]))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class Classifier(nn.Module):
    """Base of every model: `normalize -> body -> embedding -> classifier`.

    Args:
        body: input [B, in_channels, H, W] (normalized) -> last conv feature map [B, C, h, w].
        embedding: feature map -> penultimate embedding [B, D].
        classifier: one `nn.Linear(D, num_classes)`.
        in_channels: image channels; the normalization starts as the identity
            (`create_model` sets mean/std).
        feature_channels: C of the body's output.
    """

    def __init__(
        self,
        body: nn.Module,
        embedding: nn.Module,
        classifier: nn.Linear,
        *,
        in_channels: int,
        feature_channels: int,
    ):
        super().__init__()
        self.normalize = Normalize([0.0] * in_channels, [1.0] * in_channels)
        self.body = body
        self.embedding = embedding
        self.classifier = classifier
        self.num_classes = classifier.out_features
        self._feature_channels = feature_channels
        # Filled by create_model; checkpoints compare it to refuse another architecture's weights.
        self.arch: dict[str, Any] = {}

    @property
    def embedding_dim(self) -> int:
        return self.classifier.in_features

    @property
    def feature_channels(self) -> int:
        return self._feature_channels

    def features(self, x: Tensor) -> Tensor:
        """Last conv feature map [B, C, h, w] of inputs x in [0, 1]."""
        return self.body(self.normalize(x))

    def embed(self, f: Tensor) -> Tensor:
        """Penultimate embedding [B, D] of a feature map from `features`."""
        return self.embedding(f)

    def head(self, e: Tensor) -> Tensor:
        """Logits [B, K] of an embedding from `embed`."""
        return self.classifier(e)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(self.features(x)))

    def forward_all(self, x: Tensor) -> Out:
        """Logits, embedding and feature map from one pass (each module runs once)."""
        f = self.features(x)
        e = self.embed(f)
        return Out(self.head(e), e, f)



class PooledClassifier(Classifier):
    """A conv body with a global-average-pooled embedding and a linear head, initialised as the
    ResNet / WRN papers' reference code does (`init_weights`): the shared tail of the residual
    models."""

    def __init__(self, body: nn.Module, *, feature_channels: int, num_classes: int, in_channels: int):
        super().__init__(
            body,
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            nn.Linear(feature_channels, num_classes),
            in_channels=in_channels,
            feature_channels=feature_channels,
        )
        init_weights(self)

MODELS: Registry[Classifier] = Registry("model")

ACTIVATIONS = ("relu", "leaky_relu")


def make_activation(name: str, negative_slope: float) -> nn.Module:
    """The model option `activation`: ReLU, or Leaky-ReLU with `negative_slope` (PDM App. B trains
    with Leaky-ReLU(0.1): a unit below zero still passes a gradient, so an embedding pushed
    towards one point (PDM's reduce-variance loss) cannot die there as a ReLU's all-zero one can)."""
    require(name in ACTIVATIONS, f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}")
    require(0 <= negative_slope < 1, f"negative_slope must be in [0, 1), got {negative_slope}")
    return nn.ReLU() if name == "relu" else nn.LeakyReLU(negative_slope)

# The positional part of every factory's signature; everything after it is a model kwarg.
_COMMON = ("num_classes", "in_channels", "image_size")


def require(ok: bool, message: str) -> None:
    """Raise `UserError(message)` unless ok (argument checks inside model constructors)."""
    if not ok:
        raise UserError(message)


def require_feature_size(name: str, image_size: int, size_of: Callable[[int], int]) -> int:
    """Return the side of the last feature map, refusing inputs that leave it below 2x2.

    A 1x1 (or empty) map still classifies but makes attention maps and Grad-CAM meaningless, so
    the smallest accepted input is the one giving 2x2; the error names it.
    """
    side = size_of(image_size)
    if side < 2:
        smallest = next(s for s in range(1, 4097) if size_of(s) >= 2)
        raise UserError(
            f"image_size {image_size} is too small for model {name!r}: its last feature map would "
            f"be {max(side, 0)}x{max(side, 0)}; use image_size >= {smallest} (or another model)"
        )
    return side


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a convolution or pooling layer (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def init_weights(model: nn.Module) -> None:
    """He et al. 2015 (kaiming normal, fan_out) for convs, BN to the identity, zero linear bias:
    the init of the ResNet and WRN papers' reference code."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def halved(size: int, times: int) -> int:
    """Side after `times` stride-2 3x3 convs with padding 1 (ceil(size / 2) each)."""
    for _ in range(times):
        size = conv_out(size, 3, 2, 1)
    return size


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UserError(f"{key} must be a positive integer, got {value!r}")
    return int(value)  # numpy integers become ints, so `arch` stays JSON-serialisable


def _check_stats(key: str, values: Any, in_channels: int) -> list[float]:
    # Lists, tuples, numpy arrays and 1-d tensors all have a length; a bare number does not.
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not _sized(values):
        raise UserError(
            f"{key} must be a list of {in_channels} numbers (one per input channel), got {values!r}"
        )
    if len(values) != in_channels:
        raise UserError(
            f"{key} has {len(values)} values but the model has in_channels={in_channels}; "
            f"give one value per channel"
        )
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise UserError(f"{key} must hold numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise UserError(f"{key} must hold finite numbers, got {values!r}")
    return out


def _sized(values: Any) -> bool:
    try:
        len(values)
    except TypeError:  # 0-d arrays and tensors
        return False
    return True


def _option(model: str, key: str, value: Any, default: Any) -> Any:
    """`value` converted to the type of the option's default, or a UserError.

    Any integer is accepted for an int option and any real number for a float one, stored as
    int / float so `arch` compares equal however the number was written (1 or 1.0, numpy or not).
    """
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
    else:
        ok, kind = isinstance(value, type(default)), f"a {type(default).__name__}"
    if not ok:
        raise UserError(f"option {key!r} of model {model!r} must be {kind}, got {value!r}")
    return type(default)(value)


def _check_kwargs(name: str, factory: Callable[..., Any], kw: dict[str, Any]) -> dict[str, Any]:
    """Resolve a model's kwargs against its factory signature: unknown names and wrong types are
    UserErrors; defaults are filled in so equal architectures get equal `arch` dicts."""
    params = {p.name: p for p in inspect.signature(factory).parameters.values() if p.name not in _COMMON}
    unknown = sorted(set(kw) - set(params))
    if unknown:
        valid = ", ".join(params) or "none"
        raise UserError(
            f"model {name!r} takes no option {', '.join(map(repr, unknown))}; valid options: {valid}"
        )
    resolved = {}
    for key, p in params.items():
        # Factories give every option a default; its type is the option's type.
        resolved[key] = _option(name, key, kw[key], p.default) if key in kw else p.default
    return resolved


def complete_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """A saved `arch` with every option its factory has now filled in with the default, so a
    checkpoint written before an option existed (e.g. `activation`) still names its model."""
    if arch.get("name") not in MODELS:
        return dict(arch)
    factory = MODELS.get(arch["name"])
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()
                if p.name not in _COMMON}
    return {**defaults, **arch}


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 1,
    image_size: int = 28,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kw: Any,
) -> Classifier:
    """Build registered model `name` for images [in_channels, image_size, image_size] in [0, 1].

    mean/std (one value per channel) set the normalization inside the model; without them it is
    the identity. Model options (`width`, `depth`, ...) go in `kw`. The result's `arch` holds the
    name, the three sizes and every option with defaults filled in (JSON-serialisable);
    `create_model(**arch)` with `name=arch["name"]` rebuilds the same architecture.
    """
    factory = MODELS.get(name)
    num_classes = _integer("num_classes", num_classes)
    in_channels = _integer("in_channels", in_channels)
    image_size = _integer("image_size", image_size)
    options = _check_kwargs(name, factory, kw)
    mean_values = _check_stats("mean", [0.0] * in_channels if mean is None else mean, in_channels)
    std_values = _check_stats("std", [1.0] * in_channels if std is None else std, in_channels)
    if not all(s > 0 for s in std_values):
        raise UserError(f"std must be positive in every channel, got {std_values}")
    model = factory(num_classes, in_channels, image_size, **options)
    model.normalize = Normalize(mean_values, std_values)
    model.arch = {
        "name": name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": image_size,
        **options,
    }
    return model
