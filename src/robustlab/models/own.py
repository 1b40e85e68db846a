"""A user's own nn.Module as a trainable robustlab model: `model.name: external`.

The model comes from a spec `package.module:factory` (with optional starting weights), which a
checkpoint records so `robustlab eval RUN` rebuilds it in any process; or it is given as a
Python object to `robustlab.train`, which this process remembers by `given` (its class and
parameter shapes) so the stages a recipe trains first (a teacher, a Cascade source) start from a
copy of it. `HookedModel` / `HookedClassifier` give it `forward_all`, `num_classes` and `arch`.
"""

from __future__ import annotations

import copy
import hashlib

from torch import nn

from robustlab.errors import UserError
from robustlab.models.adapter import HookedClassifier, HookedModel
from robustlab.models.external import is_torchscript, load_model

EXTERNAL = "external"
# model.options of an external model: spec or given names it, weights start it, feature_layer
# gives recipes that read attention their feature map.
OPTIONS = ("spec", "weights", "feature_layer", "given")

_GIVEN: dict[str, nn.Module] = {}  # given key -> the model as it was given (a copy)


def remember(model: nn.Module, role: str = "model") -> str:
    """Keep a copy of `model` as given now (before training), replacing an earlier one of the
    same key, and return the key: its role ("model", "teacher"), class name and a digest of its
    parameter and buffer names and shapes (not values, so a resumed run given a trained or newly
    initialised object of the same architecture has the same key, and the same config)."""
    digest = hashlib.sha1(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    key = f"{type(model).__name__}-{role}-{digest.hexdigest()[:10]}"
    _GIVEN[key] = copy.deepcopy(model).cpu()
    return key


def check_options(options: dict) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UserError(f"model {EXTERNAL!r} takes no option {', '.join(map(repr, unknown))}; valid "
                        f"options: {', '.join(OPTIONS)}")
    if not options.get("spec") and not options.get("given"):
        raise UserError(f"model {EXTERNAL!r} needs model.options.spec=package.module:factory "
                        "(robustlab train --model), or a model given to robustlab.train")


def own_model(options: dict, *, num_classes: int, in_channels: int, image_size: int,
              initial_weights: bool = True) -> HookedModel:
    """The model `options` name (`OPTIONS`), wrapped; `initial_weights` False skips the starting
    weights file (a checkpoint's weights replace them)."""
    check_options(options)
    spec, weights = options.get("spec"), options.get("weights")
    if spec:
        if weights is not None and is_torchscript(weights):
            raise UserError(f"{weights} is a TorchScript model, which cannot be trained here: give "
                            "the model's Python class as --model package.module:factory and its "
                            "weights as a state_dict")
        model = load_model(spec, weights if initial_weights else None)
    elif options["given"] in _GIVEN:
        model = copy.deepcopy(_GIVEN[options["given"]])
    else:
        raise UserError(f"this run's model ({options['given'].split('-')[0]}) was given to "
                        "robustlab.train as a Python object, which another process cannot rebuild: "
                        "evaluate it with robustlab.evaluate(model, ...), or train it with "
                        "model='package.module:factory'")
    feature_layer = options.get("feature_layer")
    wrapped = HookedClassifier(model, feature_layer) if feature_layer else HookedModel(model)
    wrapped.num_classes = num_classes
    wrapped.arch = {"name": EXTERNAL, "class": type(model).__name__,
                    **{k: options.get(k) for k in OPTIONS if k != "weights"},
                    "num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    return wrapped


def rebuild(arch: dict) -> HookedModel:
    """The model a checkpoint's `arch` names, with fresh weights for the checkpoint's to replace."""
    options = {k: arch.get(k) for k in OPTIONS if k != "weights"}
    return own_model(options, num_classes=arch["num_classes"], in_channels=arch["in_channels"],
                     image_size=arch["image_size"], initial_weights=False)
