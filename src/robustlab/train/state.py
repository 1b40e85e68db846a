"""What a resumable run carries between processes: optimizer, schedule, grad scaler, RNG states,
the running epoch sums, written at every epoch end and on SIGINT / SIGTERM."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.config import Config
from robustlab.errors import UserError
from robustlab.train.checkpoint import check_architecture, load_checkpoint
from robustlab.train.optim import build_optimizer, build_scheduler


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class Optimization:
    """The optimizer, its lr schedule, the fp16 grad scaler and the autocast context."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None

    @classmethod
    def build(cls, cfg: Config, model: nn.Module, device: torch.device, steps: int) -> Optimization:
        """For `steps` optimizer steps per epoch (Free AT replays each minibatch m times)."""
        tc = cfg.train
        optimizer = build_optimizer(cfg.optim, model)
        scheduler = build_scheduler(cfg.schedule, optimizer, tc.epochs, steps)
        if tc.amp == "fp16" and device.type != "cuda":
            raise UserError("train.amp=fp16 needs a CUDA device; use train.amp=bf16 or off")
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp)
        return cls(optimizer, scheduler, torch.amp.GradScaler(device.type, enabled=tc.amp == "fp16"),
                   amp_dtype)

    def autocast(self, device: torch.device):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def step(self, loss: Tensor, params, grad_clip: float | None, after_backward: Callable[[], None]) -> None:
        """Backward, the objective's after-backward hook, clipping, the optimizer and lr steps."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        after_backward()
        if grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # An fp16 overflow makes the scaler skip the optimizer step (and lower its scale); the
        # schedule then waits too, so it stays in step with the updates actually made.
        if scale is None or self.scaler.get_scale() >= scale:
            self.scheduler.step()


def training_state(run, model: nn.Module, opt: Optimization, objective, cfg: Config,
                   sums: dict[str, Tensor], device: torch.device) -> dict:
    """Everything `restore_state` needs to continue `run` exactly (save it with `save_checkpoint`)."""
    return {
        "arch": getattr(model, "arch", {}),
        "model": model.state_dict(),
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict(),
        "rng": _rng_state(device),
        "epoch": run.epoch,
        "batch": run.batch,
        "global_step": run.global_step,
        "best": run.best,
        "history": run.history,
        "sums": {k: v.detach().cpu() for k, v in sums.items()},
        "objective": objective.state_dict(),
        "config": cfg.to_dict(),
    }


def restore_state(path, run, model: nn.Module, opt: Optimization, objective,
                  device: torch.device) -> dict[str, Tensor]:
    """Load a `save_state` checkpoint into the run, model, optimizer and objective; the epoch sums."""
    state = load_checkpoint(path, map_location=device)
    check_architecture(state, model, f"checkpoint {path}")
    model.load_state_dict(state["model"])
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    opt.scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"], device)
    objective.load_state_dict(state.get("objective", {}))
    run.epoch, run.batch, run.global_step = state["epoch"], state["batch"], state["global_step"]
    run.best, run.history = state["best"], list(state["history"])
    return {k: v.to(device) for k, v in state["sums"].items()}
