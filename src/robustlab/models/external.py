"""A user's own model from a spec `package.module:factory` and a weights file.

The factory is a callable taking no arguments that returns the nn.Module, or the nn.Module class
itself; it is imported with the current directory on the path (as uvicorn and gunicorn import
their apps). Weights are a state_dict read with `torch.load(weights_only=True)` and matched key
by key, or a TorchScript file, which carries its own architecture and needs no factory.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from robustlab.errors import UserError
from robustlab.io import plain_torch_load

SPEC_FORM = "package.module:factory (a callable returning the nn.Module, or the nn.Module class)"


def load_model(spec: str | None, weights: str | Path | None = None) -> nn.Module:
    """The model `spec` names with `weights` loaded; or the TorchScript model `weights` holds."""
    if weights is not None and is_torchscript(weights):
        if spec is not None:
            raise UserError(f"{weights} is a TorchScript model, which carries its architecture: "
                            f"drop the model spec {spec!r} (or give a state_dict file)")
        try:
            return torch.jit.load(str(weights), map_location="cpu")
        except RuntimeError as exc:
            raise UserError(f"TorchScript file {weights} does not load: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    if spec is None:
        raise UserError(f"name the model as {SPEC_FORM}, or give a TorchScript file as its weights")
    model = build_model(spec)
    if weights is not None:
        load_weights(model, weights, spec)
    return model


def is_torchscript(path: str | Path) -> bool:
    """Whether `path` is a TorchScript archive (`torch.jit.save`): a zip whose record holds
    constants.pkl, which `torch.save` never writes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.count("/") == 1 and name.endswith("/constants.pkl") for name in archive.namelist())


def build_model(spec: str) -> nn.Module:
    """Import `spec`'s factory and call it (or return the nn.Module the spec names)."""
    module_name, sep, attr = spec.partition(":")
    if not (sep and module_name and attr) or ":" in attr:
        raise UserError(f"model spec {spec!r} must look like {SPEC_FORM}")
    with _current_dir_importable():
        target = _attribute(_import(module_name, spec), attr, spec)
        return _instantiate(target, spec)


@contextlib.contextmanager
def _current_dir_importable() -> Iterator[None]:
    """The current directory first on sys.path for the block (the console script lacks it)."""
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        yield
    finally:
        if added:
            sys.path.remove(here)


def _import(module_name: str, spec: str):
    try:
        return importlib.import_module(module_name)
    except (ImportError, SyntaxError) as exc:
        missing = getattr(exc, "name", None)
        where = (" (run from the folder that holds it, or put that folder on PYTHONPATH)"
                 if missing and module_name.startswith(missing) else "")
        raise UserError(f"cannot import {module_name!r} for model spec {spec!r}: "
                        f"{type(exc).__name__}: {exc}{where}") from None


def _attribute(obj, attr: str, spec: str):
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n))]
            raise UserError(f"model spec {spec!r}: {getattr(obj, '__name__', obj)!s} has no "
                            f"attribute {part!r}; callables there: {_few(public) or 'none'}")
        obj = getattr(obj, part)
    return obj


def _instantiate(target, spec: str) -> nn.Module:
    if isinstance(target, nn.Module):
        return target
    if not callable(target):
        raise UserError(f"model spec {spec!r} names a {type(target).__name__}, not a factory or "
                        "an nn.Module class")
    signature = inspect.signature(target)
    try:
        signature.bind()
    except TypeError:
        raise UserError(f"model spec {spec!r} needs arguments {signature}: point it at a factory "
                        "that takes none (def make(): return Net(num_classes=10))") from None
    model = target()
    if not isinstance(model, nn.Module):
        raise UserError(f"model spec {spec!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_weights(model: nn.Module, path: str | Path, spec: str) -> None:
    """Load the state_dict at `path` into `model`; any missing, unexpected or reshaped key is a
    UserError naming a few of them."""
    state = plain_torch_load(path, "state_dict", "save it again with torch.save(model.state_dict(), FILE)")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        keys = _few(list(state)) if isinstance(state, dict) else type(state).__name__
        raise UserError(f"{path} is not a state_dict (it holds {keys}): save model.state_dict() "
                        "alone, e.g. torch.save(model.state_dict(), FILE)")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {list(state[k].shape)} in the file, {list(v.shape)} in the model"
                for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = [f"{what} {_few(keys)}" for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("other shapes:", reshaped))
                if keys]
    if problems:
        raise UserError(f"weights {path} do not match the model of {spec!r}: {'; '.join(problems)}")
    model.load_state_dict(state)


def _few(names: Sequence[str], shown: int = 5) -> str:
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
