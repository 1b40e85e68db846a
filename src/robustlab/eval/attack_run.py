"""One attack over a data set: robust accuracy, success rate, perturbation sizes, time."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm import tqdm

from robustlab.attacks.base import Attack
from robustlab.models.modes import eval_mode


@dataclass
class AttackResult:
    images: int
    clean_accuracy: float
    robust_accuracy: float
    success_rate: float  # of the clean-correct points, the fraction the attack turned wrong
    linf_mean: float
    linf_max: float
    l2_mean: float
    l2_max: float
    seconds: float
    x_adv: list[Tensor] = field(default_factory=list, repr=False)
    labels: list[Tensor] = field(default_factory=list, repr=False)
    # Per image, in input order: clean prediction right, adversarial prediction right, norms.
    per_sample: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("x_adv", "labels", "per_sample")}


def attack_batches(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], attack: Attack, *,
                   device: torch.device | str = "cpu", keep: bool = False,
                   progress: bool | None = None, desc: str = "attack") -> AttackResult:
    """Attack every batch; `keep` returns the adversarial images (on the CPU) for saving."""
    n = clean_ok = adv_ok = broken = 0
    linf, l2, clean_all, adv_all = [], [], [], []
    kept_x, kept_y = [], []
    start = time.perf_counter()
    total = len(batches) if hasattr(batches, "__len__") else None
    for x, y in tqdm(batches, total=total, desc=desc, unit="batch", disable=progress is False
                     if progress is not None else None, leave=False):
        x, y = x.to(device), y.to(device)
        x_adv = attack(model, x, y)
        with torch.no_grad(), eval_mode(model):
            clean = model(x).argmax(1) == y
            # robust = right before and after: an attack that "fixes" a wrong image (step_ll,
            # transfer) does not make it robust (AutoAttack's convention)
            adv = clean & (model(x_adv).argmax(1) == y)
        clean_all.append(clean.cpu())
        adv_all.append(adv.cpu())
        delta = (x_adv - x).flatten(1)
        linf.append(delta.abs().amax(1).cpu())
        l2.append(delta.norm(dim=1).cpu())
        n += len(y)
        clean_ok += int(clean.sum())
        adv_ok += int(adv.sum())
        broken += int((clean & ~adv).sum())
        if keep:
            kept_x.append(x_adv.cpu())
            kept_y.append(y.cpu())
    linf_all = torch.cat(linf) if linf else torch.zeros(0)
    l2_all = torch.cat(l2) if l2 else torch.zeros(0)
    return AttackResult(
        images=n, clean_accuracy=clean_ok / max(1, n), robust_accuracy=adv_ok / max(1, n),
        success_rate=broken / max(1, clean_ok),
        linf_mean=linf_all.mean().item() if n else 0.0, linf_max=linf_all.max().item() if n else 0.0,
        l2_mean=l2_all.mean().item() if n else 0.0, l2_max=l2_all.max().item() if n else 0.0,
        seconds=time.perf_counter() - start, x_adv=kept_x, labels=kept_y,
        per_sample={"clean": _cat(clean_all, torch.bool), "robust": _cat(adv_all, torch.bool),
                    "linf": linf_all, "l2": l2_all},
    )


def _cat(parts: list[Tensor], dtype: torch.dtype) -> Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)
