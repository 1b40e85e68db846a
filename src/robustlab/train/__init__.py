"""Training: the fit loop, checkpoints, optimizers and schedules, distributed set-up."""

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
