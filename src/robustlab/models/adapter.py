"""Any nn.Module seen through the `Classifier` contract, by forward hooks.

A plain model mapping [0, 1] images to logits has no `features` / `embed` / `head` /
`forward_all`; A3, the Grad-CAM code and the training loop need them. `HookedModel(model,
feature_layer=None)` gives `forward_all` (what `fit` and the loss terms read), with the
embedding and feature map None where the model has no such layer.
`HookedClassifier(model, feature_layer)` answers the contract as pytorch-grad-cam reads its
target layers: the feature map is the output of the named submodule, the embedding is the input
of the last `nn.Linear` (the head). `embed(f)` and `head(e)` rerun the model on the input of the
last `features` call with that layer's output (or the head's input) replaced by `f` (or `e`), so
every call keeps the graph the contract promises; when they are given the very tensors that pass
recorded (A3's differentiable step), the recorded results are returned and a step costs one
forward, as with a `Classifier`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from robustlab.errors import UserError
from robustlab.models.base import Out

CONTRACT = ("features", "embed", "head")


def offers_contract(model: nn.Module) -> bool:
    """Whether `model` answers the `Classifier` contract (features / embed / head) itself."""
    return all(callable(getattr(model, name, None)) for name in CONTRACT)


def submodule(model: nn.Module, name: str, what: str = "layer") -> nn.Module:
    """`model`'s submodule called `name` (as in `named_modules()`), or a UserError listing some."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        names = [n for n in modules if n]
        shown = ", ".join(names[:12]) + (f" (+{len(names) - 12} more)" if len(names) > 12 else "")
        raise UserError(f"{what} {name!r} is not a module of {type(model).__name__}; "
                        f"its modules: {shown or 'none'}")
    return modules[name]


def last_linear(model: nn.Module, required: bool = True) -> str | None:
    """The name of the last `nn.Linear` registered in `model` (its classifier, by convention);
    None for a model without one unless `required`."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names and not required:
        return None
    if not names:
        raise UserError(f"{type(model).__name__} has no nn.Linear, so it has no embedding (the "
                        "input of its last linear layer): name its classifier with head_layer=")
    return names[-1]


class _Pass(NamedTuple):
    """One recorded forward: its input, the feature map, the embedding and the logits."""

    x: Tensor
    features: Tensor | None
    embedding: Tensor | None
    logits: Tensor


@contextlib.contextmanager
def _hooked(*handles: RemovableHandle) -> Iterator[None]:
    try:
        yield
    finally:  # the user's model must not keep our hooks, even when its forward raised
        for handle in handles:
            handle.remove()


class HookedModel(nn.Module):
    """`model` with `forward_all(x)` = Out(logits, embedding, features) from one forward: the
    embedding is the input of `head_layer` (default: the last nn.Linear; None when the model has
    none), the feature map the output of `feature_layer` (None without one). This is how any
    nn.Module trains with a recipe (`robustlab.train`): a recipe's terms read the embedding
    (SML, BML, PDM) or the feature map (AGKD, ATAT, AAD) only where the layer exists, which
    `Objective.reads` lets the trainer check before the first step.

    `num_classes` and `arch` (what a checkpoint records to rebuild it) are set by
    `models.own.own_model`.
    """

    def __init__(self, model: nn.Module, feature_layer: str | None = None, head_layer: str | None = None):
        super().__init__()
        _refuse_script(model)
        self.model = model
        self.feature_layer = feature_layer
        self.head_layer = head_layer or last_linear(model, required=False)
        self._feature_module = submodule(model, feature_layer, "feature layer") if feature_layer else None
        self._head_module = submodule(model, self.head_layer, "head layer") if self.head_layer else None
        self._last: _Pass | None = None
        self.num_classes: int | None = None
        self.arch: dict = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def forward_all(self, x: Tensor) -> Out:
        """Logits, embedding and feature map (None where the layer is not named) from one forward."""
        done = self._run(x)
        self._last = None
        return Out(done.logits, done.embedding, done.features)

    def _run(self, x: Tensor, features: Tensor | None = None, embedding: Tensor | None = None) -> _Pass:
        """A forward recording (or, when given, substituting) the feature map and the embedding."""
        box: dict[str, list[Tensor]] = {"features": [], "embedding": []}

        def on_features(module, inputs, output):
            if features is not None:
                output = _same_shape(features, output, f"feature layer {self.feature_layer!r}")
            box["features"].append(output)
            return output

        def on_head(module, inputs):
            value = inputs[0] if embedding is None else _same_shape(embedding, inputs[0], "embedding")
            box["embedding"].append(value)
            return (value, *inputs[1:])

        handles = []
        if self._feature_module is not None:
            handles.append(self._feature_module.register_forward_hook(on_features))
        if self._head_module is not None:
            handles.append(self._head_module.register_forward_pre_hook(on_head))
        with _hooked(*handles):
            logits = self.model(x)
        self._last = _Pass(x, self._one(box, "features", self.feature_layer),
                           self._one(box, "embedding", self.head_layer), logits)
        if self.feature_layer is not None:
            _check_feature_map(self._last.features, self.feature_layer)
        return self._last

    def _one(self, box: dict[str, list[Tensor]], key: str, layer: str | None) -> Tensor | None:
        """The one value a hook saw (None for a layer not named); a layer that did not run, or
        ran twice (a module shared between places), has no single value to stand for."""
        if layer is None:
            return None
        if len(box[key]) != 1:
            raise UserError(f"layer {layer!r} ran {len(box[key])} times in one forward of "
                            f"{type(self.model).__name__}: name a module that runs exactly once")
        return box[key][0]


class HookedClassifier(HookedModel):
    """`model` with `features(x)` = the output of `feature_layer` [B, C, h, w], `embed(f)` = the
    input of `head_layer` (default: the last nn.Linear) [B, D], `head(e)` = the logits.

    `forward` is the model's own. `embed` / `head` need the `features` call of the same batch
    before them (every caller of the contract works that way: features -> embed -> head).
    """

    def __init__(self, model: nn.Module, feature_layer: str, head_layer: str | None = None):
        _refuse_script(model)
        super().__init__(model, feature_layer, head_layer or last_linear(model))

    def features(self, x: Tensor) -> Tensor:
        return self._run(x).features

    def embed(self, f: Tensor) -> Tensor:
        last = self._pending("embed")
        return (last if f is last.features else self._run(last.x, features=f)).embedding

    def head(self, e: Tensor) -> Tensor:
        last = self._pending("head")
        done = last if e is last.embedding else self._run(last.x, embedding=e)
        self._last = None  # the pass ends here: keep no graph alive between batches
        return done.logits

    def _pending(self, name: str) -> _Pass:
        if self._last is None:
            raise RuntimeError(f"HookedClassifier.{name} needs features(x) of the same batch first")
        return self._last


def _refuse_script(model: nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise UserError("a TorchScript model runs no Python hooks, so a feature layer cannot "
                        "be read from it: load its Python class (a factory and a state_dict)")


def _same_shape(given: Tensor, recorded: Tensor, what: str) -> Tensor:
    if given.shape != recorded.shape:
        raise UserError(f"{what}: got shape {tuple(given.shape)}, the model makes "
                        f"{tuple(recorded.shape)}")
    return given


def _check_feature_map(features: Tensor, layer: str) -> None:
    if not isinstance(features, Tensor) or features.dim() != 4:
        shape = tuple(getattr(features, "shape", ()))
        raise UserError(f"feature layer {layer!r} gives {type(features).__name__} {shape}, not a "
                        "[B, C, h, w] feature map: name a convolutional layer (Grad-CAM and A3 "
                        "need a spatial map)")
