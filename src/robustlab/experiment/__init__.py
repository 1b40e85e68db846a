"""The top floor: from a `Config` to objects, and the jobs the CLI runs.

`build` (config -> data, model, batches, objective, monitor; a saved run -> `Loaded`), `rundir`
(`RunDir`: every path of a run), `training` (the train job and its cached stages: teacher,
transfer source, Cascade source), and one module per other job: `evaluate`, `attack`, `detect`,
`explain`. These are the only modules that know every layer; the CLI parses arguments and
calls them.
"""

from robustlab.experiment.attack import attack_run
from robustlab.experiment.build import (
    Loaded,
    build_defense,
    build_model,
    load_data,
    load_run,
    make_batches,
    model_from_checkpoint,
    seed_everything,
    training_eps,
)
from robustlab.experiment.evaluate import evaluate_clean, evaluate_suite
from robustlab.experiment.rundir import RunDir
from robustlab.experiment.training import saved_teacher, train

__all__ = [
    "Loaded", "RunDir", "attack_run", "build_defense", "build_model", "evaluate_clean", "evaluate_suite",
    "load_data", "load_run", "make_batches", "model_from_checkpoint", "saved_teacher", "seed_everything",
    "train", "training_eps",
]
