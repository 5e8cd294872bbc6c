"""SIGTERM handled the way Ctrl-C is: the running statement is cancelled and recorded.

A service manager, CI runner or ``kill`` ends a deployment with SIGTERM. Python's
default would end spawn on the spot while psql and its backend run on; delivered
as a ``KeyboardInterrupt`` instead, it takes the same path as Ctrl-C: cancel the
statement, record the outcome, say so, and exit 143 (128 + SIGTERM). Ctrl-C keeps
click's behaviour ("Aborted!", exit 1) when it reaches the top.
"""

from __future__ import annotations

import signal
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
        self.terminated = True
        raise Terminated()

    def exit_code(self, otherwise: int) -> int:
        """143 once SIGTERM arrived, whatever error the interruption became."""
        return TERMINATED_EXIT if self.terminated else otherwise


@contextmanager
def sigterm_as_interrupt() -> Iterator[SignalState]:
    state = SignalState()
    previous = signal.signal(signal.SIGTERM, state.handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)
