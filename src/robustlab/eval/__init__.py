"""Evaluation: attacks over data sets, tables of robust accuracy, gradient-masking checks
(`robustlab.eval.masking`)."""

from robustlab.eval.accuracy import accuracy
from robustlab.eval.attack_run import AttackResult, attack_batches

__all__ = ["AttackResult", "accuracy", "attack_batches"]
