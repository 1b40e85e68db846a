"""Optimizers and learning-rate schedules (per optimizer step, with linear warmup)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from robustlab.config import OptimConfig, ScheduleConfig


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def lr_factor(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step `t` (0-based).

    Warmup is linear from 0 over `warmup_epochs`; then `constant`, `multistep` (x gamma at each
    milestone fraction of training), `cosine` (to final_lr_fraction) or `onecycle` (the warmup
    is the rise, then cosine decay; Smith & Topin 2019).
    """
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.name == "onecycle" and warmup == 0:
        warmup = max(1, int(0.3 * total_steps))  # one-cycle always rises first
    total = max(1, total_steps)
    low = cfg.final_lr_fraction

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        if cfg.name == "constant":
            return 1.0
        if cfg.name == "multistep":
            passed = sum(t >= int(m * total) for m in cfg.milestones)
            return cfg.gamma**passed
        progress = min(1.0, (t - warmup) / max(1, total - warmup))
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_scheduler(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, epochs: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(cfg, epochs * steps_per_epoch, steps_per_epoch)
    )
