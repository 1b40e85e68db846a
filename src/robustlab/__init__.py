"""robustlab: train, attack, detect and explain adversarially robust image classifiers.

For any nn.Module mapping [0, 1] images to logits:
`robustlab.evaluate(model, x, y, suite="papers", eps=..., out=DIR)` evaluates it
(`experiment.own_model.evaluate_model`), `robustlab.train(model, data, recipe="trades", ...)`
trains it with a recipe (`experiment.own_training.train_model`), and
`robustlab.defense("mart", eps=...)` is a recipe's loss for your own loop
(`experiment.own_loss.defense`).
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "defense", "evaluate", "train"]

# name -> (module on the top floor, attribute); `train` is the robustlab.train package, which is
# callable (train/__init__.py) and, once imported, an attribute of this module like any subpackage.
_API = {"evaluate": ("robustlab.experiment.own_model", "evaluate_model"),
        "train": ("robustlab.train", None),
        "defense": ("robustlab.experiment.own_loss", "defense")}


def __getattr__(name: str) -> Any:
    # PEP 562: the API lives on the top floor (experiment/); loading it on first use keeps
    # `import robustlab` cheap and lets every floor read __version__ without an import circle.
    if name in _API:
        module, attribute = _API[name]
        found = import_module(module)
        return found if attribute is None else getattr(found, attribute)
    raise AttributeError(f"module 'robustlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
