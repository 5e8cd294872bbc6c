"""``spawn migration revert``: run applied migrations' ``down.sql``, newest first.

What gets reverted comes from the history, not from the folder names: the
candidates are ordered by the id of the row that applied them (their latest
row), so a migration applied out of order is reverted in the order it went
in. Every refusal happens here, before the lock is taken and before anything
runs (exit 2, nothing written); the plan is made again under the lock and the
run goes ahead only if it is the plan that was confirmed.

Running the down scripts is ``runner.MigrationRun``'s job with the activity
``REVERT``: the same lock, streaming and crash-safety protocol as apply, so a
``REVERT``/``ATTEMPTED`` row comes before each down script and a
``REVERT``/``SUCCESS`` or ``REVERT``/``FAILURE`` row after it, with the
checksum of the rendered down script and the pin hash.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from spawn_db.config import DEFAULT_LOCK_TIMEOUT, Config
from spawn_db.db.engine import engine_for
from spawn_db.errors import NotFoundError, NotPinned, PlanRefused, UsageError
from spawn_db.migrate.apply import (
    NullReporter,
    _locked,
    default_hooks,
    migration_run,
    pins_optional,
    tracking_session,
)
from spawn_db.migrate.migration import DOWN
from spawn_db.migrate.plan import is_done, state_of
from spawn_db.migrate.rendered import render_migration, uses_pin
from spawn_db.migrate.runner import ApplyReporter, MigrationOutcome, SessionSetup, start_runner
from spawn_db.migrate.settings import MigrationSettings
from spawn_db.migrate.sources import Sources
from spawn_db.migrate.tracking import HistoryRow
from spawn_db.migrate.verify import VERIFY_FAILED

if TYPE_CHECKING:
    from spawn_db.db.engine import Engine
    from spawn_db.migrate.hooks import Hooks
    from spawn_db.migrate.tracking import Tracking

# -- what the user asked for, and the plan ----------------------------------------------------


@dataclass(frozen=True)
class RevertRequest:
    """One of: a named migration, the last ``steps``, everything applied after ``to``, or
    (none of them) the most recently applied migration."""

    migration: str | None = None
    steps: int | None = None
    to: str | None = None
    retry: bool = False

    def check(self) -> None:
        given = [flag for flag, value in (("MIGRATION", self.migration), ("--steps", self.steps),
                                          ("--to", self.to)) if value is not None]
        if len(given) > 1:
            raise UsageError(
                f"{' and '.join(given)} each choose what to revert; pass only one of them")
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"--steps must be at least 1, not {self.steps}")


@dataclass(frozen=True)
class RevertPlan:
    """The migrations to revert, in the order their down scripts run (newest application
    first), and how many migrations are applied in all."""

    to_revert: tuple[str, ...]
    applied: int


@dataclass(frozen=True)
class RevertPlanner:
    """Everything a plan needs from the files, loaded once; ``plan`` takes the history
    (revert plans twice: before confirming, and again under the lock)."""

    names: tuple[str, ...]
    settings: Mapping[str, MigrationSettings]
    request: RevertRequest
    config: Config
    sources: Sources

    @classmethod
    def load(cls, config: Config, request: RevertRequest) -> RevertPlanner:
        request.check()
        sources = Sources(config)
        names = sources.names
        return cls(tuple(names), sources.settings(names), request, config, sources)

    @functools.cached_property
    def required_by(self) -> dict[str, list[str]]:
        """For each migration, the migrations whose ``requires`` name it, by name."""
        found: dict[str, list[str]] = {}
        for other in sorted(self.settings):
            for required in self.settings[other].requires:
                found.setdefault(required, []).append(other)
        return found

    def plan(self, states: Mapping[str, HistoryRow]) -> RevertPlan:
        candidates = by_application(states)
        chosen = self._choose(candidates, states)
        on_disk = set(self.names)
        earlier: set[str] = set()
        for name in chosen:
            self._check(name, states.get(name), on_disk, reverted_first=earlier, states=states)
            earlier.add(name)
        applied = sum(1 for row in states.values() if is_done(state_of(row)))
        return RevertPlan(tuple(chosen), applied)

    # -- choosing ------------------------------------------------------------------------

    def _choose(self, candidates: Sequence[str], states: Mapping[str, HistoryRow]
                ) -> list[str]:
        request = self.request
        if request.migration is not None:
            return [self._resolve(request.migration, states)]
        if request.to is not None:
            return self._after(self._resolve(request.to, states), candidates, states)
        steps = request.steps or 1
        if request.steps is not None and steps > len(candidates):
            raise PlanRefused(_too_many_steps(steps, len(candidates)))
        return list(candidates[:steps])

    def _resolve(self, typed: str, states: Mapping[str, HistoryRow]) -> str:
        """The folder name for ``typed``; a name only the history knows (folder gone) too."""
        try:
            return self.sources.resolve(typed)
        except NotFoundError:
            plain = typed.rstrip("/") or typed
            if plain in states:
                return plain
            raise

    def _after(self, target: str, candidates: Sequence[str],
               states: Mapping[str, HistoryRow]) -> list[str]:
        row = states.get(target)
        if row is None or not is_done(state_of(row)):
            raise PlanRefused(
                f"--to {target}: {target} is not applied ({_described(row)}), so nothing can be "
                "reverted back to it; name an applied migration (see `spawn migration status`)")
        return [n for n in candidates if states[n].history_id > row.history_id]

    # -- refusing ------------------------------------------------------------------------

    def _check(self, name: str, row: HistoryRow | None, on_disk: set[str], *,
               reverted_first: set[str], states: Mapping[str, HistoryRow]) -> None:
        state = state_of(row)
        if row is not None and state in ("attempted", "failed"):
            self._check_unfinished(name, row)
        elif not is_done(state):
            raise PlanRefused(
                f"migration {name} is not applied ({_described(row)}), so there is nothing to "
                "revert; see `spawn migration status`")
        folder = self.sources.folder(name)
        if name not in on_disk:
            raise PlanRefused(
                f"migration {name} is applied, but its folder {folder} (or its up.sql) is "
                "gone, so its down.sql cannot be read; restore the folder (from version "
                "control) to revert it")
        if not (folder / DOWN).is_file():
            raise PlanRefused(
                f"migration {name} is irreversible: it has no {DOWN}; write "
                f"{folder / DOWN} to undo its up.sql, or put the undo in a new migration")
        self._check_required(name, states, reverted_first)

    def _check_unfinished(self, name: str, row: HistoryRow) -> None:
        if row.activity == "APPLY" and row.status_note.startswith(VERIFY_FAILED):
            return  # its up.sql committed, only the check after it failed: down.sql undoes it
        what = "failed" if row.status == "FAILURE" else "was attempted but never completed"
        if row.activity == "REVERT":
            if self.request.retry:
                return
            raise PlanRefused(
                f"reverting migration {name} {what} in an earlier run; fix its {DOWN} and "
                f"run `spawn migration revert {name} --retry` to run it again")
        raise PlanRefused(
            f"migration {name} {what} when it was applied, so spawn cannot tell what there is "
            f"to revert; finish it first with `spawn migration apply {name} --retry`, or "
            f"`spawn migration adopt {name}` if you completed it by hand")

    def _check_required(self, name: str, states: Mapping[str, HistoryRow],
                        reverted_first: set[str]) -> None:
        for other in self.required_by.get(name, ()):
            if other in reverted_first:
                continue
            row = states.get(other)
            if is_done(state_of(row)) or (row is not None and row.activity == "REVERT"
                                          and row.status != "SUCCESS"):
                raise PlanRefused(
                    f"migration {name} is required by {other}, which is applied (its "
                    f"migration.toml `requires` it); revert {other} first, or both in one "
                    "run (with --steps or --to)")


def by_application(states: Mapping[str, HistoryRow]) -> list[str]:
    """The migrations that can be reverted (applied or adopted, or left unfinished by an
    apply or a revert), newest application first: by the id of their latest row."""
    rows = [row for row in states.values()
            if is_done(state_of(row)) or row.status in ("ATTEMPTED", "FAILURE")]
    return [row.name for row in sorted(rows, key=lambda r: r.history_id, reverse=True)]


def _too_many_steps(steps: int, have: int) -> str:
    asked = f"--steps {steps} asks to revert {steps} migrations, but"
    if have == 0:
        return f"{asked} none is applied; nothing can be reverted"
    return (f"{asked} only {have} {'is' if have == 1 else 'are'} applied; pass --steps {have} "
            "to revert them all")


def _described(row: HistoryRow | None) -> str:
    if row is None:
        return "it has no history"
    return f"its latest history row is {row.activity} {row.status}"


def _require_pins(sources: Sources, names: Sequence[str]) -> None:
    unpinned = [n for n in names if not (sources.folder(n) / "lock.toml").is_file()]
    if unpinned:
        raise NotPinned(
            f"migration {unpinned[0]} is not pinned (no lock.toml), so its {DOWN} has no pinned "
            f"components to render from; revert from the working tree with --no-pin, or pin "
            f"it (`spawn migration pin {unpinned[0]}`)")


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevertResult:
    """What a revert did: its ``plan``, one outcome per down script that ran
    (``reverted``, in order), whether ``confirm`` said no (``cancelled``), and the wall
    clock ``seconds`` of the run."""

    plan: RevertPlan
    reverted: list[MigrationOutcome] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    # What ``revert``'s ``before_shared`` returned (the tenant parts' report, fleet/).
    before_shared: object = None


@dataclass(frozen=True)
class PlannedRevert:
    """One down script a revert would run: its pin and the checksum of its rendered SQL
    (xxHash3-128 hex, as the REVERT rows will record it)."""

    name: str
    pin: str | None
    checksum: str
    size: int


# -- the library functions ------------------------------------------------------------------


def revert(
    config: Config,
    request: RevertRequest,
    *,
    pinned: bool = True,
    variables: Any = None,
    reporter: ApplyReporter | None = None,
    confirm: Callable[[RevertPlan], bool] | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    hooks: Hooks | None = None,
    before_shared: Callable[[Tracking, Engine, SessionSetup, tuple[str, ...]], object]
    | None = None,
) -> RevertResult:
    """Run the down scripts the request selects, newest application first.

    ``confirm`` is called with the plan before anything is written; returning
    False cancels. Under the lock the plan is made again: if the history
    changed in between, nothing runs. ``before_revert`` and ``after_revert`` hooks
    (spawn.toml's by default) run under the lock around the down scripts.
    ``before_shared`` runs under the lock before them, with the names to revert (the
    tenant parts' down scripts, ``fleet/tenant_run.py``).
    """
    reporter = reporter or NullReporter()
    hooks = hooks or default_hooks(config, variables, reporter)
    optional = pins_optional(config, pinned)
    planner = RevertPlanner.load(config, request)
    target = config.target()
    with tracking_session(config, target) as tracking:
        plan = planner.plan(planner.sources.latest(tracking))
        if pinned and not optional:
            _require_pins(planner.sources, plan.to_revert)
        if not plan.to_revert:
            return RevertResult(plan)
        if confirm is not None and not confirm(plan):
            return RevertResult(plan, cancelled=True)
        started = time.monotonic()
        with _locked(tracking, lock_timeout, reporter):
            engine = engine_for(config, target)
            setup = SessionSetup.for_tracking(tracking)
            early = start_runner(engine, setup)
            try:
                internal = tracking.ensure()
                if internal:
                    reporter.output(f"Tracking schema {target.spawn_schema}: applied "
                                    f"{', '.join(internal)}")
                locked = planner.plan(planner.sources.latest(tracking, check=False))
                if locked.to_revert != plan.to_revert:
                    raise PlanRefused(
                        "the migration history changed while spawn waited for the lock (it "
                        f"would now revert {_listed(locked.to_revert)} instead of "
                        f"{_listed(plan.to_revert)}); nothing was reverted: check `spawn "
                        "migration status` and run the revert again")
                run = migration_run(planner.sources, engine, tracking, reporter,
                                    plan.to_revert, pinned=pinned, variables=variables,
                                    setup=setup, runner=early, activity="REVERT",
                                    unpinned_from_tree=optional)
                hooks.run("before_revert")
                tenants = (before_shared(tracking, engine, setup, plan.to_revert)
                           if before_shared is not None else None)
                outcomes = run.execute()
                hooks.run("after_revert")
            finally:
                early.stop(grace=5)
    return RevertResult(plan, outcomes, seconds=time.monotonic() - started,
                        before_shared=tenants)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "nothing"


def plan_revert(
    config: Config,
    request: RevertRequest,
    *,
    pinned: bool = True,
    variables: Any = None,
    each: Callable[[PlannedRevert, IO[bytes]], None] | None = None,
) -> tuple[RevertPlan, tuple[PlannedRevert, ...]]:
    """What ``revert`` would run, in order, without writing anything or taking the lock.

    Each down script is rendered exactly as revert renders it; ``each`` receives
    every one with its rendered SQL, in order.
    """
    optional = pins_optional(config, pinned)
    planner = RevertPlanner.load(config, request)
    with tracking_session(config) as tracking:
        plan = planner.plan(planner.sources.latest(tracking))
    if pinned and not optional:
        _require_pins(planner.sources, plan.to_revert)
    planned: list[PlannedRevert] = []
    for position, name in enumerate(plan.to_revert, 1):
        source, bare = planner.sources.split(name)
        rendered = render_migration(source.config, bare,
                                    pinned=uses_pin(source.config, bare, pinned, optional),
                                    variables=variables, position=position, script=DOWN)
        try:
            item = PlannedRevert(name, rendered.pin, rendered.checksum.hex(), rendered.size)
            planned.append(item)
            if each is not None:
                rendered.spool.seek(0)
                each(item, rendered.spool)
        finally:
            rendered.close()
    return plan, tuple(planned)
