"""One command for the whole comparison: `reproduce` trains and evaluates every recipe under a
budget and writes the results pages (docs/results.md, docs/results.html)."""

from robustlab.reproduce.plan import BUDGETS, DETECTED, RECIPES, Budget
from robustlab.reproduce.run import recipe_config, reproduce

__all__ = ["BUDGETS", "DETECTED", "RECIPES", "Budget", "recipe_config", "reproduce"]
