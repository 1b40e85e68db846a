"""robustlab: train, attack, detect and explain adversarially robust image classifiers.

`robustlab.evaluate(model, x, y, suite="papers", eps=..., out=DIR)` evaluates any nn.Module
mapping [0, 1] images to logits (`robustlab.experiment.own_model.evaluate_model`).
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate"]


def __getattr__(name: str) -> Any:
    # PEP 562: `evaluate` lives on the top floor (experiment/); loading it on first use keeps
    # `import robustlab` cheap and lets every floor read __version__ without an import circle.
    if name == "evaluate":
        return import_module("robustlab.experiment.own_model").evaluate_model
    raise AttributeError(f"module 'robustlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "evaluate"])
