"""The training loop: epochs of objective steps, evaluation, metrics, resumable checkpoints.

Resuming is exact on a fixed device and seed: data order and augmentation are functions of
(seed, epoch, batch) (see `robustlab.data.Batches`), and a checkpoint holds the weights,
optimizer, schedule, grad scaler, torch RNG states and the running epoch sums, written at every
epoch end and whenever the run is stopped by SIGINT / SIGTERM (at the next batch boundary).
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from robustlab.config import Config
from robustlab.defenses import Step
from robustlab.errors import UserError
from robustlab.interrupts import handling
from robustlab.train.checkpoint import check_architecture, load_checkpoint, save_checkpoint
from robustlab.train.distributed import DistInfo, all_reduce_sum
from robustlab.train.monitors import RobustMonitor, accuracy
from robustlab.train.optim import build_optimizer, build_scheduler

Objective = Callable[[Step], Mapping[str, Tensor]]


@dataclass
class TrainData:
    """The training batches and the named evaluation batches ("val", "test")."""

    train: Any  # robustlab.data.Batches (anything with len() and .epoch(e, start))
    evals: Mapping[str, Any] = field(default_factory=dict)
    monitor: RobustMonitor | None = None  # robust accuracy on a fixed held-out batch


@dataclass
class Run:
    run_dir: Path
    epochs: int
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch completed
    global_step: int = 0
    best: float | None = None
    history: list[dict] = field(default_factory=list)
    stop_requested: bool = False
    model: nn.Module | None = None  # the trained model (unwrapped), for callers and callbacks

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def finished(self) -> bool:
        return self.epoch >= self.epochs

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


class Interrupted(Exception):
    """Training stopped on request; the state at `checkpoint` resumes it exactly."""

    def __init__(self, run: Run):
        super().__init__(
            f"stopped at epoch {run.epoch + 1}, batch {run.batch}; state saved to "
            f"{run.last_checkpoint}; continue with --resume"
        )
        self.run = run


def say(line: str) -> None:
    """Default log: stdout, flushed so a redirected log shows each epoch as it ends."""
    print(line, flush=True)


class Callback:
    """Hooks into `fit`; subclass and override what you need."""

    def on_step(self, run: Run, metrics: dict[str, float]) -> None: ...

    def on_epoch(self, run: Run, record: dict) -> None: ...


def _stop_on_signals(run: Run):
    """SIGINT / SIGTERM ask the loop to save and stop at the next batch; a second SIGINT aborts."""

    def request_stop(signum, frame):
        if run.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        run.stop_requested = True
        print(f"\n{signal.Signals(signum).name}: saving state after this batch "
              "(Ctrl-C again aborts without saving)", file=sys.stderr, flush=True)

    return handling(request_stop)


class _AllOutputs(nn.Module):
    """Routes `forward_all` through `forward`, so DDP sees (and synchronises) the call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor):
        return self.model.forward_all(x)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class _Metrics:
    """Append-only metrics.jsonl, written by the main process only."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def fit(
    model: nn.Module,
    objective: Objective,
    data: TrainData,
    cfg: Config,
    *,
    device: torch.device,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    dist: DistInfo | None = None,
    log: Callable[[str], None] = say,
    teacher: nn.Module | None = None,
) -> Run:
    """Train `model` with `objective` for `cfg.train.epochs`; see the module docstring."""
    tc = cfg.train
    dist = dist or DistInfo()
    run = Run(run_dir=cfg.run_dir, epochs=tc.epochs, model=model)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    optimizer = build_optimizer(cfg.optim, model)
    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise UserError("the training set gives no batch: lower data.batch_size or raise data.train_limit")
    # Free AT replays each minibatch m times: m optimizer steps per batch.
    replays = getattr(objective, "replays", 1)
    adversary = getattr(objective, "adversary", None)
    scheduler = build_scheduler(cfg.schedule, optimizer, tc.epochs, steps_per_epoch * replays)
    if tc.amp == "fp16" and device.type != "cuda":
        raise UserError("train.amp=fp16 needs a CUDA device; use train.amp=bf16 or off")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.amp == "fp16")
    sums: dict[str, Tensor] = {}

    if resume and run.last_checkpoint.is_file():
        state = load_checkpoint(run.last_checkpoint, map_location=device)
        check_architecture(state, model, f"checkpoint {run.last_checkpoint}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], device)
        if hasattr(objective, "load_state_dict"):
            objective.load_state_dict(state.get("objective", {}))
        run.epoch, run.batch, run.global_step = state["epoch"], state["batch"], state["global_step"]
        run.best, run.history = state["best"], list(state["history"])
        sums = {k: v.to(device) for k, v in state["sums"].items()}
        log(f"resumed {run.run_dir} at epoch {run.epoch + 1}, batch {run.batch}")
        if run.epoch >= tc.epochs:
            log(f"run already finished ({run.epoch} of {tc.epochs} epochs)")
            return run

    def checkpoint_state() -> dict:
        return {
            "arch": getattr(model, "arch", {}),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(device),
            "epoch": run.epoch,
            "batch": run.batch,
            "global_step": run.global_step,
            "best": run.best,
            "history": run.history,
            "sums": {k: v.detach().cpu() for k, v in sums.items()},
            "objective": objective.state_dict() if hasattr(objective, "state_dict") else {},
            "config": cfg.to_dict(),
        }

    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            _AllOutputs(model), device_ids=[device.index] if device.type == "cuda" else None
        )
        forward_all = net
    else:
        forward_all = model.forward_all

    if dist.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
    metrics = _Metrics(run.run_dir / "metrics.jsonl", dist.is_main)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    best_key = "val_acc" if "val" in data.evals else "test_acc"

    with _stop_on_signals(run), deterministic_algorithms():
        while run.epoch < tc.epochs:
            model.train()
            epoch_start, seen_at_start = time.perf_counter(), sums.get("n", torch.zeros(())).item()
            bar = tqdm(
                total=steps_per_epoch, initial=run.batch, desc=f"epoch {run.epoch + 1}/{tc.epochs}",
                disable=None if dist.is_main else True, leave=False, unit="batch", dynamic_ncols=True,
            )
            # The batch's indices in the training split, for adversaries that look images up
            # (cascade training's saved images); Batches' order depends on the epoch only.
            order = data.train.indices(run.epoch) if hasattr(data.train, "indices") else None
            bs = getattr(data.train, "batch_size", 0)
            for x, y in data.train.epoch(run.epoch, start=run.batch):
                x = x.to(device, non_blocking=True, memory_format=memory_format)
                y = y.to(device, non_blocking=True)
                index = None if order is None else order[run.batch * bs: run.batch * bs + len(y)]
                for _ in range(replays):
                    step = Step(model, x, y, forward_all=forward_all, adversary=adversary,
                                teacher=teacher, pairing=getattr(objective, "pairing", None), index=index,
                                joint=getattr(objective, "joint", ()))
                    where = f"epoch {run.epoch + 1}, batch {run.batch} (step {run.global_step})"
                    terms = _train_step(step, objective, optimizer, scaler, scheduler, autocast, tc,
                                        where=where, last=run.last_checkpoint)

                n = torch.tensor(float(y.numel()), device=device)
                batch_sums = {k: v.detach().float() * n for k, v in terms.items()}
                batch_sums["n"] = n
                if step.cached("clean"):
                    batch_sums["correct"] = (step.clean.logits.argmax(1) == y).sum().float()
                adv_logits = step.adv.logits if step.cached("adv") else (
                    step.augmented.logits[: step.k] if step.cached("augmented") else None)
                if step.cached("augmented") and not step.cached("clean"):  # Cascade's B' holds both
                    batch_sums["correct"] = (step.augmented.logits[step.k:].argmax(1) == y).sum().float()
                if adv_logits is not None:  # accuracy on the training adversary's examples
                    batch_sums["adv_correct"] = (adv_logits.argmax(1) == step.y_adv).sum().float()
                    batch_sums["adv_n"] = torch.tensor(float(step.k), device=device)
                for k, v in batch_sums.items():
                    sums[k] = sums.get(k, torch.zeros((), device=device)) + v
                run.batch += 1
                run.global_step += 1
                bar.update(1)
                if run.global_step % min(tc.log_every, 10) == 0 or callbacks:
                    seen = sums["n"].item() - seen_at_start
                    rate = seen / max(1e-9, time.perf_counter() - epoch_start)
                    now = {k: v.item() for k, v in terms.items()}
                    acc = sums["correct"].item() / sums["n"].item() if "correct" in sums else math.nan
                    bar.set_postfix(loss=f"{now['loss']:.3f}", acc=f"{acc:.3f}", img_s=f"{rate:.0f}")
                    if run.global_step % tc.log_every == 0:
                        metrics.write({"kind": "step", "epoch": run.epoch + 1, "step": run.global_step,
                                       "lr": scheduler.get_last_lr()[0], "images_per_s": rate, **now})
                    for cb in callbacks:
                        cb.on_step(run, now)
                if run.stop_requested:
                    bar.close()
                    if dist.is_main:
                        save_checkpoint(checkpoint_state(), run.last_checkpoint)
                    raise Interrupted(run)
            bar.close()
            if dist.enabled:  # one set of BN statistics for all ranks: rank 0's
                for buffer in model.buffers():
                    torch.distributed.broadcast(buffer, 0)
            elapsed = time.perf_counter() - epoch_start
            keys = sorted(sums)
            totals = all_reduce_sum(torch.stack([sums[k] for k in keys]), dist)
            total = dict(zip(keys, totals.tolist()))
            count = max(1.0, total.pop("n"))
            correct = total.pop("correct", None)
            adv_correct, adv_n = total.pop("adv_correct", None), total.pop("adv_n", None)
            record = {"kind": "epoch", "epoch": run.epoch + 1, "step": run.global_step,
                      "lr": scheduler.get_last_lr()[0]}
            record.update({f"train_{k}": v / count for k, v in total.items()})
            if correct is not None:
                record["train_acc"] = correct / count
            if adv_correct is not None:
                record["train_adv_acc"] = adv_correct / max(1.0, adv_n)
            record["time_s"] = elapsed
            record["images_per_s"] = (count - seen_at_start * dist.world_size) / max(1e-9, elapsed)
            if dist.is_main and ((run.epoch + 1) % tc.eval_every == 0 or run.epoch + 1 == tc.epochs):
                for name, batches in data.evals.items():
                    record[f"{name}_acc"] = accuracy(model, batches, device)
                if data.monitor is not None:
                    record.update(data.monitor(model, device, run.history))
            record["peak_mem_mb"] = _peak_memory_mb(device)
            run.epoch, run.batch, sums = run.epoch + 1, 0, {}
            run.history.append(record)
            improved = best_key in record and (run.best is None or record[best_key] > run.best)
            if improved:
                run.best = record[best_key]
            robust_best = "robust_acc" in record and record["robust_acc"] >= max(
                (r.get("robust_acc", -1.0) for r in run.history[:-1]), default=-1.0)
            if dist.is_main:
                state = checkpoint_state()
                save_checkpoint(state, run.last_checkpoint)
                if improved:
                    save_checkpoint(state, run.checkpoint_dir / "best.pt")
                if robust_best:  # early stopping on robustness (Rice et al. 2020)
                    save_checkpoint(state, run.checkpoint_dir / "best_robust.pt")
                metrics.write(record)
                log(_epoch_line(record, tc.epochs))
                if "overfitting_alarm" in record:
                    log(f"WARNING: {record['overfitting_alarm']}")
            for cb in callbacks:
                cb.on_epoch(run, record)
            if run.stop_requested and not run.finished:
                raise Interrupted(run)
    return run


@contextlib.contextmanager
def deterministic_algorithms():
    """torch.use_deterministic_algorithms(True, warn_only=True) while training, restored after:
    an op with no deterministic kernel warns instead of silently making two runs differ (the
    parallel CPU index_put_ accumulate once did, see defenses.terms._sml_triplets). On CUDA it
    needs CUBLAS_WORKSPACE_CONFIG, set here when unset (a fixed cuBLAS workspace: a few MB)."""
    import os

    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _train_step(step: Step, objective: Objective, optimizer, scaler, scheduler, autocast, tc,
                where: str, last: Path) -> dict[str, Tensor]:
    """One optimizer step on `objective(step)`; a non-finite loss stops training, naming the term."""
    with autocast():
        terms = objective(step)
    loss = terms["loss"]
    if not torch.isfinite(loss):
        bad = [k for k, v in terms.items() if k != "loss" and not torch.isfinite(v).all()]
        raise UserError(
            f"non-finite loss at {where} in term(s) {', '.join(bad) or 'loss'}; the last good "
            f"state is {last}; lower optim.lr or set train.grad_clip"
        )
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    after_backward = getattr(objective, "after_backward", None)
    if after_backward is not None:
        after_backward(step)
    if tc.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(step.model.parameters(), tc.grad_clip)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    # An fp16 overflow makes the scaler skip the optimizer step (and lower its scale); the
    # schedule then waits too, so it stays in step with the updates actually made.
    if scale is None or scaler.get_scale() >= scale:
        scheduler.step()
    return terms


def _epoch_line(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record.get('train_loss', math.nan):.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k.endswith("_acc")]
    parts += [f"{record['images_per_s']:.0f} img/s", f"{record['time_s']:.1f} s"]
    return " | ".join(parts)
