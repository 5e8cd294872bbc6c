"""The public Python API: a spawn project driven from Python, as the CLI drives it.

``Project.load()`` finds ``spawn.toml`` the way every ``spawn`` command does; its methods
call the same library functions the commands call and return the frozen result
dataclasses the commands print. Nothing here prints, prompts or exits: a refusal or a
failure is a ``SpawnError`` subclass (``spawn_db.errors``) carrying the message the CLI
shows, and a caller decides what to do with it.

Everything the package exports (``spawn_db.__all__``) and this module's public names are
the stable surface; every other module is internal and may change in any release.
Library modules are imported inside the methods, so ``import spawn_db`` stays cheap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload

from spawn_db.config import DEFAULT_LOCK_TIMEOUT, DEFAULT_TEST_TIMEOUT

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.migrate.apply import (
        AdoptResult,
        ApplyPlan,
        ApplyResult,
        DryRun,
        PlannedMigration,
        StatusReport,
    )
    from spawn_db.migrate.hooks import Hooks
    from spawn_db.migrate.migration import MigrationEntry, PinBatch
    from spawn_db.migrate.repeatable import PlannedRepeatable
    from spawn_db.migrate.revert import PlannedRevert, RevertPlan, RevertResult
    from spawn_db.migrate.runner import ApplyReporter
    from spawn_db.migrate.schema_drift import DriftReport
    from spawn_db.sqltest.suite import ExpectResult, TestOutcome, TestRun, TestRunner

__all__ = ["ExpectReport", "NullTestReporter", "Project", "RevertDryRun", "TenantOptions",
           "TestReport", "TestReporter", "load_variables"]

VariablesArg = str | Path | Mapping[str, Any] | None
_T = TypeVar("_T", bound="TestRun | TestOutcome | ExpectResult")


@dataclass(frozen=True)
class RevertDryRun:
    """What ``Project.revert(dry_run=True)`` would run, written nowhere.

    ``plan``: the migrations to revert, newest application first, and how many are
    applied in all; ``reverts``: each down script as it would run (pin, checksum and size
    of the rendered SQL)."""

    plan: RevertPlan
    reverts: tuple[PlannedRevert, ...]


@dataclass(frozen=True)
class TestReport:
    """``Project.compare()``: one ``TestOutcome`` per test, in name order, and the run's
    wall-clock ``seconds``. A failed test's diff is in its outcome (``outcome.diff``)."""

    __test__ = False

    outcomes: tuple[TestOutcome, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        """True when every test's output matched its ``expected`` file."""
        return all(o.passed for o in self.outcomes)

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the tests that did not pass (failed, missing, timed out, error)."""
        return tuple(o.name for o in self.outcomes if not o.passed)


@dataclass(frozen=True)
class ExpectReport:
    """``Project.expect()``: one ``ExpectResult`` per test, in name order (``expected``
    written, or why not in ``result.error``), and the run's wall-clock ``seconds``.
    ``cancelled``: ``confirm`` said no, and nothing ran."""

    results: tuple[ExpectResult, ...]
    seconds: float
    cancelled: bool = False

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the tests whose ``expected`` file was not written."""
        return tuple(r.name for r in self.results if not r.written)


@dataclass(frozen=True)
class TenantOptions:
    """How ``Project.apply`` goes through the tenant schemas (``[tenants]``,
    docs/fleets.md): ``jobs`` tenants at a time, the first ``canary`` ones before the
    rest, and on after a failed tenant with ``continue_on_error`` (the CLI's ``--jobs``,
    ``--canary`` and ``--continue-on-error``). ``progress`` is made with the number of
    tenants that have work and entered around their run (the CLI's bar); None: none.
    ``report`` gets a revert's tenant report as soon as the tenants' down scripts ran,
    before the shared ones."""

    jobs: int = 1
    canary: int = 0
    continue_on_error: bool = False
    progress: Callable[[int], Any] | None = None
    report: Callable[[Any], None] | None = None


class TestReporter(Protocol):
    """Where ``run_test``, ``compare`` and ``expect`` report while they run (the CLI's
    bar and lines); every method may do nothing (``NullTestReporter``).

    ``started``/``ended`` come from the threads that run the tests (``jobs`` > 1);
    ``result`` comes from the caller's thread, in name order, as soon as a test and
    all before it are done."""

    def building(self, template: str) -> None:
        """A fresh test database's template is being built from the migrations."""

    def warning(self, text: str) -> None:
        """A ``test.toml`` warning, before any test runs."""

    def running(self, names: Sequence[str]) -> None:
        """The tests are about to run (templates built)."""

    def started(self, name: str) -> None:
        """Test ``name`` started."""

    def ended(self, name: str) -> None:
        """Test ``name`` ended, whatever its outcome."""

    def result(self, result: TestRun | TestOutcome | ExpectResult) -> None:
        """One test's result, its fresh database settled (dropped or kept)."""

    def stopped(self) -> None:
        """No more test runs (the last ended, or an error or an interrupt stopped them)."""

    def finished(self, report: TestReport) -> None:
        """``compare``'s report, before the ``after_tests`` hooks run (so a hook can read
        what the caller wrote, a JUnit file say)."""

    def output(self, text: str) -> None:
        """What a hook printed."""


class NullTestReporter:
    """A ``TestReporter`` that reports nothing (the default)."""

    def building(self, template: str) -> None:
        pass

    def warning(self, text: str) -> None:
        pass

    def running(self, names: Sequence[str]) -> None:
        pass

    def started(self, name: str) -> None:
        pass

    def ended(self, name: str) -> None:
        pass

    def result(self, result: TestRun | TestOutcome | ExpectResult) -> None:
        pass

    def stopped(self) -> None:
        pass

    def finished(self, report: TestReport) -> None:
        pass

    def output(self, text: str) -> None:
        pass


def load_variables(config: Config, variables: VariablesArg = None, *,
                   none_when_unset: bool = False) -> Any:
    """The template ``variables``: a mapping as given, else the file ``variables`` names
    (like ``--variables FILE``), else the file spawn.toml selects for the target or
    environment, else an empty mapping (None with ``none_when_unset``: ``status`` tells
    "no variables known" from "empty variables", see ``migrate.drift``)."""
    if isinstance(variables, Mapping):
        return variables
    from spawn_db.render.variables import load_variables as read_file

    found = config.variables_file(None if variables is None else str(variables))
    if found is None:
        return None if none_when_unset else {}
    return read_file(found)


@dataclass(frozen=True)
class Project:
    """A loaded spawn project: its config (target and environment chosen) and variables.

    Make one with ``Project.load()``. ``config`` is spawn.toml, read (internal: its
    shape may change); ``variables_arg`` is the ``variables`` given to ``load``;
    ``warnings`` holds what spawn.toml's parser noticed (unknown keys, ...), which the
    CLI prints on stderr. ``pushes`` is True when ``load`` pulled a remote
    ``spawn_folder`` into its mirror: ``pin`` then pushes what it wrote back (the CLI,
    which pulls and pushes around the whole command, makes its ``Project`` without it).
    """

    config: Config
    variables_arg: VariablesArg = None
    warnings: tuple[str, ...] = field(default=())
    pushes: bool = False

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path = ".", *, target: str | None = None,
             environment: str | None = None, variables: VariablesArg = None) -> Project:
        """The project whose ``spawn.toml`` is in ``path`` or the nearest folder above it
        (``path`` may also name the config file itself), as the CLI finds it from the
        current folder. ``target`` and ``environment`` are ``--target`` and ``-e``
        (``SPAWN_TARGET`` / ``SPAWN_ENVIRONMENT`` when None); ``variables`` is a mapping or
        a variables file (``--variables``), else spawn.toml's choice.

        A remote ``spawn_folder`` (``s3://...``) is pulled into its local mirror first."""
        from spawn_db.config import Overrides, load_config
        from spawn_db.errors import ConfigError

        where = Path(path)
        if not where.exists():
            raise ConfigError(f"{where} does not exist; pass the folder of a spawn project "
                              "(or one below it), or its spawn.toml")
        config_file = str(where) if where.is_file() else None
        overrides = Overrides.from_flags(config_file=config_file, target=target,
                                         environment=environment)
        config = load_config(overrides, cwd=None if config_file else where.absolute())
        if config.spawn_folder_url is not None:
            from spawn_db.remote.mirror import Mirror

            Mirror(config.spawn_folder_url, config.spawn_folder).pull()
        return cls(config, variables, tuple(config.warnings),
                   pushes=config.spawn_folder_url is not None)

    @property
    def root(self) -> Path:
        """The folder holding ``spawn.toml``."""
        return self.config.project_dir

    @property
    def target(self) -> str:
        """The name of the target commands run against."""
        return self.config.target().name

    def variables(self, *, none_when_unset: bool = False) -> Any:
        """The template variables this project renders with (see ``load_variables``)."""
        return load_variables(self.config, self.variables_arg, none_when_unset=none_when_unset)

    # -- files -----------------------------------------------------------------------------

    def migrations(self) -> tuple[MigrationEntry, ...]:
        """Every migration on disk, in apply order (``spawn migration list``); no database."""
        from spawn_db.migrate.migration import list_migrations

        return tuple(list_migrations(self.config))

    def build(self, name: str, *, pinned: bool = True, down: bool = False,
              tenant: str | None = None) -> str:
        """The rendered ``up.sql`` (``down``: ``down.sql``) of migration ``name`` (a unique
        suffix is enough; ``audit:<name>`` for a ``[[sources]]`` folder's), from its pin,
        or from the working tree with ``pinned=False`` (``spawn migration build``);
        ``tenant`` renders the tenant part as that tenant gets it (``--tenant``)."""
        return "".join(self.render(name, pinned=pinned, down=down, tenant=tenant))

    def render(self, name: str, *, pinned: bool = True, down: bool = False,
               tenant: str | None = None,
               warn: Callable[[str], None] | None = None) -> Iterator[str]:
        """``build``, chunk by chunk as the template renders (the CLI streams them).

        With ``pinned=False`` and a pinned migration, ``warn`` (given) is called after the
        last chunk when apply or revert, which render from the pin, would send other
        text than the working tree's."""
        variables = self.variables()
        if tenant is not None:
            from spawn_db.fleet.tenants import build_tenant_part

            return build_tenant_part(self.config, name, tenant, down=down, pinned=pinned,
                                     variables=variables)
        config = self.config
        if config.sources:  # audit:<name> renders against that source's components and pins
            from spawn_db.migrate.sources import locate

            source, name = locate(config, name)
            config = source.config
        return _render(config, name, pinned=pinned, down=down, variables=variables, warn=warn)

    def pin(self, name: str | None = None, *, force: bool = False, unpinned: bool = True,
            changed: bool = False) -> PinBatch:
        """Snapshot ``components/`` and write migration ``name``'s ``lock.toml``
        (``spawn migration pin NAME``; ``audit:<name>`` pins into that source's own
        ``pinned/``; ``force`` re-pins an applied one). With no name, from one snapshot:
        every migration that has no ``lock.toml`` yet (``unpinned``, ``--all``) and with
        ``changed`` every pinned one whose pin is not the current ``components/``, applied
        ones excepted (``--changed``). The batch says which were pinned for the first time
        and which re-pinned (a source's migrations by their qualified names); the main
        folder's only: ``pin_every`` pins every ``[[sources]]`` folder too."""
        from spawn_db.migrate.migration import PinBatch, pin_many, pin_migration

        if name is None:
            batch = pin_many(self.config, unpinned=unpinned, changed=changed)
        elif changed or not unpinned:
            from spawn_db.errors import UsageError

            raise UsageError(f"unpinned and changed choose among every migration; drop them "
                             f"to pin only {name}, or drop {name}")
        else:
            qualified, config, folder, namespace = self._locate(name)
            had_pin = (config.migrations_dir / folder / "lock.toml").exists()
            root = pin_migration(config, folder, force=force, namespace=namespace)
            batch = (PinBatch(root, repinned=(qualified,)) if had_pin
                     else PinBatch(root, pinned=(qualified,)))
        self._push_remote()
        return batch

    def pin_every(self, *, unpinned: bool = True, changed: bool = False,
                  ) -> tuple[PinBatch, ...]:
        """``pin()`` with no name for the main folder and then each ``[[sources]]`` folder
        (``spawn migration pin --all/--changed``): a batch per folder, each from a snapshot
        of its own ``components/`` into its own ``pinned/`` (``batch.source`` names it;
        empty for the main folder), a source's migrations by their qualified names."""
        from spawn_db.migrate.migration import pin_every_source

        batches = tuple(pin_every_source(self.config, unpinned=unpinned, changed=changed))
        self._push_remote()
        return batches

    def tests(self) -> tuple[str, ...]:
        """The names of the golden-file tests, sorted (folders of ``tests/`` with a
        ``test.sql``)."""
        from spawn_db.sqltest.suite import select_tests

        return tuple(select_tests(self.config))

    # -- the database ----------------------------------------------------------------------

    def status(self) -> StatusReport:
        """Every migration on disk or in the database with its state (``spawn migration
        status``). Where the CLI exits 1 (a broken pin, an applied migration modified
        since), ``report.troubled`` is not empty."""
        from spawn_db.migrate.apply import status

        return status(self.config, variables=self.variables(none_when_unset=True))

    def plan(self, name: str | None = None, *, pinned: bool = True, retry: bool = False,
             with_requires: bool = False, allow_draft: bool = False, repeatables: bool = True,
             only_repeatables: Sequence[str] = (), tenants: str | None = None,
             each: Callable[[PlannedMigration, IO[bytes]], None] | None = None,
             each_repeatable: Callable[[PlannedRepeatable, IO[bytes]], None] | None = None,
             ) -> DryRun:
        """What ``apply(name, ...)`` would run, in order, with each pin and checksum; writes
        nothing and takes no lock (``spawn migration apply --dry-run``). ``each`` (and
        ``each_repeatable``) get every migration (repeatable) with its rendered SQL as it
        is planned. Where apply would stop before a failed or attempted migration, the
        plan says so and ``dry.refusal`` is the error apply would raise (``apply(dry_run=
        True)`` raises it). ``tenants`` checks the tenant parts' pins as apply would."""
        from spawn_db.migrate.apply import plan_apply

        self._check_plan_flags(name, with_requires, allow_draft, repeatables,
                               only_repeatables)
        variables = self.variables()
        self._tenant_phase(tenants, None, name, retry=retry, pinned=pinned,
                           variables=variables)
        return plan_apply(self.config, name, pinned=pinned, retry=retry, variables=variables,
                          each=each, with_requires=with_requires, allow_draft=allow_draft,
                          repeatables=_repeatables(repeatables, only_repeatables),
                          each_repeatable=each_repeatable)

    @overload
    def apply(self, name: str | None = ..., *, dry_run: Literal[False] = ...,
              pinned: bool = ..., retry: bool = ..., with_requires: bool = ...,
              allow_draft: bool = ..., repeatables: bool = ...,
              only_repeatables: Sequence[str] = ..., lock_timeout: float = ...,
              hooks: bool = ..., tenants: str | None = ...,
              tenant_options: TenantOptions | None = ...,
              reporter: ApplyReporter | None = ...,
              confirm: Callable[[ApplyPlan], bool] | None = ...) -> ApplyResult: ...

    @overload
    def apply(self, name: str | None = ..., *, dry_run: Literal[True],
              pinned: bool = ..., retry: bool = ..., with_requires: bool = ...,
              allow_draft: bool = ..., repeatables: bool = ...,
              only_repeatables: Sequence[str] = ..., lock_timeout: float = ...,
              hooks: bool = ..., tenants: str | None = ...,
              tenant_options: TenantOptions | None = ...,
              reporter: ApplyReporter | None = ...,
              confirm: Callable[[ApplyPlan], bool] | None = ...) -> DryRun: ...

    def apply(self, name: str | None = None, *, dry_run: bool = False, pinned: bool = True,
              retry: bool = False, with_requires: bool = False, allow_draft: bool = False,
              repeatables: bool = True, only_repeatables: Sequence[str] = (),
              lock_timeout: float = DEFAULT_LOCK_TIMEOUT, hooks: bool = True,
              tenants: str | None = None, tenant_options: TenantOptions | None = None,
              reporter: ApplyReporter | None = None,
              confirm: Callable[[ApplyPlan], bool] | None = None) -> ApplyResult | DryRun:
        """Apply migration ``name``, or every pending one, then the changed repeatables,
        then the tenant parts in every tenant schema (``spawn migration apply``; the
        keywords are its flags: ``repeatables=False`` is ``--no-repeatable``,
        ``only_repeatables`` is ``--repeatable NAME``, ``hooks=False`` is ``--no-hooks``,
        ``tenants`` is ``--tenants``, whose default runs every tenant when spawn.toml has
        ``[tenants]``). The tenant report is ``result.after_shared``.

        ``reporter`` (``spawn_db.migrate.runner.ApplyReporter``) hears the progress and
        what psql and the hooks print; ``confirm`` is asked with the plan before anything
        is written (False cancels: ``result.cancelled``). Without them nothing is shown
        and several migrations are applied as with ``--yes``.

        ``dry_run`` returns the plan (``DryRun``, see ``plan``) and writes nothing. Where
        apply stops before a failed or attempted migration, ``PreviousAttemptFailed`` is
        raised after the migrations before it ran (dry run: after planning)."""
        if dry_run:
            dry = self.plan(name, pinned=pinned, retry=retry, with_requires=with_requires,
                            allow_draft=allow_draft, repeatables=repeatables,
                            only_repeatables=only_repeatables, tenants=tenants)
            if dry.refusal is not None:
                raise dry.refusal
            return dry
        from spawn_db.migrate.apply import apply

        self._check_plan_flags(name, with_requires, allow_draft, repeatables,
                               only_repeatables)
        variables = self.variables()
        after_shared = self._tenant_phase(tenants, tenant_options, name, retry=retry,
                                          pinned=pinned, variables=variables)
        return apply(self.config, name, pinned=pinned, retry=retry, variables=variables,
                     reporter=reporter, confirm=confirm, lock_timeout=lock_timeout,
                     with_requires=with_requires, allow_draft=allow_draft,
                     repeatables=_repeatables(repeatables, only_repeatables),
                     hooks=self._hooks(hooks, variables, reporter), after_shared=after_shared)

    def adopt(self, name: str | None = None, *, description: str = "",
              lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
              reporter: ApplyReporter | None = None,
              confirm: Callable[[Sequence[str]], bool] | None = None) -> AdoptResult:
        """Record migration ``name`` (or every migration not applied) as applied without
        running it (``spawn migration adopt``); ``description`` says why, in the history.
        ``confirm`` is asked with the names first (False cancels: ``result.cancelled``);
        without it nothing is asked. An applied migration is left alone
        (``result.already_applied``)."""
        from spawn_db.migrate.apply import adopt

        return adopt(self.config, name, description=description, reporter=reporter,
                     confirm=confirm, lock_timeout=lock_timeout)

    @overload
    def revert(self, name: str | None = ..., *, steps: int | None = ...,
               to: str | None = ..., dry_run: Literal[False] = ..., retry: bool = ...,
               pinned: bool = ..., lock_timeout: float = ..., hooks: bool = ...,
               tenants: str | None = ..., tenant_options: TenantOptions | None = ...,
               reporter: ApplyReporter | None = ...,
               confirm: Callable[[RevertPlan], bool] | None = ...,
               each: Callable[[PlannedRevert, IO[bytes]], None] | None = ...,
               ) -> RevertResult: ...

    @overload
    def revert(self, name: str | None = ..., *, steps: int | None = ...,
               to: str | None = ..., dry_run: Literal[True], retry: bool = ...,
               pinned: bool = ..., lock_timeout: float = ..., hooks: bool = ...,
               tenants: str | None = ..., tenant_options: TenantOptions | None = ...,
               reporter: ApplyReporter | None = ...,
               confirm: Callable[[RevertPlan], bool] | None = ...,
               each: Callable[[PlannedRevert, IO[bytes]], None] | None = ...,
               ) -> RevertDryRun: ...

    def revert(self, name: str | None = None, *, steps: int | None = None,
               to: str | None = None, dry_run: bool = False, retry: bool = False,
               pinned: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
               hooks: bool = True, tenants: str | None = None,
               tenant_options: TenantOptions | None = None,
               reporter: ApplyReporter | None = None,
               confirm: Callable[[RevertPlan], bool] | None = None,
               each: Callable[[PlannedRevert, IO[bytes]], None] | None = None,
               ) -> RevertResult | RevertDryRun:
        """Run the ``down.sql`` of the most recently applied migration, of ``name``, of
        the last ``steps``, or of everything applied after ``to``, newest application
        first (``spawn migration revert``), the tenant parts' ``tenant_down.sql`` first
        (``tenants`` as in ``apply``; ``tenant_options.report`` gets their report).
        ``reporter`` and ``confirm`` are ``apply``'s; without ``confirm`` nothing is asked,
        as with ``--yes``. ``dry_run`` renders the down scripts and returns them
        (``RevertDryRun``; ``each`` gets each one with its SQL) without writing anything."""
        from spawn_db.migrate.revert import RevertRequest, plan_revert, revert

        request = RevertRequest(name, steps, to, retry)
        request.check()
        variables = self.variables()
        if dry_run:
            plan, planned = plan_revert(self.config, request, pinned=pinned,
                                        variables=variables, each=each)
            return RevertDryRun(plan, planned)
        return revert(self.config, request, pinned=pinned, variables=variables,
                      reporter=reporter, confirm=confirm, lock_timeout=lock_timeout,
                      hooks=self._hooks(hooks, variables, reporter),
                      before_shared=self._tenant_downs(tenants, tenant_options,
                                                       pinned=pinned, variables=variables))

    def drift(self, *, pinned: bool = True) -> DriftReport:
        """The target's schema compared with what its applied migrations build on a
        scratch database (``spawn migration drift``); ``report.drifted`` where the CLI
        exits 1. A database that cannot be read raises ``DriftCheckFailed``."""
        from spawn_db.errors import DatabaseError, DriftCheckFailed
        from spawn_db.migrate.schema_drift import schema_drift

        try:
            return schema_drift(self.config, pinned=pinned, variables=self.variables())
        except DatabaseError as exc:
            raise DriftCheckFailed(exc.message) from None


    # -- golden-file tests -----------------------------------------------------------------

    def run_test(self, name: str, *, timeout: float = DEFAULT_TEST_TIMEOUT,
                 hooks: bool = True, reporter: TestReporter | None = None,
                 sink: Callable[[bytes | None], None] | None = None) -> TestRun:
        """Run test ``name`` and return what psql printed (``spawn test run``): ``run.text``
        is the merged output. A fresh test database is dropped afterwards; a test that
        runs past ``timeout`` seconds (0: no limit) raises ``TestTimedOut`` (its database
        kept: ``reporter.result`` got the run first, ``run.database``). ``sink`` gets the
        output as psql prints it (then None), instead of ``run.output``."""
        from spawn_db.errors import TestTimedOut
        from spawn_db.sqltest.suite import select_tests

        select_tests(self.config, name)
        reporter = reporter or NullTestReporter()
        runner = self._test_runner(timeout, hooks, reporter)
        try:
            self._prepare(runner, [name], reporter)
            try:
                reporter.started(name)
                try:
                    done = runner.run(name, sink=sink)
                finally:
                    if sink is not None:
                        sink(None)
                reporter.ended(name)
            finally:
                reporter.stopped()
            runner.settle(done, keep=done.timed_out)
        finally:
            runner.close()
        reporter.result(done)
        self._hooks(hooks, runner.variables, reporter).run("after_tests")
        if done.timed_out:
            raise TestTimedOut(runner.timeout_message(name))
        return done

    def compare(self, names: str | Sequence[str] | None = None, *, jobs: int = 1,
                timeout: float = DEFAULT_TEST_TIMEOUT, hooks: bool = True,
                reporter: TestReporter | None = None) -> TestReport:
        """Run the tests (one name, several, or all) and diff each output against its
        ``expected`` file (``spawn test compare``); ``report.passed`` where the CLI exits
        0. ``jobs`` tests run at a time; ``reporter`` hears each start, end and outcome."""
        started = time.monotonic()
        selected = self._select(names)
        reporter = reporter or NullTestReporter()
        runner = self._test_runner(timeout, hooks, reporter)
        outcomes = self._run_all(runner, selected, reporter, runner.compare, jobs)
        report = TestReport(tuple(outcomes), time.monotonic() - started)
        reporter.finished(report)
        self._hooks(hooks, runner.variables, reporter).run("after_tests")
        return report

    def expect(self, names: str | Sequence[str] | None = None, *, jobs: int = 1,
               timeout: float = DEFAULT_TEST_TIMEOUT, hooks: bool = True,
               reporter: TestReporter | None = None,
               confirm: Callable[[Sequence[str]], bool] | None = None) -> ExpectReport:
        """Run the tests (one name, several, or all) and write each output to its
        ``expected`` file (``spawn test expect``); ``report.failed`` names the tests whose
        file was not written (a timeout, an interrupted run, a render error), where the CLI
        exits 1. ``confirm`` is asked with the names before anything runs (False cancels:
        ``report.cancelled``); without it every file is rewritten, as with ``--yes``."""
        started = time.monotonic()
        selected = self._select(names)
        if not selected:
            return ExpectReport((), 0.0)
        reporter = reporter or NullTestReporter()
        runner = self._test_runner(timeout, hooks, reporter)
        if confirm is not None and not confirm(selected):
            return ExpectReport((), time.monotonic() - started, cancelled=True)
        results = self._run_all(runner, selected, reporter, runner.expect, jobs)
        self._hooks(hooks, runner.variables, reporter).run("after_tests")
        return ExpectReport(tuple(results), time.monotonic() - started)

    # -- helpers ---------------------------------------------------------------------------

    def _locate(self, name: str) -> tuple[str, Config, str, str]:
        """Migration ``name`` as typed: its qualified name, the config of its folder, its
        folder name there and its history namespace (``[[sources]]``: ``audit:<name>``)."""
        if self.config.sources:
            from spawn_db.migrate.sources import Sources

            sources = Sources(self.config)
            qualified = sources.resolve(name)
            source, folder = sources.split(qualified)
            return qualified, source.config, folder, source.name
        from spawn_db.project import Project as Files

        folder = Files(self.config).resolve_migration(name)
        return folder, self.config, folder, "default"

    @staticmethod
    def _check_plan_flags(name: str | None, with_requires: bool, allow_draft: bool,
                          repeatables: bool, only_repeatables: Sequence[str]) -> None:
        from spawn_db.errors import UsageError

        if (with_requires or allow_draft) and not name:
            raise UsageError("with_requires and allow_draft go with a migration name: "
                             "project.apply(\"<migration>\", with_requires=True)")
        if not repeatables and only_repeatables:
            raise UsageError("repeatables=False and only_repeatables contradict each other; "
                             "pass one of them")

    def _tenants_may_run(self, given: str | None) -> bool:
        """False when no tenant part can run (``--tenants none``, or the default without
        [tenants]): the fleet modules are then not even imported, which a start-up of
        every apply and revert would pay for."""
        return given != "none" and (given is not None or self.config.tenants is not None)

    def _tenant_phase(self, given: str | None, options: TenantOptions | None,
                      name: str | None, *, retry: bool, pinned: bool, variables: Any) -> Any:
        """apply's ``after_shared`` for the tenant parts (its pins checked now), or None
        (``tenants="none"``, or no [tenants] in spawn.toml)."""
        if not self._tenants_may_run(given):
            return None
        from spawn_db.fleet.tenant_ops import after_shared_phase
        from spawn_db.fleet.tenant_run import FleetRequest

        options = options or TenantOptions()
        request = FleetRequest(options.jobs, options.canary, options.continue_on_error, retry,
                               options.progress)
        return after_shared_phase(self.config, given, request, migration=name, pinned=pinned,
                                  variables=variables)

    def _tenant_downs(self, given: str | None, options: TenantOptions | None, *,
                      pinned: bool, variables: Any) -> Any:
        """revert's ``before_shared``: the tenant parts' down scripts, or None."""
        if not self._tenants_may_run(given):
            return None
        from spawn_db.fleet.tenant_ops import before_shared_phase
        from spawn_db.fleet.tenant_run import FleetRequest

        options = options or TenantOptions()
        request = FleetRequest(options.jobs, options.canary, options.continue_on_error)
        return before_shared_phase(self.config, given, request, pinned=pinned,
                                   variables=variables, report=options.report)

    def _hooks(self, enabled: bool, variables: Any = None,
               reporter: ApplyReporter | TestReporter | None = None) -> Hooks:
        """spawn.toml's hooks; what they print goes to ``reporter.output`` (else nowhere:
        nothing here prints)."""
        from spawn_db.migrate.hooks import Hooks

        if variables is None:
            variables = self.variables()
        if reporter is None:
            return Hooks(self.config, variables, enabled=enabled)
        return Hooks(self.config, variables, enabled=enabled, output=reporter.output)

    def _select(self, names: str | Sequence[str] | None) -> list[str]:
        from spawn_db.sqltest.suite import select_tests

        wanted = [names] if isinstance(names, str) else names
        return ([n for w in wanted for n in select_tests(self.config, w)]
                if wanted is not None else select_tests(self.config))

    def _test_runner(self, timeout: float, hooks: bool, reporter: TestReporter) -> TestRunner:
        from spawn_db.sqltest.suite import TestRunner

        variables = self.variables()
        runner_hooks = self._hooks(hooks, variables, reporter)
        return TestRunner(self.config, variables=variables, timeout=timeout or None,
                          on_build=reporter.building,
                          before=lambda test: runner_hooks.run("before_test", test=test))

    @classmethod
    def _run_all(cls, runner: TestRunner, names: list[str], reporter: TestReporter,
                 work: Callable[..., _T], jobs: int) -> list[_T]:
        """``work`` (``runner.compare`` or ``runner.expect``) over ``names``, ``jobs`` at a
        time, after ``_prepare``; each result reported in name order as it is known. The
        runner is closed however the run ends."""
        from spawn_db.sqltest.suite import run_ordered

        found: list[_T] = []
        try:
            cls._prepare(runner, names, reporter)
            try:
                for result in run_ordered(names, _tracked(reporter, work), jobs=jobs):
                    found.append(result)
                    reporter.result(result)
            finally:
                reporter.stopped()
        finally:
            runner.close()
        return found

    @staticmethod
    def _prepare(runner: TestRunner, names: list[str], reporter: TestReporter) -> None:
        """Read every test.toml (its warnings reported) and build the fresh databases'
        templates first, as the CLI does, so a broken one stops the run before any test."""
        for warning in runner.check_settings(names):
            reporter.warning(warning)
        runner.prepare(names)
        reporter.running(names)

    def _push_remote(self) -> None:
        if self.pushes and self.config.spawn_folder_url is not None:
            from spawn_db.remote.mirror import Mirror

            Mirror(self.config.spawn_folder_url, self.config.spawn_folder).push()


def _tracked(reporter: TestReporter, work: Callable[..., _T]
             ) -> Callable[[str, threading.Event], _T]:
    """``work`` (a runner's ``compare`` or ``expect``) telling ``reporter`` when each test
    starts and ends; with ``jobs`` > 1 these calls come from several threads at once."""

    def tracked(name: str, cancel: threading.Event) -> _T:
        reporter.started(name)
        try:
            return work(name, cancel=cancel)
        finally:
            reporter.ended(name)

    return tracked


def _repeatables(run: bool, named: Sequence[str]) -> Any:
    """apply's ``RepeatableRequest``: the changed ones, none, or only the ``named``."""
    from spawn_db.migrate.repeatable import RepeatableRequest

    return RepeatableRequest(not run, tuple(named))


def _render(config: Config, name: str, *, pinned: bool, down: bool, variables: Any,
            warn: Callable[[str], None] | None) -> Iterator[str]:
    """``build``'s chunks in the folder of ``config`` (the main one, or a source's)."""
    from spawn_db.migrate.migration import DOWN, UP, build_migration, build_working_tree

    if pinned or warn is None:
        return build_migration(config, name, pinned=pinned, variables=variables,
                               script=DOWN if down else UP)
    if down:
        return _down_working_tree(config, name, variables, warn)
    chunks, difference = build_working_tree(config, name, variables)
    return _warn_when_done(name, chunks, difference, warn)


def _down_working_tree(config: Config, name: str, variables: Any,
                       warn: Callable[[str], None]) -> Iterator[str]:
    """down.sql from the working tree, then (before the caller writes it out) a warning
    when the migration is pinned and revert, which renders from the pin, would send other
    text."""
    from spawn_db.migrate.migration import DOWN, build_migration, is_pinned

    chunks = build_migration(config, name, pinned=False, variables=variables, script=DOWN)
    text: list[str] = []
    for chunk in chunks:
        text.append(chunk)
        yield chunk
    if is_pinned(config, name):
        pinned = build_migration(config, name, pinned=True, variables=variables, script=DOWN)
        if "".join(pinned) != "".join(text):
            warn(f"{name} is pinned: `spawn migration revert` renders its down.sql from the "
                 "pin, not from the working tree shown here; add --pinned to see what a "
                 "revert will run")


def _warn_when_done(name: str, chunks: Iterator[str], difference: Callable[[], str | None],
                    warn: Callable[[str], None]) -> Iterator[str]:
    """The chunks, then (still before the caller writes them out) the warning if apply
    differs."""
    yield from chunks
    if difference() is not None:
        warn(f"{name} is pinned: `spawn migration apply` renders it from the pin, not from "
             "the working tree shown here; add --pinned to see what will be applied")
