"""Running tenant parts (``tenant.sql``, ``tenant_down.sql``) across the tenant schemas.

The caller holds the migration lock (apply, revert, ``spawn tenant create``); the tenants
then go through ``fleet.runner.run_fleet`` on ``--jobs`` worker threads. Each worker has
one long-lived runner psql session, reused tenant after tenant (a tenant is not a new
process), and one control session for its bookkeeping and the tenant's own advisory
lock. A tenant's parts are a ``runner.MigrationRun`` in the namespace ``tenant:<name>``,
so they get the ATTEMPTED and outcome rows, the streaming and the crash safety of every
migration; ``search_path`` is the tenant's schema while they run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import xxhash

from spawn_db.config import Config
from spawn_db.errors import LockUnavailable, MigrationFailed, PreviousAttemptFailed
from spawn_db.escape import Identifier
from spawn_db.fleet.runner import OK, Done, FleetProgress, FleetReport, UnitResult, run_fleet
from spawn_db.fleet.tenants import (
    Tenant,
    TenantParts,
    TenantPlan,
    plan_tenant,
    require_pins,
    tenant_context,
)
from spawn_db.migrate.apply import NullReporter
from spawn_db.migrate.migration import TENANT, TENANT_DOWN
from spawn_db.migrate.rendered import Rendered, spool_rendered, with_secrets
from spawn_db.migrate.runner import MigrationRun, SessionSetup, _Runner
from spawn_db.migrate.tracking import LOCK_SEED, HistoryRow, Tracking

if TYPE_CHECKING:
    from spawn_db.db.engine import Engine
    from spawn_db.migrate.tracking import Activity
    from spawn_db.render.template import Renderer


@dataclass(frozen=True)
class FleetRequest:
    """How to go through the tenants: ``run_fleet``'s rules and the apply flags."""

    jobs: int = 1
    canary: int = 0
    continue_on_error: bool = False
    retry: bool = False
    # Made with the number of tenants that have work, entered around the run (the CLI's
    # bar); None: no progress.
    progress: Callable[[int], AbstractContextManager[FleetProgress]] | None = None
    # apply MIGRATION: only that migration's tenant part.
    only: str | None = None


@dataclass(frozen=True)
class Phase:
    """What the locked caller lends the tenant phase: its control session (the lock
    holder), the engine, and the session setup whose lock check names that holder."""

    config: Config
    tracking: Tracking
    engine: Engine
    setup: SessionSetup
    pinned: bool = True
    unpinned_from_tree: bool = False
    variables: Any = None


def tenant_lock_key(database: str, schema: str, tenant: str) -> tuple[int, int]:
    """The two-int advisory key a tenant's parts run under (derived from where the history
    lives, so other projects' tenants of the same name do not collide)."""
    value = int(xxhash.xxh64_intdigest(f"{database}\0{schema}\0tenant\0{tenant}".encode(),
                                       seed=LOCK_SEED))
    return (value >> 32) & 0x7FFFFFFF, value & 0x7FFFFFFF


# -- rendering a tenant part -------------------------------------------------------------------


@dataclass
class _Compiled:
    pin: str | None
    plain: str | None
    renderer: Renderer | None


class TenantRenderer:
    """Renders tenant parts with ``tenant`` and ``tenant_schema`` in the context; each
    template is compiled once per worker (a compiled template is not shared between
    threads), whatever the number of tenants."""

    def __init__(self, config: Config, variables: Any) -> None:
        self.config = config
        self.variables = variables
        self.compiled: dict[tuple[str, str, bool], _Compiled] = {}

    def compile(self, name: str, script: str, pinned: bool) -> _Compiled:
        key = (name, script, pinned)
        if key not in self.compiled:
            from spawn_db.migrate.migration import compile_migration, migration_source
            from spawn_db.render.plaintext import plain_output

            source = migration_source(self.config, name, pinned=pinned, script=script)
            plain = plain_output(source.template_text)
            renderer = None if plain is not None else compile_migration(self.config, source)
            self.compiled[key] = _Compiled(source.pin if pinned else None, plain, renderer)
        return self.compiled[key]

    def render(self, name: str, script: str, tenant: Tenant, *, pinned: bool,
               position: int = 1, fetch_secrets: bool = True) -> Rendered:
        compiled = self.compile(name, script, pinned)
        if compiled.renderer is None:
            assert compiled.plain is not None
            return spool_rendered(name, [compiled.plain], position=position, pin=compiled.pin)
        context = tenant_context(self.config, self.variables, tenant)
        used = context.secrets.used if context.secrets is not None else []
        rendered = spool_rendered(name, compiled.renderer.generate(context), position=position,
                                  pin=compiled.pin, secrets=used)
        if used:
            with_secrets(rendered, self.config, self.variables,
                         f"migration {name} {script} for tenant {tenant.name}",
                         fetch=fetch_secrets)
        return rendered


# -- one tenant's run --------------------------------------------------------------------------


class TenantRun(MigrationRun):
    """A tenant's parts through the migration runner: namespace ``tenant:<name>``, the
    tenant script, ``search_path`` set to the tenant schema, and the worker's runner
    session, which outlives the run (the next tenant of this worker uses it)."""

    def __init__(self, worker: Worker, tenant: Tenant, names: Sequence[str],
                 activity: Activity) -> None:
        phase = worker.phase
        path = f"SET search_path = {Identifier.of(tenant.schema)}"
        setup = replace(phase.setup, settings=(*phase.setup.settings, path))
        # Progress is the fleet bar's: no per-migration lines for a tenant.
        super().__init__(phase.config, phase.engine, worker.tracking, NullReporter(), names,
                         pinned=phase.pinned, variables=phase.variables,
                         first_history_id=worker.first_history_id, setup=setup,
                         activity=activity, unpinned_from_tree=phase.unpinned_from_tree)
        self.worker = worker
        self.tenant = tenant
        self.namespace = tenant.namespace
        self.script = TENANT_DOWN if activity == "REVERT" else TENANT
        self.search_path = path
        self.finishing = False

    def render(self, position: int) -> Rendered:
        name = self.names[position - 1]
        rendered = self.worker.renderer.render(name, self.script, self.tenant,
                                               pinned=self.pinned_for(name), position=position)
        rendered.activity = self.activity
        rendered.migration_id = self.ids.get(name)
        self.by_position[position] = rendered
        return rendered

    def migration_settings(self, current: Rendered) -> list[str]:
        return [*super().migration_settings(current), self.search_path]

    def ensure_runner(self) -> _Runner:
        self.fail_if_ended_with_queue()
        if self.runner is None or self.runner.process.exit is not None:
            self.runner = self.worker.runner_for(self)
            self.inline = self.runner.dbname == self.tracking.session.database
        return self.runner

    def step(self, current: Rendered) -> Rendered | None:
        following = super().step(current)
        self.finishing = following is None
        return following

    def close_runner(self) -> None:
        """At the end of the run the session stays open for the worker's next tenant;
        closing it is for a migration that needs a fresh session after it."""
        if self.finishing and self.runner is not None and self.runner.process.exit is None:
            self.drain()
            self.runner = None
            return
        super().close_runner()

    def failure(self, rendered: Rendered, note: str, said: str = "psql said"
                ) -> MigrationFailed:
        name, tenant = rendered.name, self.tenant.name
        if self.activity == "REVERT":
            return MigrationFailed(
                f"reverting migration {name} failed; recorded as REVERT "
                f"FAILURE in namespace {self.namespace}. {said}:\n{note}\nFix its "
                f"{TENANT_DOWN}, then revert again")
        return MigrationFailed(
            f"migration {name} failed ({len(self.outcomes)} of {self.total} "
            f"applied before it); recorded as FAILURE in namespace {self.namespace}. "
            f"{said}:\n{note}\nFix its {TENANT} (re-pin it if you change its components), "
            f"then run `spawn migration apply --tenants {tenant} --retry`")


# -- workers -----------------------------------------------------------------------------------


class Worker:
    """One thread's sessions: a control session (bookkeeping, the tenant lock) and the
    runner psql every tenant of this worker runs in."""

    def __init__(self, phase: Phase, first_history_id: int) -> None:
        self.phase = phase
        target = phase.config.target()
        session = phase.engine.control_session(target.spawn_database)
        self.tracking = Tracking(session, phase.tracking.schema)
        self.first_history_id = first_history_id
        self.renderer = TenantRenderer(phase.config, phase.variables)
        self.runner: _Runner | None = None

    def runner_for(self, run: TenantRun) -> _Runner:
        """The worker's runner session, bound to ``run``; started on first use or after a
        failure ended the last one."""
        runner = self.runner
        if runner is None or runner.process.exit is not None:
            runner = self.runner = _Runner(run)
            return runner
        runner.run = run
        runner.process.on_output = run.reporter.output
        runner.process.on_stderr = run.notice
        runner.queued.clear()
        runner.confirmed.clear()
        return runner

    @contextmanager
    def tenant_lock(self, tenant: Tenant) -> Iterator[None]:
        """The tenant's own advisory lock, for the time its parts run."""
        k1, k2 = tenant_lock_key(self.tracking.session.database, self.tracking.schema,
                                 tenant.name)
        got = self.tracking.session.query(f"SELECT pg_try_advisory_lock({k1}, {k2})",
                                          what=f"locking tenant {tenant.name}")
        if got != "t":
            raise LockUnavailable(
                f"tenant {tenant.name} is being migrated by another session (its advisory "
                f"lock {k1}, {k2} is held); wait for it to finish, then run the command again")
        try:
            yield
        finally:
            if self.tracking.session.process.exit is None:
                self.tracking.session.query(f"SELECT pg_advisory_unlock({k1}, {k2})",
                                            what=f"unlocking tenant {tenant.name}")

    def ensure_schema(self, tenant: Tenant) -> None:
        self.tracking.session.query(
            f"CREATE SCHEMA IF NOT EXISTS {Identifier.of(tenant.schema)}",
            what=f"creating schema {tenant.schema} of tenant {tenant.name}")

    def close(self) -> None:
        if self.runner is not None:
            self.runner.process.stop(grace=5)
        self.tracking.session.close()


@dataclass
class Workers:
    """A worker per thread, made on first use, all closed at the end."""

    phase: Phase
    first_history_id: int
    local: threading.local = field(default_factory=threading.local)
    made: list[Worker] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> Worker:
        worker: Worker | None = getattr(self.local, "worker", None)
        if worker is None:
            worker = Worker(self.phase, self.first_history_id)
            self.local.worker = worker
            with self.lock:
                self.made.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.made:
            worker.close()


# -- the phases ----------------------------------------------------------------------------


def apply_tenants(phase: Phase, tenants: Sequence[Tenant], request: FleetRequest, *,
                  shared: Mapping[str, HistoryRow] | None = None,
                  history: Mapping[str, Mapping[str, HistoryRow]] | None = None,
                  create: bool = True) -> FleetReport:
    """Apply every pending tenant part in each of ``tenants`` (creating missing schemas):
    the history of the whole fleet is read in one query (unless given), and only tenants
    with something to do reach a worker."""
    from spawn_db.fleet.tenants import fleet_history

    if shared is None or history is None:
        # The caller holds the lock and has made sure the tracking schema is there.
        shared, history = fleet_history(phase.tracking, exists=True)
    parts = TenantParts.load(phase.config)
    plans = {t.name: plan_tenant(t, parts, shared, history.get(t.name, {}),
                                 retry=request.retry, only=request.only) for t in tenants}
    require_pins(phase.config, sorted({n for p in plans.values() for n in p.to_run}),
                 pinned=phase.pinned, unpinned_from_tree=phase.unpinned_from_tree)

    def work(worker: Worker, plan: TenantPlan) -> Done:
        applied: list[str] = []
        if plan.to_run:
            with worker.tenant_lock(plan.tenant):
                if create:
                    worker.ensure_schema(plan.tenant)
                outcomes = TenantRun(worker, plan.tenant, plan.to_run, "APPLY").execute()
                applied = [o.name for o in outcomes]
        if plan.blocked is not None:
            raise blocked(plan)
        noun = "part" if len(applied) == 1 else "parts"
        return Done(f"{len(applied)} tenant {noun} applied", {"applied": applied})

    return _run(phase, plans, request, work, idle="up to date")


def revert_tenants(phase: Phase, tenants: Sequence[Tenant], names: Sequence[str],
                   request: FleetRequest) -> FleetReport:
    """Run ``tenant_down.sql`` of those of ``names`` (newest first) each tenant has
    applied, before the shared down scripts run."""
    from spawn_db.fleet.tenants import fleet_history

    _, history = fleet_history(phase.tracking, exists=True)
    plans: dict[str, TenantPlan] = {}
    for tenant in tenants:
        plans[tenant.name] = TenantPlan(tenant, applied_parts(history.get(tenant.name, {}),
                                                             names))

    def work(worker: Worker, plan: TenantPlan) -> Done:
        with worker.tenant_lock(plan.tenant):
            outcomes = TenantRun(worker, plan.tenant, plan.to_run, "REVERT").execute()
        reverted = [o.name for o in outcomes]
        noun = "part" if len(reverted) == 1 else "parts"
        return Done(f"{len(reverted)} tenant {noun} reverted", {"reverted": reverted})

    return _run(phase, plans, request, work, idle="nothing to revert")


def applied_parts(rows: Mapping[str, HistoryRow], names: Sequence[str]) -> tuple[str, ...]:
    """Those of ``names`` whose tenant part a tenant (its latest ``rows``) has applied: what
    a revert of ``names`` runs ``tenant_down.sql`` for, in that order."""
    from spawn_db.migrate.plan import is_done, state_of

    return tuple(n for n in names if n in rows and is_done(state_of(rows[n])))


def blocked(plan: TenantPlan) -> PreviousAttemptFailed:
    what = "failed" if plan.blocked_state == "failed" else "was attempted but never completed"
    tenant = plan.tenant.name
    return PreviousAttemptFailed(
        f"migration {plan.blocked} {what} in an earlier run, so spawn stops "
        f"before it; fix its {TENANT} and run `spawn migration apply --tenants {tenant} "
        "--retry`")


def _run(phase: Phase, plans: Mapping[str, TenantPlan], request: FleetRequest,
         work: Callable[[Worker, TenantPlan], Done], *, idle: str) -> FleetReport:
    """``work`` for every tenant with something to do, through ``run_fleet``; the others
    are reported ``idle`` without a session or a query of their own."""
    busy = [name for name, plan in plans.items() if not plan.up_to_date]
    results: dict[str, UnitResult] = {}
    if busy:
        workers = Workers(phase, phase.tracking.last_history_id())
        shown = request.progress(len(busy)) if request.progress else nullcontext(None)
        try:
            with shown as progress:
                report = run_fleet(busy, lambda name: work(workers.get(), plans[name]),
                                   jobs=request.jobs, canary=request.canary,
                                   continue_on_error=request.continue_on_error,
                                   progress=progress)
        finally:
            workers.close()
        results = {r.name: r for r in report.results}
    return FleetReport(tuple(results.get(name, UnitResult(name, OK, 0.0, idle, data={}))
                             for name in plans))

