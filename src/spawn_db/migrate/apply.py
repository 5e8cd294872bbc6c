"""Apply, adopt and status (SPEC §3, §6) as library functions.

This module plans what runs and holds the migration lock around it; running
the planned migrations through psql (and why that is both fast and
crash-safe) is ``apply_runner``'s part.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from spawn_db.config import DEFAULT_LOCK_TIMEOUT, Config, PinRule, TargetConfig
from spawn_db.db.engine import engine_for
from spawn_db.errors import (
    MigrationStillRunning,
    NotPinned,
    PreviousAttemptFailed,
    SpawnError,
    UsageError,
)
from spawn_db.migrate.baseline import Executes
from spawn_db.migrate.plan import ApplyPlan as ApplyPlan
from spawn_db.migrate.plan import BaselineStep, PlanRequest, applied_out_of_order, baseline_step
from spawn_db.migrate.plan import State as State
from spawn_db.migrate.plan import is_done as is_done
from spawn_db.migrate.plan import plan as make_plan
from spawn_db.migrate.plan import state_of as state_of
from spawn_db.migrate.rendered import render_migration, uses_pin
from spawn_db.migrate.runner import ApplyReporter as ApplyReporter
from spawn_db.migrate.runner import MigrationOutcome as MigrationOutcome
from spawn_db.migrate.runner import MigrationRun, SessionSetup, start_runner
from spawn_db.migrate.settings import MigrationSettings
from spawn_db.migrate.sources import Sources, StretchedRun
from spawn_db.migrate.tracking import (
    MAX_NAME_LENGTH,
    HistoryRow,
    LockHolder,
    Record,
    Tracking,
)
from spawn_db.project import Project

if TYPE_CHECKING:
    from spawn_db.db.engine import Engine
    from spawn_db.migrate.drift import RenderCache
    from spawn_db.migrate.hooks import Hooks
    from spawn_db.migrate.repeatable import (
        PlannedRepeatable,
        RepeatableRequest,
        RepeatableResult,
        RepeatableStatus,
        Selection,
    )


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did: the ``plan`` it ran (``plan.to_run``, ``plan.already_applied``,
    ``plan.warnings``), one outcome per migration ``applied`` in order (name, seconds,
    rendered size), the tracking schema's own migrations it applied first
    (``internal_applied``), whether ``confirm`` said no (``cancelled``), the run's wall
    clock ``seconds``, and the repeatables it ran (None when none were considered)."""

    plan: ApplyPlan
    applied: list[MigrationOutcome] = field(default_factory=list)
    internal_applied: list[str] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    repeatables: RepeatableResult | None = None
    adopted: tuple[str, ...] = ()  # recorded as ADOPT by a baseline (migrate/baseline.py)
    # What ``apply``'s ``after_shared`` returned (the tenant phase's report, fleet/).
    after_shared: object = None


@dataclass(frozen=True)
class AdoptResult:
    """What an adopt recorded: the migrations ``adopted`` (ADOPT rows, in order), those
    left alone because they were ``already_applied``, and whether ``confirm`` said no
    (``cancelled``)."""

    adopted: tuple[str, ...]
    already_applied: tuple[str, ...]
    cancelled: bool = False


@dataclass(frozen=True)
class MigrationStatus:
    """One row of ``spawn migration status``: whether the migration is on the file
    system, pinned and in the database; its ``state`` (applied, adopted, attempted,
    failed, pending, reverted, draft, modified, broken); its latest history row; the
    ``problem`` behind a modified or broken state; the checksum it renders to now; and
    ``description``, ``requires`` and ``out_of_order`` from migration.toml and history."""

    name: str
    on_filesystem: bool
    pinned: bool
    in_database: bool
    state: State
    latest: HistoryRow | None
    problem: str | None = None
    checksum_now: str | None = None
    description: str = ""
    requires: tuple[str, ...] = ()
    out_of_order: bool = False
    replaced_by: str | None = None  # the newest baseline, for a migration older than it


@dataclass(frozen=True)
class StatusReport:
    """``spawn migration status``: the database and tracking schema read, whether that
    schema exists yet, every migration on disk or in the history (name order), the pin
    rule in force and the repeatable migrations' states."""

    database: str
    schema: str
    tracking_exists: bool
    migrations: tuple[MigrationStatus, ...]
    pin_rule: PinRule | None = None
    repeatables: tuple[RepeatableStatus, ...] = ()
    baseline: BaselineStep | None = None
    # The migrations of each [[sources]] folder (migrate/sources.py), by source name;
    # ``migrations`` are the main folder's.
    sources: tuple[SourceStatus, ...] = ()

    def named(self) -> list[tuple[str, MigrationStatus]]:
        """Every row with the name people type: ``audit:<m>`` for a source's."""
        return [*((m.name, m) for m in self.migrations),
                *((f"{s.name}:{m.name}", m) for s in self.sources for m in s.migrations)]

    @property
    def troubled(self) -> list[MigrationStatus]:
        """Migrations whose files are broken or changed since they were applied."""
        every = [*self.migrations, *(m for s in self.sources for m in s.migrations)]
        return [m for m in every if m.state in ("modified", "broken")]


@dataclass(frozen=True)
class SourceStatus:
    """The status rows of one ``[[sources]]`` folder (names without the source prefix)."""

    name: str
    folder: str
    migrations: tuple[MigrationStatus, ...]


class NullReporter:
    def waiting_for_lock(self, holders: Sequence[LockHolder], waited: float) -> None:
        pass

    def started(self, name: str, position: int, total: int, elapsed: float) -> None:
        pass

    def finished(self, outcome: MigrationOutcome, position: int, total: int,
                 elapsed: float) -> None:
        pass

    def output(self, text: str) -> None:
        pass


# -- sessions ------------------------------------------------------------------------------


@contextmanager
def tracking_session(config: Config, target: TargetConfig | None = None) -> Iterator[Tracking]:
    """A control session on the target's ``spawn_database``, closed afterwards."""
    target = target or config.target()
    session = engine_for(config, target).control_session(target.spawn_database)
    try:
        yield Tracking(session, target.spawn_schema)
    finally:
        session.close()


def read_history(config: Config) -> dict[str, HistoryRow]:
    """The latest row of every migration (namespace ``default``), read without the lock;
    empty when the tracking schema does not exist yet (nothing is created)."""
    with tracking_session(config) as tracking:
        return tracking.latest() if tracking.exists() else {}


@contextmanager
def _locked(tracking: Tracking, timeout: float, reporter: ApplyReporter) -> Iterator[None]:
    """Hold the migration lock; refuse to start while a stopped spawn's migration still
    runs, and let go only once this run's own migration sessions have ended.

    An error while letting go never replaces the error that ended the run.
    """
    tracking.lock(timeout, reporter.waiting_for_lock)
    failed = True
    try:
        _refuse_orphans(tracking)
        yield
        failed = False
    finally:
        _release(tracking, quiet=failed)


def _refuse_orphans(tracking: Tracking) -> None:
    orphans = tracking.runner_holders()
    if not orphans:
        return
    who = "; ".join(h.describe() for h in orphans)
    pids = ", ".join(str(h.pid) for h in orphans)
    raise MigrationStillRunning(
        f"a migration started by a spawn that has stopped is still running ({who}); "
        "wait for it to end and check what it did before you apply, retry or adopt "
        f"(to stop it now: SELECT pg_terminate_backend({pids.split(', ')[0]}))"
    )


def _release(tracking: Tracking, *, quiet: bool) -> None:
    if tracking.session.process.exit is not None:
        tracking.locked = False
        return
    try:
        tracking.end_runners()
        tracking.unlock()
    except SpawnError:
        tracking.locked = False
        if not quiet:
            raise


# -- the library functions ------------------------------------------------------------------


def apply(
    config: Config,
    migration: str | None = None,
    *,
    pinned: bool = True,
    retry: bool = False,
    variables: Any = None,
    reporter: ApplyReporter | None = None,
    confirm: Callable[[ApplyPlan], bool] | None = None,
    repeatables: RepeatableRequest | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    with_requires: bool = False,
    allow_draft: bool = False,
    again: bool = False,
    hooks: Hooks | None = None,
    after_shared: Callable[[Tracking, Engine, SessionSetup], object] | None = None,
) -> ApplyResult:
    """Apply ``migration``, or every pending migration in order (SPEC §6).

    ``confirm`` is called with the plan before anything is written; returning
    False cancels. The plan is checked again once the lock is held, and only
    migrations that were confirmed and still need to run are run, then the changed
    repeatable migrations. ``again`` runs the named draft even if it is applied (``spawn
    watch``). ``hooks`` (spawn.toml's by default) run under the lock: ``before_apply``
    when something is to run, ``after_apply`` when something ran (migrations or
    repeatables), ``after_apply_error`` when the run failed, and those around each
    migration in ``MigrationRun``. ``after_shared`` runs last, still under the lock, unless
    the plan is blocked (the tenant parts, ``fleet/tenant_run.py``); what it returns is
    ``ApplyResult.after_shared``.
    """
    reporter = reporter or NullReporter()
    hooks = hooks or default_hooks(config, variables, reporter)
    optional = pins_optional(config, pinned)
    planner = Planner.load(config, migration, retry=retry, with_requires=with_requires,
                           allow_draft=allow_draft, again=again)
    target = config.target()
    with tracking_session(config, target) as tracking:
        plan = planner.plan(planner.sources.latest(tracking))
        # Then the changed repeatable migrations (migrate/repeatable.py; ``repeatables``
        # says which): rendered now, before the lock, so that a template error stops the
        # apply before anything runs; compared with the history under the lock; not run
        # when a migration failed or a failed or attempted one blocks the plan.
        selection = select_repeatables(config, repeatables, variables, migration)
        if pinned and not optional:
            _require_pins(planner.sources, plan.to_run)
        if confirm is not None and plan.to_run and not confirm(plan):
            return ApplyResult(plan, cancelled=True)
        started = time.monotonic()
        confirmed = set(plan.to_run)
        with _locked(tracking, lock_timeout, reporter):
            engine = engine_for(config, target)
            setup = SessionSetup.for_tracking(tracking)
            early = start_runner(engine, setup) if confirmed else None
            try:
                internal = tracking.ensure()
                if internal:
                    reporter.output(f"Tracking schema {target.spawn_schema}: applied "
                                    f"{', '.join(internal)}")
                locked_plan = planner.plan(planner.sources.latest(tracking, check=False))
                to_run = [n for n in locked_plan.to_run if n in confirmed]
                plan = dataclasses.replace(locked_plan, to_run=tuple(to_run))
                def make_run(names: list[str], first: bool) -> Executes:
                    return migration_run(planner.sources, engine, tracking, reporter, names,
                                         pinned=pinned, variables=variables, setup=setup,
                                         runner=early if first else None,
                                         unpinned_from_tree=optional, hooks=hooks)

                run = _baseline_run(plan, to_run, tracking, config, make_run)
                then = None
                if selection is not None and selection.renderings and plan.blocked is None:
                    then = _Repeatables(config, tracking, engine, setup, reporter, variables,
                                        selection)
                outcomes, repeated = _run_with_hooks(run, hooks, then)
            finally:
                if early is not None:
                    early.stop(grace=5)
            after = (after_shared(tracking, engine, setup)
                     if after_shared is not None and plan.blocked is None else None)
    if plan.blocked is not None:
        raise _blocked(plan)
    return ApplyResult(plan, outcomes, internal, seconds=time.monotonic() - started,
                       repeatables=repeated, adopted=tuple(getattr(run, "adopted", ())),
                       after_shared=after)


def _baseline_run(plan: ApplyPlan, to_run: list[str], tracking: Tracking, config: Config,
                  make_run: Callable[[list[str], bool], Executes]) -> Executes:
    """One run of ``to_run``; with a baseline to adopt, ``baseline.BaselineRun``'s two."""
    if plan.baseline is None or not plan.baseline.adopt:
        return make_run(to_run, True)
    from spawn_db.migrate.baseline import BaselineRun

    return BaselineRun(plan.baseline, to_run, tracking, Project(config), make_run)


def migration_run(sources: Sources, engine: Engine, tracking: Tracking,
                  reporter: ApplyReporter, names: Sequence[str], **kwargs: Any
                  ) -> MigrationRun | StretchedRun:
    """The run of ``names``: one ``MigrationRun`` for the main folder's migrations, a
    ``StretchedRun`` when ``[[sources]]`` add folders (each in its own namespace)."""
    if sources.several:
        return StretchedRun(sources, names, reporter, tracking, engine=engine, **kwargs)
    return MigrationRun(sources.config, engine, tracking, reporter, names,
                        first_history_id=tracking.last_history_id(), **kwargs)


def select_repeatables(config: Config, request: RepeatableRequest | None, variables: Any,
                       migration: str | None) -> Selection | None:
    """The repeatables an apply considers, rendered (``RepeatableRequest.select``)."""
    from spawn_db.migrate.repeatable import RepeatableRequest

    return (request or RepeatableRequest()).select(config, variables=variables,
                                                   migration=migration)


def default_hooks(config: Config, variables: Any, reporter: ApplyReporter) -> Hooks:
    """spawn.toml's hooks, printing through ``reporter``."""
    from spawn_db.migrate.hooks import Hooks

    return Hooks(config, variables, output=reporter.output)


@dataclass
class _Repeatables:
    """The repeatables an apply runs after its migrations, under the same lock."""

    config: Config
    tracking: Tracking
    engine: Engine
    setup: SessionSetup
    reporter: ApplyReporter
    variables: Any
    selection: Selection

    def pending(self) -> bool:
        from spawn_db.migrate.repeatable import NAMESPACE

        return bool(self.selection.against(self.tracking.latest(NAMESPACE)).names)

    def run(self) -> RepeatableResult:
        from spawn_db.migrate.repeatable import run_repeatables

        return run_repeatables(self.config, self.tracking, engine=self.engine,
                               setup=self.setup, reporter=self.reporter,
                               variables=self.variables, selection=self.selection)


def _run_with_hooks(run: Executes, hooks: Hooks, then: _Repeatables | None
                    ) -> tuple[list[MigrationOutcome], RepeatableResult | None]:
    """``run.execute()`` and then the repeatables, between the apply hooks; a failed run
    (or ``before_apply``) runs ``after_apply_error`` and keeps its own error."""
    if not run.names and (then is None or not then.pending()):
        return run.execute(), then.run() if then is not None else None
    try:
        hooks.run("before_apply")
        outcomes = run.execute()
        repeated = then.run() if then is not None else None
    except SpawnError:
        hooks.run_quietly("after_apply_error")
        raise
    if outcomes or (repeated is not None and repeated.applied):
        hooks.run("after_apply")
    return outcomes, repeated


@dataclass(frozen=True)
class PlannedMigration:
    """One migration an apply would run: its pin and the checksum of its rendered SQL
    (xxHash3-128 hex, as ``migration_history.checksum`` will record it), and whether a
    verify script runs after it (``migrate/verify.py``)."""

    name: str
    pin: str | None
    checksum: str
    size: int
    verify: bool = False


@dataclass(frozen=True)
class DryRun:
    """``apply --dry-run``: the plan, each migration that would run (``migrations``, in
    order, with pin and checksum), and the repeatables that would run after them
    (``repeatables``) or not (``repeatables_unchanged``); ``repeatables_considered`` is
    False when this apply would not look at repeatables at all."""

    plan: ApplyPlan
    migrations: tuple[PlannedMigration, ...]
    repeatables: tuple[PlannedRepeatable, ...] = ()
    repeatables_unchanged: tuple[str, ...] = ()
    repeatables_considered: bool = False

    @property
    def refusal(self) -> PreviousAttemptFailed | None:
        """The error apply would end with (after running ``migrations``), if any."""
        return None if self.plan.blocked is None else _blocked(self.plan)


def plan_apply(
    config: Config,
    migration: str | None = None,
    *,
    pinned: bool = True,
    retry: bool = False,
    variables: Any = None,
    each: Callable[[PlannedMigration, IO[bytes]], None] | None = None,
    with_requires: bool = False,
    allow_draft: bool = False,
    repeatables: RepeatableRequest | None = None,
    each_repeatable: Callable[[PlannedRepeatable, IO[bytes]], None] | None = None,
) -> DryRun:
    """What ``apply`` would run, in order, without writing anything or taking the lock.

    The history is read through a control session, and the plan is the ``Planner``'s,
    as apply makes it before it locks; each migration is rendered exactly as apply
    renders it (``render_migration``), so a template error shows here too, in its
    verify.sql as well. ``each`` receives every planned migration with its rendered SQL,
    in order.
    """
    from spawn_db.migrate.verify import has_verify, render_verify

    optional = pins_optional(config, pinned)
    planner = Planner.load(config, migration, retry=retry, with_requires=with_requires,
                           allow_draft=allow_draft)
    with tracking_session(config) as tracking:
        plan = planner.plan(planner.sources.latest(tracking))
    if pinned and not optional:
        _require_pins(planner.sources, plan.to_run)
    planned: list[PlannedMigration] = []
    for position, name in enumerate(plan.to_run, 1):
        source, bare = planner.sources.split(name)
        from_pin = uses_pin(source.config, bare, pinned, optional)
        rendered = render_migration(source.config, bare, pinned=from_pin, variables=variables,
                                    position=position, fetch_secrets=False)
        try:
            verify = has_verify(source.config, bare)
            if verify:
                render_verify(source.config, bare, pinned=from_pin, variables=variables).close()
            item = PlannedMigration(name, rendered.pin, rendered.checksum.hex(), rendered.size,
                                    verify)
            planned.append(item)
            if each is not None:
                rendered.spool.seek(0)
                each(item, rendered.spool)
        finally:
            rendered.close()
    return _with_repeatables(config, DryRun(plan, tuple(planned)), migration, variables,
                             repeatables, each_repeatable)


def _with_repeatables(config: Config, dry: DryRun, migration: str | None, variables: Any,
                      request: RepeatableRequest | None,
                      each: Callable[[PlannedRepeatable, IO[bytes]], None] | None) -> DryRun:
    """The repeatables apply would run after the plan's migrations (none when the plan is
    blocked, as apply would stop first), rendered as apply renders them."""
    from spawn_db.migrate.repeatable import RepeatableRequest, plan_repeatables, read_states

    request = request or RepeatableRequest()
    if request.skip or (migration is not None and not request.named):
        return dry
    if dry.plan.blocked is not None:
        return dry
    planned, unchanged = plan_repeatables(config, read_states(config), variables=variables,
                                          force=request.named,
                                          only=request.named or None, each=each)
    return dataclasses.replace(dry, repeatables=planned, repeatables_unchanged=unchanged,
                               repeatables_considered=bool(planned or unchanged))


@dataclass(frozen=True)
class Planner:
    """Everything a plan needs from the files, loaded once; ``plan`` takes the history.

    apply plans twice (before confirming, and again under the lock), and both
    plans must come from the same files.
    """

    names: tuple[str, ...]
    settings: Mapping[str, MigrationSettings]
    request: PlanRequest
    sources: Sources

    @classmethod
    def load(cls, config: Config, migration: str | None, *, retry: bool = False,
             with_requires: bool = False, allow_draft: bool = False,
             again: bool = False) -> Planner:
        sources = Sources(config)
        names = sources.names
        named = sources.resolve(migration) if migration else None
        _check_names([sources.split(n)[1] for n in ([named] if named else names)])
        settings = sources.settings(names)
        request = PlanRequest(named, retry, with_requires, allow_draft,
                              config.migration_order == "strict", config.environment, again,
                              sources.key if sources.several else None)
        return cls(tuple(names), settings, request, sources)

    def plan(self, states: Mapping[str, HistoryRow]) -> ApplyPlan:
        return make_plan(self.names, self.settings, states, self.request)

    @property
    def warnings(self) -> list[str]:
        return [w for s in self.settings.values() for w in s.warnings]


def pins_optional(config: Config, pinned: bool) -> bool:
    """Check ``--no-pin`` (``pinned`` False) against the pin rule; True when an unpinned
    migration may deploy from the working tree without it (``pin = "optional"``)."""
    if not pinned:
        refuse_no_pin(config)
        return False
    return config.pin_rule().mode == "optional"


def refuse_no_pin(config: Config) -> None:
    """``--no-pin`` deploys what the working tree says now; where pins are enforced (an
    environment that requires them, ``prod`` by default) that is refused."""
    rule = config.pin_rule()
    if not rule.no_pin_allowed:
        raise UsageError(
            f"--no-pin is refused here: {rule.describe()}; pin the migrations (`spawn migration "
            f"pin`), or deploy to a target whose environment allows it "
            f'([environments.{config.environment}] pin = "optional" in spawn.toml)')


def _check_names(names: Sequence[str]) -> None:
    for name in names:
        if len(name) > MAX_NAME_LENGTH:
            raise UsageError(
                f"migration name {name[:40]}... is {len(name)} characters long; the tracking "
                f"table holds at most {MAX_NAME_LENGTH}: rename its folder"
            )


def _require_pins(sources: Sources, names: Sequence[str]) -> None:
    unpinned = [n for n in names if not (sources.folder(n) / "lock.toml").is_file()]
    if unpinned:
        more = f" (and {len(unpinned) - 1} more)" if len(unpinned) > 1 else ""
        raise NotPinned(
            f"migration {unpinned[0]}{more} is not pinned (no lock.toml); run "
            f"`spawn migration pin {unpinned[0]}` first, or apply from the working tree "
            "with --no-pin"
        )


def _blocked(plan: ApplyPlan) -> PreviousAttemptFailed:
    name = plan.blocked
    what = "failed" if plan.blocked_state == "failed" else "was attempted but never completed"
    if plan.blocked_activity == "REVERT":
        # Its down script stopped part way: neither up.sql (again) nor adopt can be right
        # until the revert is finished.
        return PreviousAttemptFailed(
            f"reverting migration {name} {what} in an earlier run, so apply stops before it; "
            f"fix its down.sql and run `spawn migration revert {name} --retry` to finish the "
            "revert, then apply again"
        )
    return PreviousAttemptFailed(
        f"migration {name} {what} in an earlier run, so spawn stops before it; fix it and run "
        f"`spawn migration apply --retry` (or `spawn migration apply {name} --retry`), or, if "
        f"you completed it by hand, `spawn migration adopt {name}`"
    )


def adopt(
    config: Config,
    migration: str | None = None,
    *,
    description: str = "",
    confirm: Callable[[Sequence[str]], bool] | None = None,
    reporter: ApplyReporter | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> AdoptResult:
    """Record migrations as applied without running them (activity ADOPT, empty checksum).

    Allowed over a failure or an attempt; over a success it records nothing.
    Without a name, every migration that is not applied is adopted, of every source
    (``[[sources]]``: each recorded in its source's namespace, named ``<source>:<m>``).
    """
    reporter = reporter or NullReporter()
    sources = Sources(config)
    names = [sources.resolve(migration)] if migration else sources.names
    _check_names([sources.split(n)[1] for n in names])
    with tracking_session(config) as tracking:
        states = sources.latest(tracking)
        wanted = [n for n in names if not is_done(state_of(states.get(n)))]
        if confirm is not None and wanted and not confirm(wanted):
            return AdoptResult((), (), cancelled=True)
        with _locked(tracking, lock_timeout, reporter):
            tracking.ensure()
            states = sources.latest(tracking, check=False)
            todo = [n for n in wanted if not is_done(state_of(states.get(n)))]
            done = tuple(n for n in names if n not in todo)
            tracking.write([_adopt_record(sources, n, description) for n in todo],
                           durable=True)
    return AdoptResult(tuple(todo), done)


def _adopt_record(sources: Sources, qualified: str, description: str) -> Record:
    """The ADOPT row of one migration, in its source's namespace, with its pin if any."""
    from spawn_db.pin.store import read_lock

    source, bare = sources.split(qualified)
    return Record(bare, "ADOPT", "SUCCESS", pin_hash=read_lock(source.config.migrations_dir / bare),
                  description=description, namespace=source.name)


def status(config: Config, *, variables: Any = None, verify: bool = True) -> StatusReport:
    """Every migration on disk or in the database, with its state; never writes to the
    database (a render cache under ``.spawn/`` aside).

    A ``lock.toml`` that cannot be read, or whose root object is missing, makes
    its migration ``broken``; an applied migration whose pin or rendered
    checksum no longer matches its history row is ``modified`` (``verify``;
    see ``drift.applied_drift``, which renders with ``variables``).
    """
    from spawn_db.migrate.drift import RENDER_CACHE, RenderCache
    from spawn_db.migrate.repeatable import NAMESPACE, repeatable_status

    sources = Sources(config)
    on_disk = sources.names
    target = config.target()
    settings = sources.settings(on_disk)
    with tracking_session(config, target) as tracking:
        exists = tracking.exists()
        states = sources.latest(tracking, check=False) if exists else {}
        repeated = tracking.latest(NAMESPACE) if exists else {}
        database = tracking.session.database
    cache = RenderCache(config.project_dir / RENDER_CACHE) if verify else None
    step = baseline_step(on_disk, settings, states)
    # A fresh baseline's ADOPT rows come after it, which is no out-of-order apply.
    late = (applied_out_of_order(states, sources.key if sources.several else None)
            - set(step.replaced if step else ()))
    present = set(on_disk)
    rows: dict[str, list[MigrationStatus]] = {s.name: [] for s in sources.items}
    for name in sorted(present | set(states)):
        source, bare = sources.split(name)
        found = _with_settings(
            _migration_status(source.config, bare, name in present, states.get(name),
                              variables, cache), settings.get(name), name in late)
        if step is not None and source is sources.main and name < step.name:
            found = dataclasses.replace(found, replaced_by=step.name)
        if found.problem is not None and name != bare:
            found = dataclasses.replace(found, problem=_named(found.problem, bare, name))
        rows[source.name].append(found)
    if cache is not None:
        cache.save()
    grouped = tuple(SourceStatus(s.name, s.display, tuple(rows[s.name]))
                    for s in sources.items[1:])
    return StatusReport(database, target.spawn_schema, exists, tuple(rows[sources.main.name]),
                        config.pin_rule(),
                        tuple(repeatable_status(config, repeated, variables=variables)),
                        baseline=step, sources=grouped)


def _named(problem: str, bare: str, name: str) -> str:
    """A source migration's problem, which starts with its folder name (``migration <m>``
    or ``<m>``), naming it ``audit:<m>`` as people type it."""
    for start in (f"migration {bare}", bare):
        if problem.startswith(start):
            return start.replace(bare, name) + problem[len(start):]
    return problem


def _with_settings(found: MigrationStatus, settings: MigrationSettings | None,
                   out_of_order: bool) -> MigrationStatus:
    """What migration.toml adds to a status row: a pending draft shows as ``draft``."""
    if settings is None:
        return dataclasses.replace(found, out_of_order=out_of_order)
    state: State = found.state
    if settings.draft and state in ("pending", "reverted"):
        state = "draft"
    return dataclasses.replace(found, state=state, description=settings.description,
                               requires=settings.requires, out_of_order=out_of_order)


def _migration_status(config: Config, name: str, present: bool, row: HistoryRow | None,
                      variables: Any, cache: RenderCache | None) -> MigrationStatus:
    """One row of the status: the database's state, unless the files say otherwise."""
    from spawn_db.errors import PinStoreError, SpawnError
    from spawn_db.migrate.drift import applied_drift, pin_problem

    state = state_of(row)
    if not present:
        return MigrationStatus(name, False, False, row is not None, state, row)
    pin, problem = pin_problem(config, name)
    if problem is not None:
        return MigrationStatus(name, True, False, row is not None, "broken", row, problem)
    base = MigrationStatus(name, True, pin is not None, row is not None, state, row)
    if row is None or not is_done(state) or cache is None:
        return base
    try:
        drift = applied_drift(config, name, row, pin, variables, cache)
    except PinStoreError as exc:
        return dataclasses.replace(base, state="broken", problem=exc.message)
    except SpawnError as exc:
        return dataclasses.replace(
            base, state="modified",
            problem=f"{name} no longer renders as applied: {exc.message}")
    if drift.modified:
        return dataclasses.replace(base, state="modified", problem=drift.reason,
                                   checksum_now=drift.checksum_now)
    return dataclasses.replace(base, problem=drift.reason, checksum_now=drift.checksum_now)
