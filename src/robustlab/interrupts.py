"""Signal handling shared by the commands: SIGINT and SIGTERM routed to one handler for a block."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def handling(handler: Callable, signals=STOP_SIGNALS) -> Iterator[None]:
    """Install `handler` for `signals` inside the block and restore the previous handlers after.
    Signals can only be handled on the main thread; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
