"""Attack losses: per-sample values [B] that the attack *increases*.

Untargeted losses push away from y; targeted ones (target given) pull towards the target.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn.functional as F
from torch import Tensor

AttackLoss = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def other_max(logits: Tensor, cls: Tensor) -> Tensor:
    """max_{j != cls} z_j (of logits or of probabilities)."""
    return logits.masked_fill(F.one_hot(cls, logits.shape[1]).bool(), float("-inf")).amax(1)


def _at(logits: Tensor, cls: Tensor) -> Tensor:
    return logits.gather(1, cls[:, None]).squeeze(1)


def ce(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Cross-entropy: CE(z, y) untargeted (FGSM/PGD, Goodfellow et al. 2015, Madry et al. 2018);
    -CE(z, t) targeted (step_ll / iter_ll descend the loss of the target, Kurakin et al. 2017)."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def cw_margin(logits: Tensor, y: Tensor, target: Tensor | None = None, kappa: float = 0.0) -> Tensor:
    """Carlini & Wagner (2017) margin, eq. f6, negated to be increased:
    min(max_{j!=y} z_j - z_y, kappa) untargeted; min(z_t - max_{j!=t} z_j, kappa) targeted."""
    if target is None:
        margin = other_max(logits, y) - _at(logits, y)
    else:
        margin = _at(logits, target) - other_max(logits, target)
    return margin.clamp(max=kappa)


def dlr(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of logits ratio (Croce & Hein 2020, eq. 4 and its targeted form), to increase:
    -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3); targeted -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2)."""
    top = logits.sort(1, descending=True).values
    if target is None:
        return -(_at(logits, y) - other_max(logits, y)) / (top[:, 0] - top[:, 2] + 1e-12)
    scale = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12
    return -(_at(logits, y) - _at(logits, target)) / scale


def kl_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Per-sample KL(p || q) = sum_c p_c (log p_c - log q_c) from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(1)


def kl(logits: Tensor, y: Tensor, target: Tensor | None = None, *, reference: Tensor) -> Tensor:
    """KL(p(x) || p(x')) with log p(x) = `reference` fixed: TRADES's inner maximisation
    (Zhang et al. 2019, eq. 5); y and target are unused. Its gradient vanishes at x' = x, so it
    needs a random start."""
    return kl_divergence(reference, logits.log_softmax(1))


# name -> factory(**params) -> AttackLoss. "kl" also needs `reference` (the clean
# log-probabilities), which PGD computes itself.
LOSSES: dict[str, Callable[..., AttackLoss]] = {
    "ce": lambda: ce,
    "cw": lambda kappa=0.0: partial(cw_margin, kappa=kappa),
    "dlr": lambda: dlr,
    "kl": lambda reference: partial(kl, reference=reference),
}


def is_adversarial(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """[B] bool: misclassified (untargeted) or classified as the target (targeted)."""
    pred = logits.argmax(1)
    return pred != y if target is None else pred == target
