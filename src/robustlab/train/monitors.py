"""What training watches besides its loss: robust accuracy on a fixed held-out batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.eval.accuracy import accuracy


@dataclass
class RobustMonitor:
    """Accuracy under `attack` on one fixed held-out batch, every evaluated epoch.

    It raises the catastrophic-overfitting alarm when that accuracy falls more than `drop`
    below the best epoch so far: single-step training can lose all PGD robustness within an
    epoch while its training loss looks healthy (Wong et al. 2020, Sec. 5).
    """

    x: Tensor
    y: Tensor
    attack: Callable[[nn.Module, Tensor, Tensor], Tensor]
    drop: float = 0.20
    batch_size: int = 500

    def __call__(self, model: nn.Module, device: torch.device | str, history: list[dict]) -> dict:
        adversarial = []
        for start in range(0, len(self.y), self.batch_size):
            x = self.x[start:start + self.batch_size].to(device)
            y = self.y[start:start + self.batch_size].to(device)
            adversarial.append((self.attack(model, x, y), y))  # attacks restore the model's mode
        acc = accuracy(model, adversarial, device)
        record = {"robust_acc": acc}
        best = max((r["robust_acc"] for r in history if "robust_acc" in r), default=None)
        if best is not None and best - acc > self.drop:
            record["overfitting_alarm"] = (
                f"robust accuracy fell from {best:.3f} to {acc:.3f} (> {self.drop:.0%} drop): "
                "catastrophic overfitting (Wong et al. 2020); use checkpoints/best_robust.pt, a "
                "smaller step, or a multi-step attack"
            )
        return record
