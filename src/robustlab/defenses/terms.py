"""Loss terms: one function per paper equation, each `(step, **params) -> scalar`."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robustlab.defenses.step import Step
from robustlab.registry import Registry

TERMS: Registry = Registry("loss term")


@TERMS.register("clean_ce", paper="standard training; label smoothing: Szegedy et al. 2016 eq. (3)")
def clean_ce(step: Step, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy on clean inputs, optionally against smoothed labels
    q = (1 - s) one_hot(y) + s / K (Szegedy et al. 2016, Sec. 7)."""
    return F.cross_entropy(step.clean.logits, step.y, label_smoothing=label_smoothing)
