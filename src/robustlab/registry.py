"""Named registries: `register(name)` decorator, `build(name, **kw)`, `names()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from robustlab.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory map with one-line errors for unknown or duplicate names.

    `info` keeps free-form metadata per entry (paper, defaults) for listings such as
    `robustlab datasets`.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self.info: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            self.info[name] = info
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise UserError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def names(self, *, registered_order: bool = False) -> list[str]:
        """Sorted, or in the order they were registered (the order their modules define them)."""
        return list(self._factories) if registered_order else sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
