"""Training: the fit loop, checkpoints, optimizers and schedules, distributed set-up."""

from robustlab.train.checkpoint import (
    check_architecture,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from robustlab.train.device import resolve_device
from robustlab.train.distributed import DistInfo, dist_from_env, init_distributed
from robustlab.train.fit import Callback, Interrupted, Run, TrainData, fit
from robustlab.train.monitors import accuracy

__all__ = [
    "Callback", "DistInfo", "Interrupted", "Run", "TrainData", "accuracy", "check_architecture",
    "dist_from_env", "fit", "init_distributed", "load_checkpoint", "load_weights", "resolve_device",
    "save_checkpoint",
]
