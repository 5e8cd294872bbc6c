"""SIGTERM handled like Ctrl-C.

Python's default for SIGTERM ends the process at once: no ``finally`` runs,
so psql processes spawn started (and the backends behind them) keep running.
Inside :func:`sigterm_as_interrupt` a SIGTERM raises ``KeyboardInterrupt`` in
the main thread instead, so the code that already cleans up after Ctrl-C
(cancel the queries, stop psql, terminate the sessions, report) runs for it too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """Raise ``KeyboardInterrupt`` once; a second SIGTERM must not cut the cleanup short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises ``KeyboardInterrupt`` in the main thread.

    Outside the main thread (where Python cannot install handlers) it does
    nothing. The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
