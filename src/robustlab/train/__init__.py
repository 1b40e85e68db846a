"""Training: the fit loop, checkpoints, optimizers and schedules, distributed set-up.

The package is also callable: `robustlab.train(model, data, recipe="trades", ...)` trains any
nn.Module with a recipe (`robustlab.experiment.own_training.train_model`, on the top floor).
"""

import sys
import types
from importlib import import_module

from robustlab.train.checkpoint import (
    RunFiles,
    check_architecture,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from robustlab.train.device import resolve_device
from robustlab.train.distributed import DistInfo, dist_from_env, init_distributed
from robustlab.train.fit import Callback, Diverged, Interrupted, Run, TrainData, fit

__all__ = [
    "Callback", "DistInfo", "Diverged", "Interrupted", "Run", "RunFiles", "TrainData", "check_architecture",
    "dist_from_env", "fit", "init_distributed", "load_checkpoint", "load_weights", "resolve_device",
    "save_checkpoint",
]


class _CallablePackage(types.ModuleType):
    """This package, callable as `robustlab.train(model, data, ...)`."""

    def __call__(self, *args, **kwargs):
        # The API lives on the top floor; resolved on the first call, as `robustlab.evaluate` is
        # (PEP 562 in robustlab/__init__.py), so this floor imports nothing above it.
        return import_module("robustlab.experiment.own_training").train_model(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
