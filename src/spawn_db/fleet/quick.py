"""The no-op check of an apply over several targets: is this target up to date?

A fleet that is up to date is the common case of a deployment (most runs change a few
targets, or none), and a full apply of a target that has nothing to do costs a dozen
round trips (the history, the lock, the tracking schema check, the history again under
the lock, letting go). This check reads what the answer needs in one query of one
session, without the lock: the latest row of every shared migration, of spawn's own
tracking migrations and of every tenant part (a target without tracking tables fails
that query, and goes the full way). When
nothing is pending (no migration, no tenant part, no internal migration; nothing
blocked, no baseline step) the target is reported up to date; anything else goes the
full way (``migrate.apply.apply``), which plans again under the lock, so the check can
only ever save work, never skip some.

The migration folders are read once per environment for the whole fleet (a plan
depends on the environment through drafts), not once per target.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spawn_db.errors import ControlError
from spawn_db.escape import escape_literal
from spawn_db.fleet.runner import OK, FleetReport, UnitResult
from spawn_db.fleet.tenants import NAMESPACE_PREFIX, TenantParts, plan_tenant, split_history
from spawn_db.migrate.tracking import INTERNAL_MIGRATIONS, SPAWN_NAMESPACE, USER_NAMESPACE

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.migrate.apply import Planner
    from spawn_db.migrate.repeatable import RepeatableRequest
    from spawn_db.migrate.tracking import HistoryRow, Tracking


@dataclass(frozen=True)
class UpToDate:
    """A target with nothing to do: the migrations applied, and its tenants (all up to
    date; an empty report without tenant parts to consider)."""

    already_applied: tuple[str, ...]
    tenants: FleetReport
    seconds: float


@dataclass
class QuickCheck:
    """``up_to_date`` for each target of one apply; shared by the fleet's threads.

    Only an apply that could be a no-op takes it: no ``--check-drift`` (that reads the
    whole schema), and no repeatable migration to compare (``repeatables`` False: none on
    disk, or ``--no-repeatable``, or an apply of one migration)."""

    migration: str | None
    retry: bool
    with_requires: bool
    allow_draft: bool
    tenants: str  # the --tenants choice: all, none, or names
    planners: dict[tuple[str | None, str], Planner] = field(default_factory=dict)
    parts: list[TenantParts] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def planner(self, config: Config) -> Planner:
        """The planner for ``config``'s environment, loaded once."""
        from spawn_db.migrate.apply import Planner

        key = (config.environment, config.migration_order)
        with self.lock:
            if key not in self.planners:
                self.planners[key] = Planner.load(
                    config, self.migration, retry=self.retry,
                    with_requires=self.with_requires, allow_draft=self.allow_draft)
            return self.planners[key]

    def tenant_parts(self, config: Config) -> TenantParts:
        with self.lock:
            if not self.parts:
                self.parts.append(TenantParts.load(config))
            return self.parts[0]

    def up_to_date(self, config: Config) -> UpToDate | None:
        """``UpToDate`` when the target has nothing to do, else None (apply it)."""
        import time

        from spawn_db.migrate.apply import tracking_session

        started = time.monotonic()
        planner = self.planner(config)
        with tracking_session(config) as tracking:
            try:
                rows = tracking.latest_rows(
                    f"(m.namespace IN ({escape_literal(USER_NAMESPACE)}, "
                    f"{escape_literal(SPAWN_NAMESPACE)}) OR m.namespace LIKE "
                    f"{escape_literal(NAMESPACE_PREFIX + '%')})")
            except ControlError:
                return None  # no tracking tables yet (or unreadable): apply says which
            shared, _ = split_history(rows)
            if planner.sources.several:
                shared = planner.sources.latest(tracking, check=False)
            if not _internal_done(rows):
                return None
            plan = planner.plan(shared)
            if plan.to_run or plan.blocked is not None or plan.baseline is not None:
                return None
            tenants = self._tenants(config, tracking, shared, rows)
        if tenants is None:
            return None
        return UpToDate(plan.already_applied, tenants, time.monotonic() - started)

    def _tenants(self, config: Config, tracking: Tracking, shared: dict[str, HistoryRow],
                 rows: list[HistoryRow]) -> FleetReport | None:
        """Every selected tenant up to date (a report saying so), or None."""
        from spawn_db.fleet.tenant_ops import selected_tenants

        if self.tenants == "none":
            return FleetReport(())
        tenants = selected_tenants(config, tracking, self.tenants)
        parts = self.tenant_parts(config)
        _, history = split_history(rows)
        only = self.planner(config).request.migration
        for tenant in tenants:
            plan = plan_tenant(tenant, parts, shared, history.get(tenant.name, {}),
                               retry=self.retry, only=only)
            if not plan.up_to_date:
                return None
        return FleetReport(tuple(UnitResult(t.name, OK, 0.0, "up to date", data={})
                                 for t in tenants))


def _internal_done(rows: list[HistoryRow]) -> bool:
    """spawn's own tracking migrations are all applied (else apply adds them, locked)."""
    done = {r.name for r in rows if r.namespace == SPAWN_NAMESPACE and r.status == "SUCCESS"}
    return all(internal.name in done for internal in INTERNAL_MIGRATIONS)


def quick_check(config: Config, migration: str | None, *, retry: bool, with_requires: bool,
                allow_draft: bool, repeatables: RepeatableRequest | None, check_drift: bool,
                tenants: str | None) -> QuickCheck | None:
    """The check for an apply over several targets, or None when that apply cannot be a
    no-op that one query proves (``--check-drift``, repeatables to compare)."""
    from spawn_db.fleet.tenant_ops import default_choice
    from spawn_db.migrate.repeatable import repeatable_names

    if check_drift or (repeatables is not None and repeatables.named):
        return None
    skipped = repeatables is not None and repeatables.skip
    if not skipped and migration is None and repeatable_names(config):
        return None
    return QuickCheck(migration, retry, with_requires, allow_draft,
                      default_choice(config, tenants))
