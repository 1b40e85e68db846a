"""A frozen teacher: the standard-trained model whose attention the student learns (AGKD-BML
Sec. 3.2.2: "pre-trained on the original clean images and fixed during training")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.models import Out


class FrozenTeacher(nn.Module):
    """Wraps a model so that it stays in eval mode with frozen parameters for its whole life:
    `train()` cannot switch it back, and its outputs are computed without a graph, so neither its
    weights nor its BN statistics can change."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.requires_grad_(False)
        self.train()  # i.e. eval, for the wrapper and the model

    def train(self, mode: bool = True) -> FrozenTeacher:
        # nn.Module.train would recurse into the model; the teacher's BN must keep its statistics.
        self.training = False
        self.model.eval()
        return self

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def forward_all(self, x: Tensor) -> Out:
        with torch.no_grad():
            return self.model.forward_all(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_all(x).logits
