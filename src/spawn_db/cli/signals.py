"""SIGTERM handled the way Ctrl-C is: running statements are cancelled and recorded.

A service manager, CI runner or ``kill`` ends spawn with SIGTERM. Python's
default ends the process on the spot (no ``finally`` runs), so psql processes
and the backends behind them would run on. Delivered as a ``KeyboardInterrupt``
instead, SIGTERM takes the path Ctrl-C takes: cancel the statements, stop psql,
record the outcome, say so. The command then exits 143 (128 + SIGTERM); Ctrl-C
keeps click's behaviour ("Aborted!", exit 1).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

TERMINATED_EXIT = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; library code treats it as Ctrl-C."""


class SignalState:
    """Whether SIGTERM arrived while the command ran."""

    def __init__(self) -> None:
        self.terminated = False

    def handler(self, _signum: int, _frame: FrameType | None) -> None:
        """Raise once; a second SIGTERM must not cut the clean-up short."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.terminated = True
        raise Terminated()

    def exit_code(self, otherwise: int) -> int:
        """143 once SIGTERM arrived, whatever error the interruption became."""
        return TERMINATED_EXIT if self.terminated else otherwise


@contextmanager
def sigterm_as_interrupt() -> Iterator[SignalState]:
    """While active, SIGTERM raises ``Terminated`` in the main thread (elsewhere Python
    cannot install handlers, and this does nothing); the previous handler is restored."""
    state = SignalState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = signal.signal(signal.SIGTERM, state.handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)
