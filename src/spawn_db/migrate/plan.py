"""The planner: which migrations an apply runs, in which order, and why it may refuse.

Pure functions over the files' settings (``settings.py``) and the database's
latest history rows, so that apply, ``--dry-run`` and status agree, and so
that every refusal happens before the lock is taken and before anything runs:
a plan that cannot complete writes nothing.

Order: by name, except that a migration waits for everything it ``requires``
(a topological order whose ties go by name). Drafts are left out unless named
with ``allow_draft``. In ``strict`` order a pending migration older than the
newest applied one is refused unless it says ``out_of_order = true``.

A baseline (``baseline = true``, written by ``spawn schema flatten``) replaces every
migration older than it (``baseline_step``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from spawn_db.errors import PlanRefused
from spawn_db.migrate.settings import DEFAULT, MigrationSettings
from spawn_db.migrate.tracking import HistoryRow

State = Literal["applied", "adopted", "attempted", "failed", "pending", "reverted", "modified",
                "broken", "draft"]
PROD_ENVIRONMENTS = ("prod", "production")


def state_of(row: HistoryRow | None) -> State:
    """A migration's state from its latest history row (any activity may be ATTEMPTED or
    FAILURE; a successful REVERT makes it pending again, shown as reverted)."""
    if row is None:
        return "pending"
    if row.status == "ATTEMPTED":
        return "attempted"
    if row.status == "FAILURE":
        return "failed"
    if row.activity == "ADOPT":
        return "adopted"
    if row.activity == "REVERT":
        return "reverted"
    return "applied"


def is_done(state: State) -> bool:
    return state in ("applied", "adopted")


@dataclass(frozen=True)
class ApplyPlan:
    """What an apply will do: run ``to_run`` in order, then stop at ``blocked`` if set.

    ``skipped_drafts`` are pending drafts left out; ``out_of_order`` are the
    migrations of ``to_run`` that will be applied after a newer one.
    """

    to_run: tuple[str, ...]
    already_applied: tuple[str, ...]
    blocked: str | None = None
    blocked_state: State | None = None
    skipped_drafts: tuple[str, ...] = ()
    out_of_order: tuple[str, ...] = ()
    blocked_activity: str | None = None
    warnings: tuple[str, ...] = ()
    baseline: BaselineStep | None = None


@dataclass(frozen=True)
class BaselineStep:
    """What the newest baseline changes in a plan.

    ``fresh``: the database has no history row older than the baseline, so the baseline
    runs instead of the migrations it replaces, and ``adopt`` (those replaced on disk) are
    recorded as ADOPT once it is applied. Otherwise the replaced migrations plan as usual
    and ``adopt`` (the baseline, and any older baseline not applied) is recorded as ADOPT
    once every replaced migration is applied: the schema is already there. Migrations
    newer than the baseline run after the adoption, as usual.
    """

    name: str
    fresh: bool
    replaced: tuple[str, ...]
    adopt: tuple[str, ...]
    needed: tuple[str, ...] = ()  # applied, these make ``adopt`` true of the database

    def ready(self, states: Mapping[str, HistoryRow]) -> bool:
        """Whether ``adopt`` may be recorded now: ``needed`` are all applied."""
        return all(is_done(state_of(states.get(n))) for n in self.needed)

    def visible(self, names: Sequence[str]) -> list[str]:
        """The migrations the walk considers: the adopted ones are not run."""
        hidden = set(self.adopt)
        return [n for n in names if n not in hidden]


def baseline_step(names: Sequence[str], settings: Mapping[str, MigrationSettings],
                  states: Mapping[str, HistoryRow]) -> BaselineStep | None:
    """The newest baseline's part in the plan, or None without one.

    Whether the database is "empty" is read from the history, not from the files: a row
    of any migration older than the baseline (on disk or deleted since) means its schema
    was built by the old migrations. The baseline's own row does not count, so a run
    stopped between the baseline and its ADOPT rows still completes as a fresh one; once
    the baseline is done, whether it ran or was adopted says which way it went.
    """
    baselines = [n for n in names if _settings(settings, n).baseline]
    if not baselines:
        return None
    name = max(baselines)
    replaced = tuple(n for n in names if n < name)
    row = states.get(name)
    if is_done(state_of(row)):
        fresh = row is not None and row.activity == "APPLY"  # it ran: it built the schema
    else:
        fresh = not any(n < name for n in states)
    if fresh:
        adopt = tuple(n for n in replaced if not is_done(state_of(states.get(n))))
        return BaselineStep(name, fresh, replaced, adopt, (name,))
    adopt = tuple(n for n in baselines if not is_done(state_of(states.get(n))))
    needed = tuple(n for n in replaced
                   if n not in adopt and not _settings(settings, n).draft)
    return BaselineStep(name, fresh, replaced, adopt, needed)


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked for: every migration, or one by name, and the flags."""

    migration: str | None = None
    retry: bool = False
    with_requires: bool = False
    allow_draft: bool = False
    strict_order: bool = False
    environment: str = ""
    again: bool = False


def plan(names: Sequence[str], settings: Mapping[str, MigrationSettings],
         states: Mapping[str, HistoryRow], request: PlanRequest) -> ApplyPlan:
    """The apply plan for ``request``, or ``PlanRefused`` naming the rule and the fix.

    ``names`` are the migrations on disk, ``settings`` their (checked)
    ``migration.toml``s, ``states`` the latest rows of namespace ``default``.
    """
    step = baseline_step(names, settings, states)
    visible = names if step is None else step.visible(names)
    wanted, drafts = _wanted(visible, settings, states, request)
    if step is not None:
        wanted = [n for n in wanted if n not in step.adopt or step.fresh]
    ordered = topological_order(wanted, settings)
    base = _walk(ordered, states, request)
    if request.again:
        base = _run_again(base, settings, request)
    plan_ = ApplyPlan(base.to_run, base.already_applied, base.blocked, base.blocked_state,
                      tuple(drafts), (), base.blocked_activity)
    _check_requires(plan_, settings, states, step)
    _check_conflicts(plan_, settings, states)
    late = _out_of_order(plan_, settings, states, strict=request.strict_order)
    warnings = tuple(w for n in names for w in _settings(settings, n).warnings)
    return ApplyPlan(plan_.to_run, plan_.already_applied, plan_.blocked, plan_.blocked_state,
                     plan_.skipped_drafts, late, plan_.blocked_activity, warnings, step)


def _wanted(names: Sequence[str], settings: Mapping[str, MigrationSettings],
            states: Mapping[str, HistoryRow], request: PlanRequest) -> tuple[list[str], list[str]]:
    """The migrations the plan considers, and the pending drafts it leaves out."""
    if request.migration is None:
        drafts = {n for n in names if _settings(settings, n).draft}
        pending_drafts = [n for n in names
                          if n in drafts and not is_done(state_of(states.get(n)))]
        return [n for n in names if n not in drafts], pending_drafts
    name = request.migration
    _check_draft_allowed(name, settings, request)
    if not request.with_requires:
        return [name], []
    needed = [r for r in requirements_of(name, settings)
              if not is_done(state_of(states.get(r)))]
    for requirement in needed:
        _check_draft_allowed(requirement, settings, request, wanted_by=name)
    return [*needed, name], []


def _run_again(base: ApplyPlan, settings: Mapping[str, MigrationSettings],
                request: PlanRequest) -> ApplyPlan:
    """The named draft runs even though it is applied (``spawn watch`` re-applying a draft
    that has no down.sql): only drafts, whose history nobody else relies on yet."""
    name = request.migration
    if name is None or not _settings(settings, name).draft:
        raise PlanRefused(
            f"migration {name} is not a draft, and only a draft can be applied again; "
            "revert it first (`spawn migration revert`) to run it again")
    if name not in base.already_applied:
        return base
    return ApplyPlan((name,), tuple(n for n in base.already_applied if n != name))


def _check_draft_allowed(name: str, settings: Mapping[str, MigrationSettings],
                         request: PlanRequest, *, wanted_by: str | None = None) -> None:
    if not _settings(settings, name).draft:
        return
    why = f" (required by {wanted_by})" if wanted_by else ""
    if not request.allow_draft:
        raise PlanRefused(
            f"migration {name}{why} is a draft (draft = true in its migration.toml), so apply "
            "skips it; to try it on a development database run `spawn migration apply "
            f"{name} --allow-draft`, or remove draft = true when it is ready")
    if request.environment in PROD_ENVIRONMENTS:
        raise PlanRefused(
            f"migration {name}{why} is a draft, and --allow-draft is refused in environment "
            f"{request.environment!r}; remove draft = true from its migration.toml (and pin "
            "it) to deploy it, or use a target whose environment is not prod")


def requirements_of(name: str, settings: Mapping[str, MigrationSettings]) -> list[str]:
    """Everything ``name`` requires, directly or not (it is not included)."""
    seen: set[str] = set()
    stack = list(_settings(settings, name).requires)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(_settings(settings, current).requires)
    return sorted(seen)


def topological_order(names: Iterable[str], settings: Mapping[str, MigrationSettings]
                      ) -> list[str]:
    """``names`` by name, except that each waits for the ``requires`` among ``names``.

    Kahn's algorithm with a heap: whenever several migrations are free to go,
    the smallest name goes first. Cycles were refused when settings loaded.
    """
    members = set(names)
    waiting: dict[str, int] = {}
    dependents: dict[str, list[str]] = {}
    for name in members:
        required = [r for r in _settings(settings, name).requires if r in members]
        waiting[name] = len(required)
        for r in required:
            dependents.setdefault(r, []).append(name)
    ready = [n for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        ordered.append(name)
        for dependent in dependents.get(name, ()):
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    return ordered


def _walk(ordered: Sequence[str], states: Mapping[str, HistoryRow],
          request: PlanRequest) -> ApplyPlan:
    """SPEC §6 step 2: skip what is done, refuse ATTEMPTED/FAILURE unless ``retry``, stop
    there. A named migration with ``retry`` runs again even when done."""
    to_run: list[str] = []
    done: list[str] = []
    for name in ordered:
        row = states.get(name)
        state = state_of(row)
        rerun = request.retry and name == request.migration
        if is_done(state) and not rerun:
            done.append(name)
        elif state in ("attempted", "failed") and (
                not request.retry or (row is not None and row.activity == "REVERT")):
            # A failed revert is finished by `revert --retry`; apply --retry would run
            # up.sql over what is left of the down script.
            return ApplyPlan(tuple(to_run), tuple(done), name, state,
                             blocked_activity=row.activity if row else None)
        else:
            to_run.append(name)
    return ApplyPlan(tuple(to_run), tuple(done))


def _check_requires(plan_: ApplyPlan, settings: Mapping[str, MigrationSettings],
                    states: Mapping[str, HistoryRow], step: BaselineStep | None = None) -> None:
    # What a fresh baseline adopts counts as applied before anything newer runs.
    earlier: set[str] = set(step.adopt) if step is not None and step.fresh else set()
    for name in plan_.to_run:
        for requirement in _settings(settings, name).requires:
            if requirement in earlier or is_done(state_of(states.get(requirement))):
                continue
            raise PlanRefused(_unmet(name, requirement, settings))
        earlier.add(name)


def _unmet(name: str, requirement: str, settings: Mapping[str, MigrationSettings]) -> str:
    if _settings(settings, requirement).draft:
        return (f"migration {name} requires {requirement}, which is a draft and not applied; "
                f"finish the draft (remove draft = true), or drop it from {name}'s requires")
    return (f"migration {name} requires {requirement}, which is not applied; run `spawn "
            f"migration apply {name} --with-requires` to apply both, or apply {requirement} "
            "first")


def _check_conflicts(plan_: ApplyPlan, settings: Mapping[str, MigrationSettings],
                     states: Mapping[str, HistoryRow]) -> None:
    """Conflicts go both ways: ``a`` conflicting with ``b`` keeps ``b`` out too."""
    present = {n for n, row in states.items() if is_done(state_of(row))}
    applied = set(present)
    declared_against: dict[str, list[str]] = {}
    for other, found in settings.items():
        for target in found.conflicts:
            declared_against.setdefault(target, []).append(other)
    for name in plan_.to_run:
        declared = [c for c in _settings(settings, name).conflicts if c in present]
        declared += sorted(o for o in declared_against.get(name, ()) if o in present)
        if declared:
            other = declared[0]
            how = "is applied" if other in applied else "this plan applies first"
            raise PlanRefused(
                f"migration {name} conflicts with {other}, which {how}; revert {other} "
                f"(`spawn migration revert {other}`) or remove the conflict from the "
                "migration.toml that declares it")
        present.add(name)


def _out_of_order(plan_: ApplyPlan, settings: Mapping[str, MigrationSettings],
                  states: Mapping[str, HistoryRow], *, strict: bool) -> tuple[str, ...]:
    applied = [n for n, row in states.items() if is_done(state_of(row))]
    newest = max(applied, default="")
    late: list[str] = []
    for name in plan_.to_run:
        if name < newest:
            if strict and not _settings(settings, name).out_of_order:
                raise PlanRefused(
                    f"migration {name} is older than {newest}, which is already applied, and "
                    "[migrations] order is \"strict\"; add out_of_order = true to its "
                    "migration.toml if it is safe to apply it now, or rename it to sort after "
                    f"{newest}")
            late.append(name)
        newest = max(newest, name)
    return tuple(late)


def applied_out_of_order(states: Mapping[str, HistoryRow]) -> set[str]:
    """Applied migrations that were applied after a newer-named one (for status)."""
    done = sorted((row.history_id, name) for name, row in states.items()
                  if is_done(state_of(row)))
    late: set[str] = set()
    newest = ""
    for _, name in done:
        if name < newest:
            late.add(name)
        newest = max(newest, name)
    return late


def _settings(settings: Mapping[str, MigrationSettings], name: str) -> MigrationSettings:
    return settings.get(name, DEFAULT)
