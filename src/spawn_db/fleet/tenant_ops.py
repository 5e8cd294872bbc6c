"""``spawn tenant list | create | drop`` and the tenant side of apply, revert and status, as
library functions the CLI calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any

from spawn_db.config import DEFAULT_LOCK_TIMEOUT, Config
from spawn_db.errors import MigrationFailed, UsageError
from spawn_db.escape import Identifier, escape_literal
from spawn_db.fleet.runner import FleetReport
from spawn_db.fleet.tenant_run import (
    FleetRequest,
    Phase,
    TenantRenderer,
    applied_parts,
    apply_tenants,
    revert_tenants,
)
from spawn_db.fleet.tenants import (
    Tenant,
    TenantParts,
    TenantPlan,
    fleet_history,
    load_tenants,
    make_tenants,
    plan_tenant,
    require_pins,
    select,
    source_label,
    tenants_config,
)

if TYPE_CHECKING:
    from spawn_db.db.engine import Engine
    from spawn_db.db.psql import ControlSession
    from spawn_db.migrate.runner import SessionSetup
    from spawn_db.migrate.tracking import Tracking

from spawn_db.migrate.tracking import HistoryRow


def _lender(tracking: Tracking) -> Callable[[], ControlSession]:
    """The session a ``[tenants] query`` runs in: the tracking session (the target's
    database, unless spawn_database is set)."""
    return lambda: tracking.session


def selected_tenants(config: Config, tracking: Tracking, choice: str) -> list[Tenant]:
    """``--tenants`` resolved against the source (the query runs now, if it is one)."""
    if choice == "none":
        return []
    return select(load_tenants(config, _lender(tracking)), choice, source_label(config))


def default_choice(config: Config, given: str | None) -> str:
    """``--tenants``' default: ``all`` when spawn.toml has [tenants], else ``none``; naming
    tenants without [tenants] is a usage error."""
    if given is None:
        return "all" if config.tenants is not None else "none"
    if given != "none":
        tenants_config(config)
    return given


def after_shared_phase(config: Config, given: str | None, request: FleetRequest, *,
                       migration: str | None = None, pinned: bool = True,
                       variables: Any = None) -> Any:
    """apply's ``after_shared`` for ``--tenants`` ``given`` (None: the default), with the
    tenant parts' pins checked now; None when no tenant runs. ``migration`` (as typed)
    limits it to that migration's tenant part (a source's migration has none)."""
    choice = default_choice(config, given)
    if choice == "none":
        return None
    from spawn_db.migrate.apply import pins_optional

    if migration is not None:
        from spawn_db.migrate.sources import Sources

        request = replace(request, only=Sources(config).resolve(migration))
    return tenant_phase(config, choice, request, pinned=pinned,
                        unpinned_from_tree=pins_optional(config, pinned), variables=variables)


def before_shared_phase(config: Config, given: str | None, request: FleetRequest, *,
                        pinned: bool = True, variables: Any = None,
                        report: Callable[[FleetReport], None] | None = None) -> Any:
    """revert's ``before_shared`` for ``--tenants`` ``given``: the tenant parts' down
    scripts, or None when no tenant runs."""
    choice = default_choice(config, given)
    if choice == "none":
        return None
    from spawn_db.migrate.apply import pins_optional

    return revert_phase(config, choice, request, pinned=pinned,
                        unpinned_from_tree=pins_optional(config, pinned), variables=variables,
                        report=report)


def tenant_phase(config: Config, choice: str, request: FleetRequest, *, pinned: bool = True,
                 unpinned_from_tree: bool = False, variables: Any = None
                 ) -> Callable[[Tracking, Engine, SessionSetup], FleetReport]:
    """apply's ``after_shared``: the tenant parts of the selected tenants, under apply's
    lock, once the shared parts ran."""
    require_pins(config, TenantParts.load(config).names, pinned=pinned,
                 unpinned_from_tree=unpinned_from_tree)

    def run(tracking: Tracking, engine: Engine, setup: SessionSetup) -> FleetReport:
        tenants = selected_tenants(config, tracking, choice)
        if not tenants:
            return FleetReport(())
        phase = Phase(config, tracking, engine, setup, pinned, unpinned_from_tree, variables)
        return apply_tenants(phase, tenants, request)

    return run


def revert_phase(config: Config, choice: str, request: FleetRequest, *, pinned: bool = True,
                 unpinned_from_tree: bool = False, variables: Any = None,
                 report: Callable[[FleetReport], None] | None = None,
                 ) -> Callable[[Tracking, Engine, SessionSetup, tuple[str, ...]], FleetReport]:
    """revert's ``before_shared``: each tenant's ``tenant_down.sql`` of the migrations being
    reverted; any tenant failing stops the revert before the shared down scripts."""
    def run(tracking: Tracking, engine: Engine, setup: SessionSetup,
            names: tuple[str, ...]) -> FleetReport:
        parts = TenantParts.load(config)
        with_parts = [n for n in names if n in parts.names]
        tenants = selected_tenants(config, tracking, choice) if with_parts else []
        if not tenants:
            return FleetReport(())
        _require_tenant_down(config, with_parts)
        phase = Phase(config, tracking, engine, setup, pinned, unpinned_from_tree, variables)
        fleet = revert_tenants(phase, tenants, with_parts, request)
        if report is not None:
            report(fleet)
        if not fleet.ok:
            raise MigrationFailed(
                f"{len(fleet.failed)} of {len(fleet.results)} tenants failed to revert their "
                "tenant parts, so the shared down scripts did not run; fix the failures above "
                "and revert again")
        return fleet

    return run


def _require_tenant_down(config: Config, names: list[str]) -> None:
    from spawn_db.migrate.migration import TENANT_DOWN

    missing = [n for n in names if not (config.migrations_dir / n / TENANT_DOWN).is_file()]
    if missing:
        raise UsageError(
            f"migration {missing[0]} has a tenant.sql but no {TENANT_DOWN}, so its tenant "
            f"parts cannot be reverted; add {config.migrations_dir / missing[0] / TENANT_DOWN}"
            " (and re-pin the migration) first")


# -- reverting tenant parts on their own ---------------------------------------------------


def tenant_only(config: Config, typed: str | None) -> str | None:
    """``typed`` when it names a tenant-only migration (a ``tenant.sql``, no ``up.sql``):
    it is not in the ``default`` history, so revert runs only its ``tenant_down.sql``, in
    the tenants that have it applied."""
    if typed is None:
        return None
    parts = TenantParts.load(config)
    name = typed.rstrip("/")
    return name if name in parts.names and name not in parts.shared else None


def revert_tenant_only(config: Config, name: str, given: str | None, request: FleetRequest,
                       *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, pinned: bool = True,
                       variables: Any = None) -> FleetReport:
    """Run tenant-only migration ``name``'s ``tenant_down.sql`` in each tenant ``--tenants``
    (``given``) selects that has it applied (recorded ``REVERT`` in the tenant's
    namespace), under the migration lock, on ``request.jobs`` sessions; nothing shared
    runs."""
    from spawn_db.migrate.apply import pins_optional

    choice = default_choice(config, given)
    if choice == "none":
        raise UsageError(f"migration {name} has only a tenant part (tenant.sql), and "
                         "--tenants none leaves every tenant out; name the tenants with "
                         "--tenants, or leave the option out to revert it in all of them")
    _require_tenant_down(config, [name])
    require_pins(config, [name], pinned=pinned,
                 unpinned_from_tree=pins_optional(config, pinned))
    with locked_phase(config, lock_timeout=lock_timeout, pinned=pinned,
                      variables=variables) as phase:
        tenants = selected_tenants(config, phase.tracking, choice)
        return revert_tenants(phase, tenants, [name], request)


@dataclass(frozen=True)
class PlannedTenantDown:
    """One tenant's ``tenant_down.sql`` a revert would run: its pin and the checksum of its
    rendered SQL (as the tenant's REVERT rows will record it)."""

    tenant: Tenant
    name: str
    pin: str | None
    checksum: str
    size: int


def plan_tenant_downs(config: Config, choice: str, names: Sequence[str], *, pinned: bool,
                      variables: Any,
                      each: Callable[[PlannedTenantDown, IO[bytes]], None] | None = None,
                      ) -> list[PlannedTenantDown]:
    """What revert's tenant phase would run for ``names`` (newest first): per selected
    tenant, the ``tenant_down.sql`` of each it has applied, rendered as revert renders it
    (``each`` gets the SQL); read-only, no lock, no secret fetched."""
    from spawn_db.migrate.apply import pins_optional, tracking_session
    from spawn_db.migrate.migration import TENANT_DOWN
    from spawn_db.migrate.rendered import uses_pin

    parts = TenantParts.load(config)
    with_parts = [n for n in names if n in parts.names]
    if not with_parts or choice == "none":
        return []
    _require_tenant_down(config, with_parts)
    with tracking_session(config) as tracking:
        tenants = selected_tenants(config, tracking, choice)
        _, history = fleet_history(tracking)
    optional = pins_optional(config, pinned)
    renderer = TenantRenderer(config, variables)
    planned: list[PlannedTenantDown] = []
    for tenant in tenants:
        undo = applied_parts(history.get(tenant.name, {}), with_parts)
        for position, name in enumerate(undo, 1):
            rendered = renderer.render(name, TENANT_DOWN, tenant, position=position,
                                       pinned=uses_pin(config, name, pinned, optional),
                                       fetch_secrets=False)
            with closing(rendered):
                planned.append(PlannedTenantDown(tenant, name, rendered.pin,
                                                 rendered.checksum.hex(), rendered.size))
                if each is not None:
                    rendered.spool.seek(0)
                    each(planned[-1], rendered.spool)
    return planned


# -- the tenant commands ---------------------------------------------------------------------


@contextmanager
def locked_phase(config: Config, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 pinned: bool = True, variables: Any = None) -> Iterator[Phase]:
    """The migration lock held, the tracking schema there, and a phase to run tenants in."""
    from spawn_db.db.engine import engine_for
    from spawn_db.migrate.apply import NullReporter, _locked, pins_optional, tracking_session
    from spawn_db.migrate.runner import SessionSetup

    optional = pins_optional(config, pinned)
    target = config.target()
    with tracking_session(config, target) as tracking, \
            _locked(tracking, lock_timeout, NullReporter()):
        tracking.ensure()
        yield Phase(config, tracking, engine_for(config, target),
                    SessionSetup.for_tracking(tracking), pinned, optional, variables)


def create_tenant(config: Config, name: str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                  pinned: bool = True, variables: Any = None) -> tuple[FleetReport, bool]:
    """Create tenant ``name``'s schema and apply every tenant part to it (only tenant
    parts: the shared ones are apply's). Returns the report and whether the name is in
    the tenant source (one that is not will be left out of later applies)."""
    from spawn_db.migrate.apply import pins_optional

    tenant = make_tenants(config, [name], "the command line")[0]
    require_pins(config, TenantParts.load(config).names, pinned=pinned,
                 unpinned_from_tree=pins_optional(config, pinned))
    with locked_phase(config, lock_timeout=lock_timeout, pinned=pinned,
                      variables=variables) as phase:
        listed = name in {t.name for t in load_tenants(config, _lender(phase.tracking))}
        phase.tracking.session.query(
            f"CREATE SCHEMA IF NOT EXISTS {Identifier.of(tenant.schema)}",
            what=f"creating schema {tenant.schema} of tenant {name}")
        report = apply_tenants(phase, [tenant], FleetRequest())
    return report, listed


def drop_tenant(config: Config, name: str, *,
                lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> int:
    """Drop tenant ``name``'s schema (CASCADE) and delete its ``tenant:<name>`` history, in
    one transaction; returns the number of history rows deleted. The history goes with
    the schema: a tenant created again under that name starts from nothing."""
    tenant = make_tenants(config, [name], "the command line")[0]
    with locked_phase(config, lock_timeout=lock_timeout) as phase:
        tracking = phase.tracking
        s, ns = tracking.s, escape_literal(tenant.namespace)
        deleted = tracking.session.query(
            f"DROP SCHEMA IF EXISTS {Identifier.of(tenant.schema)} CASCADE \\;\n"
            f"WITH gone AS (DELETE FROM {s}.migration_history h USING {s}.migration m "
            f"WHERE m.migration_id = h.migration_id_migration AND m.namespace = {ns} "
            "RETURNING 1), names AS (DELETE FROM "
            f"{s}.migration WHERE namespace = {ns}) SELECT count(*) FROM gone",
            what=f"dropping tenant {name}")
    return int(deleted.strip() or 0)


def dry_run_tenants(config: Config, choice: str, shared_to_run: tuple[str, ...], *,
                    retry: bool = False, only: str | None = None) -> list[TenantPlan]:
    """What apply's tenant phase would run in each selected tenant, counting the shared
    parts the dry run lists as applied; read-only, no lock."""
    from spawn_db.migrate.apply import tracking_session

    with tracking_session(config) as tracking:
        tenants = selected_tenants(config, tracking, choice)
        shared, history = fleet_history(tracking)
    shared = dict(shared)
    for name in shared_to_run:
        shared[name] = _assumed_applied(name)
    parts = TenantParts.load(config)
    return [plan_tenant(t, parts, shared, history.get(t.name, {}), retry=retry, only=only)
            for t in tenants]


def _assumed_applied(name: str) -> HistoryRow:
    return HistoryRow(name, "default", 0, "APPLY", "SUCCESS", "", None, "", "", "", "", 0.0)


@dataclass(frozen=True)
class TenantState:
    """One line of ``spawn tenant list``."""

    name: str
    schema: str
    state: str  # "up to date", "pending", "failed", "waiting"
    applied: int
    pending: tuple[str, ...]
    failed: str | None = None
    schema_exists: bool = True

    def describe(self) -> str:
        if self.state == "failed":
            return f"failed ({self.failed})"
        if self.pending:
            return f"{len(self.pending)} pending"
        return "up to date"


def tenant_states(config: Config) -> list[TenantState]:
    """Every tenant with its state, from one history query (and one for the schemas);
    nothing is written."""
    from spawn_db.migrate.apply import tracking_session
    from spawn_db.migrate.plan import is_done, state_of

    with tracking_session(config) as tracking:
        tenants = load_tenants(config, _lender(tracking))
        shared, history = fleet_history(tracking)
        names = ", ".join(escape_literal(t.schema) for t in tenants) or "NULL"
        present = set(tracking.session.query(
            f"SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname IN ({names})",
            what="looking for the tenant schemas").splitlines())
    parts = TenantParts.load(config)
    states = []
    for tenant in tenants:
        rows = history.get(tenant.name, {})
        plan = plan_tenant(tenant, parts, shared, rows)
        applied = sum(1 for n in parts.names if is_done(state_of(rows.get(n))))
        pending = tuple(n for n in parts.names if not is_done(state_of(rows.get(n))))
        state = "failed" if plan.blocked else ("pending" if pending else "up to date")
        states.append(TenantState(tenant.name, tenant.schema, state, applied, pending,
                                  plan.blocked, tenant.schema in present))
    return states


def raise_if_failed(report: FleetReport) -> None:
    """Exit 1 once the report is shown, when a tenant failed or was skipped."""
    if report.ok:
        return
    failed, skipped = len(report.failed), len(report.skipped)
    raise MigrationFailed(
        f"{failed} of {len(report.results)} tenants failed"
        + (f" and {skipped} {'was' if skipped == 1 else 'were'} skipped" if skipped else "")
        + "; fix the failures listed above, then run `spawn migration apply --retry` with "
        "--tenants naming them")
