"""Defense objectives: weighted sums of named paper-equation terms over one cached `Step`,
with the adversary that makes each recipe's training-time adversarial examples."""

from robustlab.defenses.adversaries import (
    AttackAdversary,
    BidirectionalAdversary,
    FreeAdversary,
    RandomEpsOneStep,
)
from robustlab.defenses.objective import Objective, TrainingObjective, make_terms
from robustlab.defenses.recipes import RECIPES, build_objective
from robustlab.defenses.step import Pairs, Step
from robustlab.defenses.teacher import FrozenTeacher
from robustlab.defenses.terms import TERMS, angular_distance, kl_divergence, triplet

__all__ = [
    "RECIPES", "TERMS", "AttackAdversary", "BidirectionalAdversary", "FreeAdversary", "FrozenTeacher",
    "Objective", "Pairs", "RandomEpsOneStep", "Step", "TrainingObjective",
    "angular_distance", "build_objective", "kl_divergence", "make_terms", "triplet",
]
