"""Adversarial sets: adversarial examples saved once and evaluated later (on other models, for
transfer studies, or to reproduce a table without re-running a slow attack).

A set is one file: `x_adv` [N, C, H, W] in [0, 1], labels `y` [N] and metadata saying how it was
made (attack name and parameters, eps, norm, source model and checkpoint, seed, when, by which
robustlab version). It is written atomically and read with `weights_only=True`: a crafted file
cannot run code, it is refused with a `UserError`.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlab import __version__
from robustlab.errors import UserError
from robustlab.io import atomic_torch_save, plain_torch_load

FORMAT = "robustlab-adversarial-set/1"
REQUIRED = ("attack", "eps", "norm")
OPTIONAL = {"params": {}, "source": None, "checkpoint": None, "seed": None}
_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, key: str) -> None:
    """Metadata must survive `weights_only` loading: built-in values, lists, dicts, tensors."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise UserError(f"metadata key {k!r} under {key!r} must be a string")
            _check_plain(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{key}[{i}]")
    elif not isinstance(value, (*_PLAIN, Tensor)):
        raise UserError(
            f"metadata {key!r} is a {type(value).__name__}; use strings, numbers, booleans, None, "
            "lists, dicts or tensors (e.g. a model's `arch` dict, a checkpoint path as a string)"
        )


def _check_tensors(x_adv: Any, y: Any, where: str) -> None:
    if not isinstance(x_adv, Tensor) or not torch.is_floating_point(x_adv) or x_adv.dim() < 2:
        raise UserError(f"{where}: x_adv must be a float tensor [N, C, H, W] in [0, 1]")
    if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x_adv.shape[0] or y.is_floating_point():
        raise UserError(f"{where}: y must be an integer tensor [N] matching x_adv's {x_adv.shape[0]} images")
    if x_adv.numel() and (not torch.isfinite(x_adv).all() or x_adv.min() < 0 or x_adv.max() > 1):
        raise UserError(f"{where}: x_adv must hold finite values in [0, 1]")


def save_adversarial_set(path: str | Path, x_adv: Tensor, y: Tensor, meta: dict[str, Any]) -> Path:
    """Write `x_adv`, `y` and `meta` to `path` atomically; returns the path.

    `meta` needs `attack` (name), `eps` and `norm`; `params` (the attack's settings), `source`
    (the source model's `arch` dict), `checkpoint` (its path) and `seed` are optional. `created`
    (UTC, ISO 8601) and `robustlab_version` are added here.
    """
    _check_tensors(x_adv, y, "save_adversarial_set")
    if not isinstance(meta, dict):
        raise UserError(f"meta must be a dict, got {type(meta).__name__}")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise UserError(f"meta needs {', '.join(missing)} (what made the set), e.g. "
                        "{'attack': 'pgd', 'eps': 0.1, 'norm': 'linf', 'params': {'steps': 20}}")
    eps = meta["eps"]
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps):
        raise UserError(f"meta eps={meta['eps']!r} must be a number")
    full = {**OPTIONAL, **meta,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "robustlab_version": __version__}
    _check_plain(full, "meta")
    payload = {"format": FORMAT, "x_adv": x_adv.detach().cpu().contiguous(),
               "y": y.detach().cpu().contiguous(), "meta": full}
    return atomic_torch_save(payload, path)


def load_adversarial_set(path: str | Path) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Read a set written by `save_adversarial_set`: (x_adv, y, meta), on the CPU."""
    state = plain_torch_load(path, "adversarial set", "write it again with save_adversarial_set")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a robustlab adversarial set (format {FORMAT} expected)")
    if not isinstance(state.get("meta"), dict):
        raise UserError(f"{path} has no metadata dict; write it again with save_adversarial_set")
    _check_tensors(state.get("x_adv"), state.get("y"), str(path))
    return state["x_adv"], state["y"], state["meta"]
