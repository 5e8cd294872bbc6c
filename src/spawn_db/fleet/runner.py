"""Run one piece of work per unit (a tenant, a target) on a bounded number of threads.

Tenants and fan-out over targets share this: the work for one unit drives its own
psql session, so threads are enough (the waiting happens in psql and the server), and
the rules a deployment needs are the same for both: ``--jobs N`` at most at once,
``--canary N`` units first and the rest only if they all succeed, and without
``--continue-on-error`` no new unit starts after the first failure (units already
running finish, so nothing is cut off half-way).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

from spawn_db.errors import MigrationFailed, SpawnError

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass(frozen=True)
class UnitResult:
    """What happened to one unit.

    ``state`` is ``ok``, ``failed`` or ``skipped`` (never started: a canary or an earlier
    unit failed). ``summary`` is the work's own one-line account (``3 applied``, ``up to
    date``); ``error`` the failure's message; ``data`` whatever the work returned for a
    machine-readable report."""

    name: str
    state: str
    seconds: float = 0.0
    summary: str = ""
    error: str = ""
    data: object = None


@dataclass(frozen=True)
class FleetReport:
    """Every unit's result, in the order the units were given."""

    results: tuple[UnitResult, ...]

    @property
    def failed(self) -> tuple[UnitResult, ...]:
        return tuple(r for r in self.results if r.state == FAILED)

    @property
    def skipped(self) -> tuple[UnitResult, ...]:
        return tuple(r for r in self.results if r.state == SKIPPED)

    @property
    def succeeded(self) -> tuple[UnitResult, ...]:
        return tuple(r for r in self.results if r.state == OK)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def slowest(self) -> UnitResult | None:
        ran = [r for r in self.results if r.state != SKIPPED]
        return max(ran, key=lambda r: r.seconds) if ran else None


@dataclass(frozen=True)
class Done:
    """The work's successful outcome: a one-line summary and optional report data."""

    summary: str
    data: object = None


class UnitFailed(MigrationFailed):
    """A unit that failed with a report of its own still to give: a target whose tenants
    failed keeps its per-tenant results (``data``) in the fleet's report."""

    def __init__(self, message: str, data: object) -> None:
        super().__init__(message)
        self.data = data


class FleetProgress(Protocol):
    """Told about each unit as it starts and ends (from worker threads)."""

    def unit_started(self, name: str) -> None: ...

    def unit_finished(self, result: UnitResult, done: int, total: int) -> None: ...


class _Silent:
    def unit_started(self, name: str) -> None:
        pass

    def unit_finished(self, result: UnitResult, done: int, total: int) -> None:
        pass


@dataclass
class _Run:
    work: Callable[[str], Done]
    progress: FleetProgress
    total: int
    results: dict[str, UnitResult] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, name: str) -> UnitResult:
        self.progress.unit_started(name)
        started = time.monotonic()
        try:
            done = self.work(name)
        except SpawnError as exc:
            result = UnitResult(name, FAILED, time.monotonic() - started, error=str(exc),
                                data=exc.data if isinstance(exc, UnitFailed) else None)
        else:
            result = UnitResult(name, OK, time.monotonic() - started, done.summary,
                                data=done.data)
        with self.lock:
            self.results[name] = result
            count = len(self.results)
        self.progress.unit_finished(result, count, self.total)
        return result


def run_fleet(
    names: Sequence[str],
    work: Callable[[str], Done],
    *,
    jobs: int = 1,
    canary: int = 0,
    continue_on_error: bool = False,
    progress: FleetProgress | None = None,
) -> FleetReport:
    """Run ``work`` once per name; a ``SpawnError`` it raises is that unit's failure.

    Any other exception is a bug, not a unit's failure: no new unit starts, the
    running ones finish, and it is raised again here.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    run = _Run(work, progress or _Silent(), len(names))
    first, rest = list(names[:canary]), list(names[canary:])
    if not _run_batch(run, first, jobs, continue_on_error=False):
        _run_batch(run, rest, jobs, continue_on_error=continue_on_error)
    return FleetReport(tuple(run.results.get(n, UnitResult(n, SKIPPED)) for n in names))


def _run_batch(run: _Run, names: list[str], jobs: int, *, continue_on_error: bool) -> bool:
    """Run ``names``; True when a failure means nothing after this batch may start."""
    if not names:
        return False
    pending = iter(names)
    failed = False
    crash: BaseException | None = None
    with ThreadPoolExecutor(max_workers=min(jobs, len(names)),
                            thread_name_prefix="spawn-fleet") as pool:
        running: set[Future[UnitResult]] = set()

        def refill() -> None:
            while len(running) < jobs and not crash and (continue_on_error or not failed):
                name = next(pending, None)
                if name is None:
                    return
                running.add(pool.submit(run.one, name))

        refill()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                running.discard(future)
                error = future.exception()
                if error is not None:
                    crash = crash or error
                elif future.result().state == FAILED:
                    failed = True
            refill()
    if crash is not None:
        raise crash
    return failed
