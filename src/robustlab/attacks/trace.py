"""What an attack call saw on its way, per sample, for Pintor et al.'s indicators of attack failure
("Indicators of Attack Failure", NeurIPS 2022, Sec. 3.2).

Attacks keep their signature `attack(model, x, y) -> x_adv`; inside `with tracing() as calls:`
each call that knows its path appends a dict of per-sample tensors to `calls` (the PGD family:
`seen`, any iterate adversarial; `progress`, the loss trace's late progress; a transfer attack:
`source_fooled`). Outside `tracing()` recording costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import Tensor

_CALLS: ContextVar[list[dict[str, Tensor]] | None] = ContextVar("robustlab_attack_trace", default=None)
WINDOW = 10  # Pintor et al.'s last min(10, T) steps
MOVES = 0.05  # ... over which the rescaled running best still moves by more than this


@contextlib.contextmanager
def tracing() -> Iterator[list[dict[str, Tensor]]]:
    """Collect the records of the attack calls made in the block, in call order."""
    calls: list[dict[str, Tensor]] = []
    token = _CALLS.set(calls)
    try:
        yield calls
    finally:
        _CALLS.reset(token)


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Calls in the block record nothing (a transfer attack's inner attack runs on the source)."""
    token = _CALLS.set(None)
    try:
        yield
    finally:
        _CALLS.reset(token)


def active() -> bool:
    """Whether a `tracing()` block is collecting (so a record worth an extra pass is wanted)."""
    return _CALLS.get() is not None


def record(**per_sample: Tensor) -> None:
    """Append one call's per-sample tensors (moved to the CPU) when tracing."""
    calls = _CALLS.get()
    if calls is not None:
        calls.append({key: value.detach().cpu() for key, value in per_sample.items()})


def late_progress(losses: list[Tensor]) -> Tensor:
    """[B] Pintor et al.'s incomplete-optimisation measure of a loss trace (one [B] tensor per
    iterate, the loss the attack ascends): each sample's trace rescaled to [0, 1], replaced by
    its running best, and the range of the last min(10, T) values; > 0.05 means the attack was
    still improving when it stopped. NaN for a trace of one value (a single step measures no
    progress)."""
    trace = torch.stack(losses).float()  # [T, B]
    if len(trace) < 2:
        return torch.full(trace.shape[1:], float("nan"))
    low, high = trace.min(0).values, trace.max(0).values
    scaled = (trace - low) / torch.where(high > low, high - low, torch.ones_like(high))
    best = scaled.cummax(0).values
    window = best[-min(WINDOW, len(best)):]
    return (window[-1] - window[0]).cpu()
