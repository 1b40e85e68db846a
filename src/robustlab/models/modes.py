"""Model state a computation must leave as it found it: every module's train/eval mode, every
parameter's requires_grad, BatchNorm's running statistics. Each helper restores on exit, even on
error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """Every buffer of `model` (BatchNorm's running statistics and step counter among them) is
    restored on exit, even on error: forwards inside run in the model's own mode (train-mode
    BN normalises with the batch's statistics) but leave no trace in the statistics."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


@contextlib.contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Forwards inside normalise train-mode BatchNorm layers with their batch's statistics but
    leave the running statistics (and the step counter) untouched: for a forward that exists
    only for a loss term, whose images must not enter the eval-time statistics. Done by turning
    each layer's `track_running_stats` off, not by restoring the buffers afterwards, because the
    backward of a train-mode batch norm checks that its saved running-statistics tensors were
    not modified in place."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in layers]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, was in zip(layers, tracked):
            m.track_running_stats = was


@contextlib.contextmanager
def mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """`model` in train (True) or eval (False) mode for the duration; each module's own mode is
    restored afterwards (a frozen teacher inside stays frozen)."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, was in modes:
            m.training = was


def eval_mode(model: nn.Module):
    """`mode(model, False)`: BN running statistics, no dropout."""
    return mode(model, False)


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and requires_grad=False for the duration; restores each module and parameter."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with eval_mode(model):
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield model
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
