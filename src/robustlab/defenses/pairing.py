"""PDM's Siamese mini-batch construction (Rozenberg, Elidan and El-Yaniv, Alg. 1 lines 5-14)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.data.class_index import ClassIndex
from robustlab.defenses.step import Prepared, Siamese
from robustlab.errors import UserError, check_ranges


@dataclass
class SiamesePairing(Prepared):
    """For each image of class y: with probability `same_prob` (Q) a random training sample of
    class y (similarity label 1), else one of a uniformly random other class (label 0).

    `class_index` (the training split by class) comes from `prepare`; the draws use torch's
    global generator, which checkpoints save, so a resumed run draws the same counterparts.
    """

    same_prob: float = 0.5
    num_classes: int | None = None
    class_index: ClassIndex | None = None

    def __post_init__(self) -> None:
        check_ranges([(0 <= self.same_prob <= 1, "same_prob", self.same_prob, "in [0, 1]")])

    def __call__(self, x: Tensor, y: Tensor) -> Siamese:
        if self.class_index is None:
            raise UserError("Siamese pairing needs the training set's class index to draw "
                            "counterparts; it is handed over by Objective.prepare")
        k = self.num_classes or len(self.class_index.counts)
        if k < 2:
            raise UserError("Siamese pairing needs at least two classes")
        same = torch.rand(len(y), device=y.device) < self.same_prob
        shift = torch.randint(1, k, (len(y),), device=y.device)
        partner_y = torch.where(same, y, (y + shift) % k)
        partner_x = self.class_index.sample_of_classes(partner_y).to(x.dtype)
        return Siamese(partner_x, partner_y, same.to(x.dtype))
