"""Defense objectives: weighted sums of named paper-equation terms over one cached `Step`."""

from robustlab.defenses.objective import RECIPES, Objective, build_objective
from robustlab.defenses.step import Step
from robustlab.defenses.terms import TERMS

__all__ = ["RECIPES", "TERMS", "Objective", "Step", "build_objective"]
