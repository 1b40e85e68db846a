"""`Step`: one training batch with lazily computed, cached model outputs."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from torch import Tensor, nn

from robustlab.models import Out


class Step:
    """A batch (x, y) and what terms need of it, each computed at most once.

    `forward_all` is the callable that produces `Out` with gradients: the model's own
    `forward_all`, or a DistributedDataParallel wrapper of it, so gradient synchronisation
    happens however many terms read `clean`.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        forward_all: Callable[[Tensor], Out] | None = None,
    ):
        self.model = model
        self.x = x
        self.y = y
        self._forward_all = forward_all or model.forward_all

    @cached_property
    def clean(self) -> Out:
        """Outputs on the clean batch (one forward, shared by every term)."""
        return self._forward_all(self.x)

    def cached(self, name: str) -> bool:
        """Whether `name` (e.g. "clean") has been computed for this batch."""
        return name in self.__dict__
