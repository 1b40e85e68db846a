"""The training loop: epochs of objective steps, evaluation, metrics, resumable checkpoints.

Resuming is exact on a fixed device and seed: data order and augmentation are functions of
(seed, epoch, batch) (see `robustlab.data.Batches`), and a checkpoint holds the weights,
optimizer, schedule, grad scaler, torch RNG states and the running epoch sums (`train.state`),
written at every epoch end and whenever the run is stopped by SIGINT / SIGTERM (at the next
batch boundary).
"""

from __future__ import annotations

import contextlib
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
from robustlab.defenses import Step, TrainingObjective
from robustlab.errors import UserError
from robustlab.eval.accuracy import accuracy
from robustlab.interrupts import handling
from robustlab.train.checkpoint import RunFiles, save_checkpoint
from robustlab.train.device import compile_model, deterministic_algorithms
from robustlab.train.distributed import DistInfo
from robustlab.train.metrics import (
    MetricsLog,
    add_batch,
    epoch_line,
    epoch_record,
    peak_memory_mb,
    running_accuracy,
)
from robustlab.train.monitors import RobustMonitor
from robustlab.train.state import Optimization, restore_state, training_state


@dataclass
class TrainData:
    """The training batches and the named evaluation batches ("val", "test")."""

    train: Any  # robustlab.data.Batches (anything with len() and .epoch(e, start))
    evals: Mapping[str, Any] = field(default_factory=dict)
    monitor: RobustMonitor | None = None  # robust accuracy on a fixed held-out batch


@dataclass
class Run:
    files: RunFiles
    epochs: int
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch completed
    global_step: int = 0
    best: float | None = None
    history: list[dict] = field(default_factory=list)
    stop_requested: bool = False
    model: nn.Module | None = None  # the trained model (unwrapped), for callers and callbacks

    @property
    def run_dir(self) -> Path:
        return self.files.root

    @property
    def checkpoint_dir(self) -> Path:
        return self.files.last.parent

    @property
    def last_checkpoint(self) -> Path:
        return self.files.last

    @property
    def finished(self) -> bool:
        return self.epoch >= self.epochs

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


class Diverged(UserError):
    """A non-finite loss stopped training; the last good state is the run's last checkpoint."""


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


@dataclass
class _Loop:
    """What every batch of `fit` reads: the objects it was set up with."""

    model: nn.Module
    objective: TrainingObjective
    data: TrainData
    cfg: Config
    device: torch.device
    dist: DistInfo
    opt: Optimization
    forward_all: Callable
    teacher: nn.Module | None
    log: Callable[[str], None]
    callbacks: Sequence[Callback]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cfg.train.channels_last else torch.contiguous_format

    def save(self, run: Run, sums: dict[str, Tensor], *paths: Path) -> None:
        """The training state, at last.pt and `paths` (rank 0 only)."""
        if self.dist.is_main:
            state = training_state(run, self.model, self.opt, self.objective, self.cfg, sums, self.device)
            for path in (run.files.last, *paths):
                save_checkpoint(state, path)


def fit(
    model: nn.Module,
    objective: TrainingObjective,
    data: TrainData,
    cfg: Config,
    *,
    device: torch.device,
    files: RunFiles,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    dist: DistInfo | None = None,
    log: Callable[[str], None] = say,
    teacher: nn.Module | None = None,
) -> Run:
    """Train `model` with `objective` for `cfg.train.epochs`, writing `files`; see the module
    docstring."""
    dist = dist or DistInfo()
    run = Run(files=files, epochs=cfg.train.epochs, model=model)
    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise UserError("the training set gives no batch: lower data.batch_size or raise data.train_limit")
    loop = _Loop(model, objective, data, cfg, device, dist, None, model.forward_all, teacher, log, callbacks)
    model.to(device, memory_format=loop.memory_format)
    if cfg.train.compile and compile_model(model, device, log):
        loop.forward_all = model.forward_all
    # Free AT replays each minibatch m times: m optimizer steps per batch.
    loop.opt = Optimization.build(cfg, model, device, steps_per_epoch * objective.replays)
    sums: dict[str, Tensor] = {}
    if resume and files.last.is_file():
        sums = restore_state(files.last, run, model, loop.opt, objective, device)
        log(f"resumed {run.run_dir} at epoch {run.epoch + 1}, batch {run.batch}")
        if run.finished:
            log(f"run already finished ({run.epoch} of {run.epochs} epochs)")
            return run
    if dist.enabled:
        loop.forward_all = torch.nn.parallel.DistributedDataParallel(
            _AllOutputs(model), device_ids=[device.index] if device.type == "cuda" else None)
    if dist.is_main:
        files.root.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(files.metrics, dist.is_main, files.tensorboard if cfg.train.tensorboard else None)
    with _stop_on_signals(run), deterministic_algorithms(), contextlib.closing(metrics):
        while run.epoch < run.epochs:
            start, seen = time.perf_counter(), sums.get("n", torch.zeros(())).item()
            _train_epoch(loop, run, sums, metrics, start, seen)
            record = _end_epoch(loop, run, sums, time.perf_counter() - start, seen)
            run.epoch, run.batch, sums = run.epoch + 1, 0, {}
            _keep(loop, run, record, sums, metrics)
            for cb in callbacks:
                cb.on_epoch(run, record)
            if run.stop_requested and not run.finished:
                raise Interrupted(run)
    return run


def _train_epoch(loop: _Loop, run: Run, sums: dict[str, Tensor], metrics: MetricsLog, start: float,
                 seen_at_start: float) -> None:
    """The remaining batches of the current epoch; raises `Interrupted` (state saved) on request."""
    model, tc, device = loop.model, loop.cfg.train, loop.device
    model.train()
    bar = tqdm(total=len(loop.data.train), initial=run.batch, desc=f"epoch {run.epoch + 1}/{tc.epochs}",
               disable=None if loop.dist.is_main else True, leave=False, unit="batch", dynamic_ncols=True)
    # The batch's indices in the training split, for adversaries that look images up (cascade
    # training's source images); Batches' order depends on the epoch only.
    order = loop.data.train.indices(run.epoch) if hasattr(loop.data.train, "indices") else None
    bs = getattr(loop.data.train, "batch_size", 0)
    for x, y in loop.data.train.epoch(run.epoch, start=run.batch):
        x = x.to(device, non_blocking=True, memory_format=loop.memory_format)
        y = y.to(device, non_blocking=True)
        index = None if order is None else order[run.batch * bs: run.batch * bs + len(y)]
        for _ in range(loop.objective.replays):
            step = loop.objective.step(model, x, y, forward_all=loop.forward_all, teacher=loop.teacher,
                                       index=index)
            where = f"epoch {run.epoch + 1}, batch {run.batch} (step {run.global_step})"
            terms = _train_step(step, loop, where=where, last=run.last_checkpoint)
        add_batch(sums, terms, step.counts(), y.numel(), device)
        run.batch += 1
        run.global_step += 1
        bar.update(1)
        if run.global_step % min(tc.log_every, 10) == 0 or loop.callbacks:
            rate = (sums["n"].item() - seen_at_start) / max(1e-9, time.perf_counter() - start)
            now = {k: v.item() for k, v in terms.items()}
            bar.set_postfix(loss=f"{now['loss']:.3f}", acc=f"{running_accuracy(sums):.3f}",
                            img_s=f"{rate:.0f}")
            if run.global_step % tc.log_every == 0:
                metrics.write({"kind": "step", "epoch": run.epoch + 1, "step": run.global_step,
                               "lr": loop.opt.scheduler.get_last_lr()[0], "images_per_s": rate, **now})
            for cb in loop.callbacks:
                cb.on_step(run, now)
        if run.stop_requested:
            bar.close()
            loop.save(run, sums)
            raise Interrupted(run)
    bar.close()


def _end_epoch(loop: _Loop, run: Run, sums: dict[str, Tensor], elapsed: float, seen_at_start: float) -> dict:
    """The epoch's record: training means, time, images/s, evaluations and the robust monitor."""
    if loop.dist.enabled:  # one set of BN statistics for all ranks: rank 0's
        for buffer in loop.model.buffers():
            torch.distributed.broadcast(buffer, 0)
    means = epoch_record(sums, loop.dist)
    count = means.pop("n")
    record = {"kind": "epoch", "epoch": run.epoch + 1, "step": run.global_step,
              "lr": loop.opt.scheduler.get_last_lr()[0], **means, "time_s": elapsed,
              "images_per_s": (count - seen_at_start * loop.dist.world_size) / max(1e-9, elapsed)}
    tc = loop.cfg.train
    if loop.dist.is_main and ((run.epoch + 1) % tc.eval_every == 0 or run.epoch + 1 == tc.epochs):
        for name, batches in loop.data.evals.items():
            record[f"{name}_acc"] = accuracy(loop.model, batches, loop.device)
        if loop.data.monitor is not None:
            record.update(loop.data.monitor(loop.model, loop.device, run.history))
    record["peak_mem_mb"] = peak_memory_mb(loop.device)
    return record


def _keep(loop: _Loop, run: Run, record: dict, sums: dict[str, Tensor], metrics: MetricsLog) -> None:
    """Append the record, track the best epochs, write the checkpoints and the log line."""
    run.history.append(record)
    best_key = "val_acc" if "val" in loop.data.evals else "test_acc"
    improved = best_key in record and (run.best is None or record[best_key] > run.best)
    if improved:
        run.best = record[best_key]
    robust_best = "robust_acc" in record and record["robust_acc"] >= max(
        (r.get("robust_acc", -1.0) for r in run.history[:-1]), default=-1.0)
    if not loop.dist.is_main:
        return
    # best_robust: early stopping on robustness (Rice et al. 2020)
    loop.save(run, sums, *[path for wanted, path in ((improved, run.files.best),
                                                     (robust_best, run.files.best_robust)) if wanted])
    metrics.write(record)
    loop.log(epoch_line(record, run.epochs))
    if "overfitting_alarm" in record:
        loop.log(f"WARNING: {record['overfitting_alarm']}")


def _train_step(step: Step, loop: _Loop, where: str, last: Path) -> dict[str, Tensor]:
    """One optimizer step on `objective(step)`; a non-finite loss stops training, naming the term."""
    with loop.opt.autocast(loop.device):
        terms = loop.objective(step)
    loss = terms["loss"]
    if not torch.isfinite(loss):
        bad = [k for k, v in terms.items() if k != "loss" and not torch.isfinite(v).all()]
        raise Diverged(
            f"non-finite loss at {where} in term(s) {', '.join(bad) or 'loss'}; the last good "
            f"state is {last}; lower optim.lr or set train.grad_clip"
        )
    loop.opt.step(loss, step.model.parameters(), loop.cfg.train.grad_clip,
                  lambda: loop.objective.after_backward(step))
    return terms
