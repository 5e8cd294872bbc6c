"""``spawn migration apply | adopt | status``: parse, call ``spawn_db.migrate.apply``, print."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, complete_migrations, pass_app
from spawn_db.cli.fleet import fleet_options
from spawn_db.cli.migration import (
    load_variables_option,
    no_hooks_option,
    no_pin_option,
    variables_option,
    warn_blank,
)
from spawn_db.cli.output import (
    SETTINGS,
    LiveBar,
    detail,
    emit_json,
    info,
    live_progress_allowed,
    note,
    paint,
    use_color,
    warn,
    write_sql,
)
from spawn_db.cli.tenant import tenants_option
from spawn_db.config import DEFAULT_LOCK_TIMEOUT

if TYPE_CHECKING:
    from spawn_db.api import Project
    from spawn_db.config import Config
    from spawn_db.fleet.quick import QuickCheck
    from spawn_db.fleet.runner import Done, FleetReport
    from spawn_db.migrate.apply import (
        ApplyPlan,
        ApplyResult,
        DryRun,
        MigrationOutcome,
        MigrationStatus,
        PlannedMigration,
        StatusReport,
    )
    from spawn_db.migrate.repeatable import PlannedRepeatable, RepeatableRequest, RepeatableStatus
    from spawn_db.migrate.tracking import HistoryRow, LockHolder


lock_timeout_option = click.option(
    "--lock-timeout", type=click.FloatRange(min=0), default=DEFAULT_LOCK_TIMEOUT,
    show_default=True, envvar="SPAWN_LOCK_TIMEOUT", metavar="SECONDS",
    help="How long to wait for another deployment's migration lock (env SPAWN_LOCK_TIMEOUT).",
)
yes_option = click.option("-y", "--yes", is_flag=True,
                          help="Do not ask for confirmation when several migrations qualify.")


class CliReporter:
    """Progress on stderr: one line per migration; on a terminal, also the live bar
    (count, current migration, elapsed, ETA; ``output.LiveBar``) once the run lasts
    more than a second, or an ``applying ...`` line where the terminal is ``TERM=dumb``.

    ``--quiet`` silences all of it, including what psql printed while a migration ran
    (notices, the tracking schema being set up): a failed migration's error still
    quotes psql, and warnings and errors are printed elsewhere."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.live = live_progress_allowed()
        self.open_line = False
        self.bar: LiveBar | None = None

    def _progress(self, text: str) -> None:
        if not SETTINGS.quiet:
            self._write(text)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)  # above the bar once it is shown
            return
        if self.open_line:
            text = "\r\033[K" + text
            self.open_line = False
        sys.stderr.write(text)
        sys.stderr.flush()

    def waiting_for_lock(self, holders: Sequence[LockHolder], waited: float) -> None:
        who = "; ".join(h.describe() for h in holders) or "another session"
        self._progress(f"waiting for the migration lock, held by {who} ({waited:.0f} s so far)\n")

    def started(self, name: str, position: int, total: int, elapsed: float) -> None:
        if self.live:
            # Made at the first migration, after any question was answered.
            if self.bar is None:
                self.bar = LiveBar(total, "applying")
            elif position == 1 and self.bar.completed:
                self.bar.set_phase("", total)  # the repeatables: a count of their own
            self.bar.begin(name)
        elif self.tty and not SETTINGS.quiet:
            self._write(f"[{position}/{total}] applying {name} ...")
            self.open_line = True

    def finished(self, outcome: MigrationOutcome, position: int, total: int,
                 elapsed: float) -> None:
        left = total - position
        self._progress(
            f"[{position}/{total}] \u2713 {outcome.name} ({_duration(outcome.seconds)}; "
            f"{left} left, {_duration(elapsed)} elapsed)\n"
        )
        if self.bar is not None:
            self.bar.end(outcome.name)
        detail(f"  {outcome.name}: {outcome.rendered_bytes} bytes of SQL rendered, ran in "
               f"{outcome.seconds * 1000:.1f} ms")

    def output(self, text: str) -> None:
        self._progress(text if text.endswith("\n") else text + "\n")

    def close_line(self) -> None:
        """Remove the live bar, or end the ``applying ...`` line, so what follows (the
        summary, an error) starts on a line of its own."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.open_line:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.open_line = False


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


CONFIRM_QUESTIONS = {"applied": "Apply", "adopted": "Adopt", "reverted": "Revert"}


def confirm_many(names: Sequence[str], verb: str, yes: bool, extra: str = "",
                 order: str = "") -> bool:
    """Ask ``[y/N]`` before acting on several migrations; refuse when nobody can answer.

    ``order`` follows the verb in the listing's heading (revert says the order)."""
    if len(names) <= 1 or yes:
        return True
    listing = "".join(f"  {name}\n" for name in names)
    if not sys.stdin.isatty():
        from spawn_db.errors import UsageError

        click.echo(f"{len(names)} migrations would be {verb}{order}:\n{listing}{extra}",
                   err=True, nl=False)
        raise UsageError(
            f"{len(names)} migrations would be {verb}, and spawn cannot ask for confirmation "
            "because standard input is not a terminal; pass --yes to go ahead"
        )
    click.echo(f"{len(names)} migrations will be {verb}{order}:\n{listing}{extra}", err=True,
               nl=False)
    question = CONFIRM_QUESTIONS[verb]
    return click.confirm(f"{question} these {len(names)} migrations?", default=False, err=True)


@click.command("apply")
@click.argument("migration_name", metavar="[MIGRATION]", required=False,
                shell_complete=complete_migrations)
@no_pin_option
@variables_option
@yes_option
@click.option("--retry", is_flag=True,
              help="Run failed or attempted migrations again (with MIGRATION: even an applied "
              "one).")
@click.option("--reuse-connection", is_flag=True,
              help="Accepted for compatibility: sessions are always shared, and every migration "
              "still starts as in a fresh session.")
@lock_timeout_option
@click.option("--dry-run", is_flag=True,
              help="Only list what would run, in order, with each pin and checksum; write "
              "nothing and take no lock.")
@click.option("--sql", "show_sql", is_flag=True,
              help="With --dry-run: print each migration's rendered SQL.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="With --dry-run: output format of the plan; with several "
              "targets: of the per-target report.")
@click.option("--with-requires", is_flag=True,
              help="With MIGRATION: first apply what it requires (migration.toml) and is not "
              "applied yet.")
@click.option("--allow-draft", is_flag=True,
              help="With MIGRATION: apply it although it is a draft (refused in environment "
              "prod).")
@click.option("--check-drift", is_flag=True,
              help="First compare the schema with the applied migrations (`spawn migration "
              "drift`) and refuse to apply over drift (exit 1).")
@click.option("--no-repeatable", is_flag=True,
              help="Do not run the repeatable migrations (spawn/repeatable/) after the "
              "migrations.")
@click.option("--repeatable", "repeatable_names", multiple=True, metavar="NAME",
              help="Run only this repeatable migration, even if unchanged (repeatable).")
@no_hooks_option
@tenants_option
@fleet_options
@pass_app
def apply(app: App, migration_name: str | None, no_pin: bool, variables_path: str | None,
          yes: bool, retry: bool, reuse_connection: bool, lock_timeout: float, dry_run: bool,
          show_sql: bool, fmt: str, with_requires: bool, allow_draft: bool,
          check_drift: bool, no_repeatable: bool, repeatable_names: tuple[str, ...],
          no_hooks: bool, tenants: str | None, jobs: int, canary: int,
          continue_on_error: bool) -> None:
    """Apply MIGRATION, or every pending migration in order, tracked and locked; then the
    repeatable migrations whose rendered SQL changed; then the tenant parts (tenant.sql)
    in every tenant schema (--tenants)."""
    from spawn_db.api import Project, TenantOptions
    from spawn_db.cli.tenant import tenant_bar
    from spawn_db.migrate.repeatable import RepeatableRequest

    if not dry_run and show_sql:
        from spawn_db.errors import UsageError

        raise UsageError("--sql only goes with --dry-run; add --dry-run to see the "
                         "plan with its SQL, or drop it to apply")
    if (with_requires or allow_draft) and not migration_name:
        from spawn_db.errors import UsageError

        raise UsageError("--with-requires and --allow-draft go with a migration name: "
                         "`spawn migration apply <migration> --with-requires`")
    if no_repeatable and repeatable_names:
        from spawn_db.errors import UsageError

        raise UsageError("--no-repeatable and --repeatable contradict each other; pass one "
                         "of them")
    config = app.config()
    choice = PlanChoice(with_requires=with_requires, allow_draft=allow_draft,
                        repeatables=RepeatableRequest(no_repeatable, repeatable_names))
    if not no_repeatable:
        from spawn_db.cli.repeatable import say_warnings

        say_warnings(config)
    if config.several_targets and dry_run:
        from spawn_db.cli.fanout import dry_run_targets

        def dry_run_one(target: Config, emit: Any) -> None:
            variables = load_variables_option(target, variables_path)
            if check_drift:
                from spawn_db.cli.drift import refuse_drift

                refuse_drift(target, pinned=not no_pin, variables=variables)
            _dry_run(Project(target, variables_path), migration_name, pinned=not no_pin,
                     retry=retry,
                     variables=variables, show_sql=show_sql, fmt=fmt, choice=choice,
                     tenants=tenants, emit=emit)

        dry_run_targets(config, dry_run_one, fmt)
        return
    if config.several_targets:
        from spawn_db.cli.fanout import fan_out, ready_for_several, tenant_details, tenant_jobs

        if not ready_for_several(config, "Apply", yes=yes):
            note("Cancelled; nothing was applied.")
            return
        from spawn_db.fleet.quick import quick_check

        quick = quick_check(config, migration_name, retry=retry, with_requires=with_requires,
                            allow_draft=allow_draft, repeatables=choice.repeatables,
                            check_drift=check_drift, tenants=tenants)
        work = TargetApply(migration_name, variables_path, pinned=not no_pin, retry=retry,
                           lock_timeout=lock_timeout, choice=choice, check_drift=check_drift,
                           hooks=not no_hooks, tenants=tenants,
                           tenant_jobs=tenant_jobs(config, jobs),
                           continue_on_error=continue_on_error, quick=quick)
        fan_out(config, "applying", work, jobs=jobs, canary=canary,
                continue_on_error=continue_on_error, fmt=fmt, details=tenant_details)
        return
    project = Project(config, variables_path)
    variables = project.variables()
    if check_drift:
        from spawn_db.cli.drift import refuse_drift

        refuse_drift(config, pinned=not no_pin, variables=variables)
    if dry_run:
        _dry_run(project, migration_name, pinned=not no_pin, retry=retry, variables=variables,
                 show_sql=show_sql, fmt=fmt, choice=choice, tenants=tenants)
        return

    def confirm(plan: ApplyPlan) -> bool:
        told.append(True)
        _plan_notes(plan)
        for folder_config, names in _per_source(config, plan.to_run):
            if not no_pin:
                _warn_stale(folder_config, names, variables)
            warn_blank(folder_config, names, pinned=not no_pin, variables=variables)
        extra = ""
        if plan.blocked:
            extra = f"and then stop before {plan.blocked} ({plan.blocked_state})\n"
        return confirm_many(plan.to_run, "applied", yes, extra)

    told: list[bool] = []
    reporter = CliReporter()
    bar = fmt == "text"
    try:
        result = project.apply(
            migration_name, pinned=not no_pin, retry=retry, with_requires=with_requires,
            allow_draft=allow_draft, repeatables=not no_repeatable,
            only_repeatables=repeatable_names, lock_timeout=lock_timeout,
            hooks=not no_hooks, tenants=tenants,
            tenant_options=TenantOptions(
                jobs, canary, continue_on_error,
                (lambda total: tenant_bar(total, "applying")) if bar else None),
            reporter=reporter, confirm=confirm)
    finally:
        reporter.close_line()
    if not told:
        _plan_notes(result.plan)
    if result.cancelled:
        note("Cancelled; nothing was applied.")
        return
    if fmt == "json":
        _apply_json(result)
    else:
        _apply_summary(result, migration_name)
        if result.repeatables is not None:
            note(_repeatable_summary(len(result.repeatables.applied),
                                     len(result.repeatables.unchanged)))
    _tenant_outcome(result, fmt)


def _resolved(config: Config, migration_name: str | None) -> str | None:
    """MIGRATION's name, qualified when it is a source's (apply with MIGRATION runs only
    its tenant part; a source's migration has none)."""
    if migration_name is None:
        return None
    from spawn_db.migrate.sources import Sources

    return Sources(config).resolve(migration_name)


def _apply_json(result: ApplyResult) -> None:
    from spawn_db.cli.fleet import fleet_json
    from spawn_db.fleet.runner import FleetReport

    report = result.after_shared
    emit_json({"applied": [o.name for o in result.applied],
               "tenants": fleet_json(report) if isinstance(report, FleetReport) else None})


def _tenant_outcome(result: ApplyResult, fmt: str) -> None:
    """The tenant report (text), and exit 1 when a tenant failed."""
    if result.after_shared is None:
        return
    from spawn_db.cli.tenant import print_tenant_report
    from spawn_db.fleet.runner import FleetReport
    from spawn_db.fleet.tenant_ops import raise_if_failed

    report = result.after_shared
    if isinstance(report, FleetReport):
        print_tenant_report(report, fmt=fmt)
        raise_if_failed(report)


@dataclass(frozen=True)
class TargetApply:
    """``apply`` on one target of several: the same library call with that target's own
    config and variables; no questions (the fleet was confirmed once) and no progress
    lines (the fleet's bar shows the targets)."""

    migration_name: str | None
    variables_path: str | None
    pinned: bool
    retry: bool
    lock_timeout: float
    choice: PlanChoice
    check_drift: bool
    hooks: bool
    tenants: str | None = None
    tenant_jobs: int = 1
    continue_on_error: bool = False
    quick: QuickCheck | None = None  # the no-op check (fleet/quick.py)

    def __call__(self, config: Config) -> Done:
        from spawn_db.cli.fanout import target_output, up_to_date, with_tenants
        from spawn_db.fleet.tenant_ops import after_shared_phase
        from spawn_db.fleet.tenant_run import FleetRequest
        from spawn_db.migrate.apply import apply as run_apply
        from spawn_db.migrate.hooks import Hooks

        variables = load_variables_option(config, self.variables_path)
        found = self.quick.up_to_date(config) if self.quick is not None else None
        if found is not None:
            return up_to_date(config, found)
        if self.check_drift:
            from spawn_db.cli.drift import drift_refusal

            drift_refusal(config, pinned=self.pinned, variables=variables)
        output = target_output(config.target().name)
        fleet = after_shared_phase(
            config, self.tenants, FleetRequest(self.tenant_jobs, 0, self.continue_on_error,
                                               self.retry),
            migration=self.migration_name, pinned=self.pinned, variables=variables)
        result = run_apply(config, self.migration_name, pinned=self.pinned, retry=self.retry,
                           variables=variables, lock_timeout=self.lock_timeout,
                           with_requires=self.choice.with_requires,
                           allow_draft=self.choice.allow_draft,
                           repeatables=self.choice.repeatables,
                           hooks=Hooks(config, variables, enabled=self.hooks, output=output),
                           after_shared=fleet)
        return with_tenants(config, _target_summary(result), _target_json(result),
                            result.after_shared, "apply")


def _target_summary(result: ApplyResult) -> str:
    if result.applied:
        text = f"{len(result.applied)} applied"
    else:
        text = f"up to date ({len(result.plan.already_applied)} applied)"
    if result.repeatables is not None and result.repeatables.applied:
        text += f", {len(result.repeatables.applied)} repeatable re-applied"
    return text


def _target_json(result: ApplyResult) -> dict[str, Any]:
    repeated = result.repeatables
    return {
        "applied": [{"name": o.name, "seconds": round(o.seconds, 6)} for o in result.applied],
        "already_applied": list(result.plan.already_applied),
        "repeatables": None if repeated is None else {
            "applied": [o.name for o in repeated.applied],
            "unchanged": list(repeated.unchanged)},
        "seconds": round(result.seconds, 6),
    }


def _apply_summary(result: ApplyResult, migration_name: str | None) -> None:
    step = result.plan.baseline
    if result.adopted and step is not None:
        count = len(result.adopted)
        note(f"Adopted {count} migration{'' if count == 1 else 's'} replaced by baseline "
             f"{step.name}: {', '.join(result.adopted)}" if step.fresh else
             f"Adopted baseline {', '.join(result.adopted)}: the migrations it replaces "
             "built this database.")
    if migration_name and not result.applied and result.plan.already_applied:
        note(f"Migration {migration_name} is already applied; nothing to do "
             "(pass --retry to run it again).")
        return
    if not result.applied:
        total = len(result.plan.already_applied)
        if result.repeatables is not None and result.repeatables.applied:
            note(f"Every migration is applied ({total} in total).")
        else:
            note(f"Nothing to apply: every migration is applied ({total} in total).")
        return
    count = len(result.applied)
    noun = "migration" if count == 1 else "migrations"
    note(f"Applied {count} {noun} in {_duration(result.seconds)}.")


def _repeatable_summary(applied: int, unchanged: int) -> str:
    return f"{applied} repeatable re-applied, {unchanged} unchanged."


@dataclass(frozen=True)
class PlanChoice:
    """The planner flags of apply, passed on to ``--dry-run``."""

    with_requires: bool = False
    allow_draft: bool = False
    repeatables: RepeatableRequest | None = None


def _plan_notes(plan: ApplyPlan) -> None:
    """Said once per run, before anything runs: migration.toml warnings, skipped drafts,
    out-of-order applies."""
    for warning in plan.warnings:
        warn(warning)
    if plan.skipped_drafts:
        count = len(plan.skipped_drafts)
        note(f"skipped {count} draft{'s' if count > 1 else ''}: "
             f"{', '.join(plan.skipped_drafts)}")
    for name in plan.out_of_order:
        note(f"{name} is applied out of order (a newer migration is already applied)")
    if plan.baseline is not None:
        from spawn_db.migrate.baseline import baseline_note

        note(baseline_note(plan.baseline))


def _dry_run(project: Project, migration_name: str | None, *, pinned: bool, retry: bool,
             variables: Any, show_sql: bool, fmt: str, choice: PlanChoice,
             tenants: str | None = None, emit: Any = emit_json) -> None:
    """Print the plan to stdout (and with ``show_sql`` each migration's SQL as rendered),
    the summary to stderr; end with apply's own error when it would stop at a failure."""
    config = project.config
    texts: dict[str, str] = {}

    def each(item: PlannedMigration, sql: IO[bytes]) -> None:
        if fmt == "json":
            if show_sql:
                texts[item.name] = sql.read().decode("utf-8")
            return
        then = "  then verify.sql" if item.verify else ""
        if not show_sql:
            info(f"{item.name}  pin {item.pin or '-'}  checksum {item.checksum}{then}")
            return
        then = ", then verify.sql" if item.verify else ""
        info(f"-- spawn migration {item.name}: pin {item.pin or '-'}, checksum {item.checksum}"
             f"{then}")
        write_sql(sql.read())

    def each_repeatable(item: PlannedRepeatable, sql: IO[bytes]) -> None:
        key = f"repeatable {item.name}"
        if fmt == "json":
            if show_sql:
                texts[key] = sql.read().decode("utf-8")
            return
        if not show_sql:
            info(f"{key}  {item.state}  checksum {item.checksum}")
            return
        info(f"-- spawn {key} ({item.state}): checksum {item.checksum}")
        write_sql(sql.read())

    repeatables = choice.repeatables
    dry = project.plan(migration_name, pinned=pinned, retry=retry, each=each,
                       with_requires=choice.with_requires, allow_draft=choice.allow_draft,
                       repeatables=repeatables is None or not repeatables.skip,
                       only_repeatables=() if repeatables is None else repeatables.named,
                       tenants=tenants, each_repeatable=each_repeatable)
    _plan_notes(dry.plan)
    if pinned:
        _warn_stale(config, dry.plan.to_run, variables)
    from spawn_db.fleet.tenant_ops import default_choice, dry_run_tenants

    choice_of_tenants = default_choice(config, tenants)
    plans = [] if choice_of_tenants == "none" or dry.plan.blocked else dry_run_tenants(
        config, choice_of_tenants, dry.plan.to_run, retry=retry,
        only=_resolved(config, migration_name))
    if fmt == "json":
        found = _dry_run_json(dry, texts if show_sql else None)
        if choice_of_tenants != "none":
            found["tenants"] = [{"name": p.tenant.name, "schema": p.tenant.schema,
                                 "to_run": list(p.to_run), "blocked": p.blocked}
                                for p in plans]
        emit(found)
    else:
        for plan in plans:
            if not plan.up_to_date:
                info(f"tenant {plan.tenant.name} ({plan.tenant.schema}): "
                     f"{', '.join(plan.to_run) or 'nothing'}"
                     + (f", then stop before {plan.blocked} ({plan.blocked_state})"
                        if plan.blocked else ""))
        note(_dry_run_summary(dry))
        if plans:
            busy = sum(1 for p in plans if not p.up_to_date)
            parts = sum(len(p.to_run) for p in plans)
            note(f"Then {parts} tenant parts in {busy} of {len(plans)} tenants.")
    refusal = dry.refusal
    if refusal is not None:
        raise refusal


def _dry_run_summary(dry: DryRun) -> str:
    count = len(dry.migrations)
    noun = "migration" if count == 1 else "migrations"
    done = len(dry.plan.already_applied)
    text = (f"Dry run: would apply {count} {noun} ({done} already applied); nothing was "
            "written.")
    verified = sum(1 for item in dry.migrations if item.verify)
    if verified:
        have = "has" if verified == 1 else "have"
        text += f" {verified} of them {have} a verify.sql, run right after its migration."
    if dry.plan.blocked:
        text += f" Apply would then stop before {dry.plan.blocked} ({dry.plan.blocked_state})."
    if dry.repeatables_considered:
        text += (f" Then {len(dry.repeatables)} repeatable would be re-applied, "
                 f"{len(dry.repeatables_unchanged)} unchanged.")
    return text


def _dry_run_json(dry: DryRun, texts: dict[str, str] | None) -> dict[str, Any]:
    def one(item: PlannedMigration) -> dict[str, Any]:
        row: dict[str, Any] = {"name": item.name, "pin": item.pin, "checksum": item.checksum,
                               "size": item.size, "verify": item.verify}
        if texts is not None:
            row["sql"] = texts[item.name]
        return row

    def repeatable(item: PlannedRepeatable) -> dict[str, Any]:
        row: dict[str, Any] = {"name": item.name, "state": item.state,
                               "checksum": item.checksum, "size": item.size}
        if texts is not None:
            row["sql"] = texts[f"repeatable {item.name}"]
        return row

    plan = dry.plan
    found: dict[str, Any] = {
        "to_apply": [one(item) for item in dry.migrations],
        "already_applied": list(plan.already_applied),
        "blocked": None if plan.blocked is None else {"name": plan.blocked,
                                                      "state": plan.blocked_state},
    }
    if dry.repeatables_considered:
        found["repeatables"] = {"to_apply": [repeatable(item) for item in dry.repeatables],
                                "unchanged": list(dry.repeatables_unchanged)}
    return found


def _per_source(config: Config, names: Sequence[str]) -> list[tuple[Config, list[str]]]:
    """``names`` with the config of the folder they are in (``[[sources]]``: each
    source's config and folder names; else the project's, as they are)."""
    if not config.sources:
        return [(config, list(names))]
    from spawn_db.migrate.sources import Sources

    return [(source.config, bare) for source, bare in Sources(config).stretches(names)]


def _warn_stale(config: Config, names: Sequence[str], variables: Any) -> None:
    """Once per migration about to run: it will apply an older component than the tree's."""
    from spawn_db.migrate.drift import stale_components

    for stale in stale_components(config, names, variables):
        warn(stale.message())


@click.command("adopt")
@click.argument("migration_name", metavar="[MIGRATION]", required=False,
                shell_complete=complete_migrations)
@yes_option
@click.option("--description", default="", metavar="TEXT",
              help="Why the migration is recorded without running (kept in the history).")
@lock_timeout_option
@pass_app
def adopt(app: App, migration_name: str | None, yes: bool, description: str,
          lock_timeout: float) -> None:
    """Record MIGRATION (or every migration not applied) as applied, without running it."""
    from spawn_db.api import Project

    reporter = CliReporter()
    try:
        result = Project(app.config()).adopt(
            migration_name, description=description, reporter=reporter,
            confirm=lambda names: confirm_many(names, "adopted", yes),
            lock_timeout=lock_timeout,
        )
    finally:
        reporter.close_line()
    if result.cancelled:
        note("Cancelled; nothing was recorded.")
        return
    for name in result.adopted:
        info(f"Adopted {name}")
    if migration_name and not result.adopted:
        note(f"Migration {migration_name} is already applied; nothing recorded.")
    elif not result.adopted:
        note("Nothing to adopt: every migration is already applied.")


@click.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@variables_option
@fleet_options
@pass_app
def status(app: App, fmt: str, variables_path: str | None, jobs: int, canary: int,
           continue_on_error: bool) -> None:
    """Show every migration: on disk, pinned, in the database, and its state; exit 1 if a
    lock.toml is broken or an applied migration was modified since."""
    from spawn_db.api import Project

    config = app.config()
    if config.several_targets:
        from spawn_db.cli.fanout import fan_out

        fan_out(config, "reading", TargetStatus(variables_path, fmt), jobs=jobs,
                canary=canary, continue_on_error=continue_on_error, fmt=fmt,
                details=_status_tables)
        return
    report = Project(config, variables_path).status()
    tenant_states = _tenant_states(config)
    if fmt == "json":
        found = _status_json(report)
        if tenant_states is not None:
            from spawn_db.cli.tenant import state_json

            found["tenants"] = [state_json(s) for s in tenant_states]
        emit_json(found)
    else:
        info(format_status_colored(report) if use_color() else format_status(report))
        if tenant_states is not None:
            from spawn_db.cli.tenant import tenant_summary

            note(tenant_summary(tenant_states))
        if report.repeatables:
            from spawn_db.cli.repeatable import (
                format_repeatables,
                repeatable_problems,
                say_warnings,
            )

            say_warnings(config)

            info("\n" + format_repeatables(report.repeatables))
            repeatable_problems(report.repeatables)
        if report.baseline is not None:
            from spawn_db.migrate.baseline import baseline_note

            note(f"note: {baseline_note(report.baseline)}")
        rule = report.pin_rule
        if rule is not None and rule.source != "the default":
            note(f"note: {rule.describe()}")
        for name, m in report.named():
            if m.out_of_order:
                note(f"note: {name} was applied out of order (after a newer migration)")
            if m.problem is None:
                continue
            if m.state in ("modified", "broken"):
                warn(m.problem)
            else:
                note(f"note: {m.problem}")
    if report.troubled:
        raise SystemExit(1)


def _tenant_states(config: Config) -> list[Any] | None:
    """Each tenant's state for the status, when spawn.toml has [tenants]."""
    if config.tenants is None:
        return None
    from spawn_db.fleet.tenant_ops import tenant_states

    return list(tenant_states(config))


@dataclass(frozen=True)
class TargetStatus:
    """``status`` on one target of several: its report (the table, or its JSON), or, when a
    lock.toml is broken or an applied migration was modified, that target's failure."""

    variables_path: str | None
    fmt: str

    def __call__(self, config: Config) -> Done:
        from spawn_db.errors import MigrationError
        from spawn_db.fleet.runner import Done
        from spawn_db.migrate.apply import status as run_status

        variables = load_variables_option(config, self.variables_path, none_when_unset=True)
        report = run_status(config, variables=variables)
        if report.troubled:
            found = "; ".join(m.problem or f"{m.name}: {m.state}" for m in report.troubled)
            raise MigrationError(
                f"{len(report.troubled)} migration(s) broken or modified since applied "
                f"({found}); `spawn --target {config.target().name} migration status` "
                "shows the table")
        from spawn_db.cli.fanout import status_with_tenants

        data = _status_json(report) if self.fmt == "json" else format_status(report)
        return Done(_status_summary(report), status_with_tenants(config, data))


def _status_tables(report: FleetReport) -> None:
    """Each target's status table, under its name, in the order the targets were named."""
    from spawn_db.cli.fanout import headed

    for result in report.results:
        if result.state == "ok" and isinstance(result.data, str):
            info(headed(result.name, result.data) + "\n")


STATE_LABELS = {
    "applied": "\u2713 Applied",
    "adopted": "\u2299 Adopted",
    "attempted": "\u26a0 Attempted",
    "failed": "\u2717 Failed",
    "pending": "\u25cb Pending",
    "reverted": "\u21b6 Reverted",
    "draft": "\u270e Draft",
    "modified": "\u270e Modified",
    "broken": "\u2717 Broken pin",
}


STATE_STYLES = {
    "applied": "green",
    "adopted": "green",
    "attempted": "magenta",
    "failed": "bold red",
    "pending": "yellow",
    "reverted": "yellow",
    "draft": "cyan",
    "modified": "magenta",
    "broken": "bold red",
}
STATUS_HEADER = ("Migration", "Filesystem", "Pinned", "Database", "Status")
# Shown only when some migration.toml fills them, so that a project without any prints
# the Rust tool's table byte for byte.
OPTIONAL_COLUMNS = ("Requires", "Description")
_MARK = {True: "\u2713", False: "\u2717"}


def _status_header(migrations: Sequence[MigrationStatus]) -> tuple[str, ...]:
    extra = [title for title, used in zip(OPTIONAL_COLUMNS, _optional_used(migrations),
                                          strict=True) if used]
    return (*STATUS_HEADER, *extra)


def _optional_used(migrations: Sequence[MigrationStatus]) -> tuple[bool, bool]:
    return (any(m.requires for m in migrations), any(m.description for m in migrations))


def _status_rows(migrations: Sequence[MigrationStatus]) -> list[tuple[str, ...]]:
    with_requires, with_description = _optional_used(migrations)
    rows = []
    for m in migrations:
        row = [m.name, _MARK[m.on_filesystem], _MARK[m.pinned], _MARK[m.in_database],
               STATE_LABELS[m.state]]
        if with_requires:
            row.append(", ".join(m.requires))
        if with_description:
            row.append(m.description)
        rows.append(tuple(row))
    return rows


def _counts(migrations: Sequence[MigrationStatus]) -> str:
    counts: dict[str, int] = {}
    for m in migrations:
        counts[m.state] = counts.get(m.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def _status_summary(report: StatusReport) -> str:
    return f"{_counts(report.migrations)} (database {report.database}, schema {report.schema})"


def _status_groups(report: StatusReport) -> list[tuple[str, Sequence[MigrationStatus], str]]:
    """(heading, rows, summary) of each table: the main folder's (no heading), then one
    per ``[[sources]]`` folder (docs/sources.md)."""
    groups: list[tuple[str, Sequence[MigrationStatus], str]] = [
        ("", report.migrations, _status_summary(report))]
    for source in report.sources:
        groups.append((f"Source {source.name} ({source.folder}):", source.migrations,
                       _counts(source.migrations) or "no migrations"))
    return groups


def format_status_colored(report: StatusReport) -> str:
    """The status table for a terminal: ``format_status``'s text, character for character,
    with rich's styles added (header bold, each state in its colour, the totals dim).

    Styles on the plain table rather than a rich ``Table``: laying out a rich table
    took 0.8 s for 1,000 migrations, over the 0.5 s status budget (bench/status.py).
    rich is imported by ``paint`` only, so piped output never loads it."""
    return "\n\n".join(_with_heading(heading, _colored_table(rows, summary))
                        for heading, rows, summary in _status_groups(report))


def _colored_table(migrations: Sequence[MigrationStatus], summary: str) -> str:
    rows = _status_rows(migrations)
    if not rows:
        return _table(migrations, summary)
    lines = _table(migrations, summary).split("\n")
    # Where the Status column starts: after the four columns before it, each as wide as
    # its widest cell plus two spaces (columns after it, if any, stay plain).
    start = sum(max(len(r[i]) for r in [STATUS_HEADER, *rows]) + 2 for i in range(4))
    lines[0] = paint(lines[0], "bold")
    for index, (m, row) in enumerate(zip(migrations, rows, strict=True), start=2):
        line, label = lines[index], row[4]
        assert line[start:start + len(label)] == label, (line, label)
        lines[index] = (line[:start] + paint(label, STATE_STYLES[m.state])
                        + line[start + len(label):])
    lines[-1] = paint(lines[-1], "dim")
    return "\n".join(lines)


def format_status(report: StatusReport) -> str:
    """The status table as plain text: what pipes, files and tests see, byte for byte;
    with ``[[sources]]``, one table per source after the main folder's."""
    return "\n\n".join(_with_heading(heading, _table(rows, summary))
                        for heading, rows, summary in _status_groups(report))


def _with_heading(heading: str, table: str) -> str:
    return f"{heading}\n{table}" if heading else table


def _table(migrations: Sequence[MigrationStatus], summary: str) -> str:
    header = _status_header(migrations)
    rows = _status_rows(migrations)
    if not rows:
        return "No migrations on disk or in the database."
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(summary)
    return "\n".join(lines)


def _status_json(report: StatusReport) -> dict[str, Any]:
    return {
        "database": report.database,
        "schema": report.schema,
        "tracking_schema_exists": report.tracking_exists,
        "pin_rule": None if report.pin_rule is None else {
            "mode": report.pin_rule.mode, "no_pin_allowed": report.pin_rule.no_pin_allowed,
            "source": report.pin_rule.source},
        "migrations": [_migration_json(m) for m in report.migrations],
        "repeatables": [repeatable_json(r) for r in report.repeatables],
        "sources": [{"name": s.name, "folder": s.folder,
                     "migrations": [_migration_json(m) for m in s.migrations]}
                    for s in report.sources],
    }


def repeatable_json(r: RepeatableStatus) -> dict[str, Any]:
    """One repeatable of ``status``/``repeatable list --format json``."""
    return {
        "name": r.name,
        "filesystem": r.on_filesystem,
        "status": r.state,
        "checksum_now": r.checksum_now,
        "description": r.description,
        "requires": list(r.requires),
        "problem": r.problem,
        "latest": _row_json(r.latest),
    }


def _migration_json(m: MigrationStatus) -> dict[str, Any]:
    row = m.latest
    return {
        "name": m.name,
        "filesystem": m.on_filesystem,
        "pinned": m.pinned,
        "database": m.in_database,
        "status": m.state,
        "problem": m.problem,
        "checksum_now": m.checksum_now,
        "description": m.description,
        "requires": list(m.requires),
        "out_of_order": m.out_of_order,
        "replaced_by": m.replaced_by,
        "latest": _row_json(row),
    }


def _row_json(row: HistoryRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "activity": row.activity,
        "status": row.status,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "checksum": row.checksum,
        "pin_hash": row.pin_hash,
        "description": row.description,
        "status_note": row.status_note,
        "execution_seconds": row.execution_seconds,
    }
