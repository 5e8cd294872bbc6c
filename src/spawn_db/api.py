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

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from spawn_db.config import DEFAULT_LOCK_TIMEOUT, DEFAULT_TEST_TIMEOUT

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.migrate.apply import ApplyResult, DryRun, StatusReport
    from spawn_db.migrate.hooks import Hooks
    from spawn_db.migrate.migration import MigrationEntry, PinBatch
    from spawn_db.migrate.revert import PlannedRevert, RevertPlan, RevertResult
    from spawn_db.migrate.schema_drift import DriftReport
    from spawn_db.sqltest.suite import TestOutcome, TestRun, TestRunner

__all__ = ["Project", "RevertDryRun", "TestReport", "load_variables"]

VariablesArg = str | Path | Mapping[str, Any] | None


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
    CLI prints on stderr.
    """

    config: Config
    variables_arg: VariablesArg = None
    warnings: tuple[str, ...] = field(default=())

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
        return cls(config, variables, tuple(config.warnings))

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

    def build(self, name: str, *, pinned: bool = True, down: bool = False) -> str:
        """The rendered ``up.sql`` (``down``: ``down.sql``) of migration ``name`` (a unique
        suffix is enough), from its pin, or from the working tree with ``pinned=False``
        (``spawn migration build``)."""
        from spawn_db.migrate.migration import DOWN, UP, build_migration
        from spawn_db.project import Project as Files

        resolved = Files(self.config).resolve_migration(name)
        return "".join(build_migration(self.config, resolved, pinned=pinned,
                                       variables=self.variables(),
                                       script=DOWN if down else UP))

    def pin(self, name: str | None = None, *, force: bool = False) -> PinBatch:
        """Snapshot ``components/`` and write migration ``name``'s ``lock.toml``
        (``spawn migration pin NAME``; ``force`` re-pins an applied one), or with no name
        every migration that has no ``lock.toml`` yet (``--all``). The batch says which
        were pinned for the first time and which re-pinned."""
        from spawn_db.migrate.migration import PinBatch, pin_many, pin_migration
        from spawn_db.project import Project as Files

        if name is None:
            batch = pin_many(self.config, unpinned=True, changed=False)
        else:
            resolved = Files(self.config).resolve_migration(name)
            had_pin = (self.config.migrations_dir / resolved / "lock.toml").exists()
            root = pin_migration(self.config, resolved, force=force)
            batch = (PinBatch(root, repinned=(resolved,)) if had_pin
                     else PinBatch(root, pinned=(resolved,)))
        self._push_remote()
        return batch

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

    @overload
    def apply(self, name: str | None = ..., *, dry_run: Literal[False] = ...,
              pinned: bool = ..., retry: bool = ..., with_requires: bool = ...,
              allow_draft: bool = ..., repeatables: bool = ...,
              lock_timeout: float = ..., hooks: bool = ...) -> ApplyResult: ...

    @overload
    def apply(self, name: str | None = ..., *, dry_run: Literal[True],
              pinned: bool = ..., retry: bool = ..., with_requires: bool = ...,
              allow_draft: bool = ..., repeatables: bool = ...,
              lock_timeout: float = ..., hooks: bool = ...) -> DryRun: ...

    def apply(self, name: str | None = None, *, dry_run: bool = False, pinned: bool = True,
              retry: bool = False, with_requires: bool = False, allow_draft: bool = False,
              repeatables: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
              hooks: bool = True) -> ApplyResult | DryRun:
        """Apply migration ``name``, or every pending one, then the changed repeatables
        (``spawn migration apply``; the keywords are its flags, ``repeatables=False`` is
        ``--no-repeatable``, ``hooks=False`` is ``--no-hooks``). Never asks: several
        migrations are applied as with ``--yes``.

        ``dry_run`` returns the plan (``DryRun``) and writes nothing. Where apply stops
        before a failed or attempted migration, ``PreviousAttemptFailed`` is raised after
        the migrations before it ran (dry run: after planning)."""
        from spawn_db.migrate.apply import apply, plan_apply
        from spawn_db.migrate.repeatable import RepeatableRequest

        if (with_requires or allow_draft) and not name:
            from spawn_db.errors import UsageError

            raise UsageError("with_requires and allow_draft go with a migration name: "
                             "project.apply(\"<migration>\", with_requires=True)")
        variables = self.variables()
        request = RepeatableRequest(skip=not repeatables)
        if dry_run:
            dry = plan_apply(self.config, name, pinned=pinned, retry=retry,
                             variables=variables, with_requires=with_requires,
                             allow_draft=allow_draft, repeatables=request)
            if dry.refusal is not None:
                raise dry.refusal
            return dry
        return apply(self.config, name, pinned=pinned, retry=retry, variables=variables,
                     lock_timeout=lock_timeout, with_requires=with_requires,
                     allow_draft=allow_draft, repeatables=request,
                     hooks=self._hooks(hooks))

    @overload
    def revert(self, name: str | None = ..., *, steps: int | None = ...,
               to: str | None = ..., dry_run: Literal[False] = ..., retry: bool = ...,
               pinned: bool = ..., lock_timeout: float = ...,
               hooks: bool = ...) -> RevertResult: ...

    @overload
    def revert(self, name: str | None = ..., *, steps: int | None = ...,
               to: str | None = ..., dry_run: Literal[True], retry: bool = ...,
               pinned: bool = ..., lock_timeout: float = ...,
               hooks: bool = ...) -> RevertDryRun: ...

    def revert(self, name: str | None = None, *, steps: int | None = None,
               to: str | None = None, dry_run: bool = False, retry: bool = False,
               pinned: bool = True, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
               hooks: bool = True) -> RevertResult | RevertDryRun:
        """Run the ``down.sql`` of the most recently applied migration, of ``name``, of
        the last ``steps``, or of everything applied after ``to``, newest application
        first (``spawn migration revert``, as with ``--yes``). ``dry_run`` renders the
        down scripts and returns them (``RevertDryRun``) without writing anything."""
        from spawn_db.migrate.revert import RevertRequest, plan_revert, revert

        request = RevertRequest(name, steps, to, retry)
        request.check()
        variables = self.variables()
        if dry_run:
            plan, planned = plan_revert(self.config, request, pinned=pinned,
                                        variables=variables)
            return RevertDryRun(plan, planned)
        return revert(self.config, request, pinned=pinned, variables=variables,
                      lock_timeout=lock_timeout, hooks=self._hooks(hooks))

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
                 hooks: bool = True) -> TestRun:
        """Run test ``name`` and return what psql printed (``spawn test run``): ``run.text``
        is the merged output. A fresh test database is dropped afterwards; a test that
        runs past ``timeout`` seconds (0: no limit) raises ``TestTimedOut``."""
        from spawn_db.errors import TestTimedOut
        from spawn_db.sqltest.suite import select_tests

        select_tests(self.config, name)
        runner = self._test_runner(timeout, hooks)
        try:
            self._prepare(runner, [name])
            done = runner.run(name)
            runner.settle(done, keep=done.timed_out)
        finally:
            runner.close()
        self._hooks(hooks).run("after_tests")
        if done.timed_out:
            raise TestTimedOut(runner.timeout_message(name))
        return done

    def compare(self, names: str | Sequence[str] | None = None, *, jobs: int = 1,
                timeout: float = DEFAULT_TEST_TIMEOUT, hooks: bool = True) -> TestReport:
        """Run the tests (one name, several, or all) and diff each output against its
        ``expected`` file (``spawn test compare``); ``report.passed`` where the CLI exits
        0. ``jobs`` tests run at a time."""
        from spawn_db.sqltest.suite import compare_tests, select_tests

        started = time.monotonic()
        wanted = [names] if isinstance(names, str) else names
        selected = ([n for w in wanted for n in select_tests(self.config, w)]
                    if wanted is not None else select_tests(self.config))
        runner = self._test_runner(timeout, hooks)
        try:
            self._prepare(runner, selected)
            outcomes = tuple(compare_tests(runner, selected, jobs=jobs))
        finally:
            runner.close()
        self._hooks(hooks).run("after_tests")
        return TestReport(outcomes, time.monotonic() - started)

    # -- helpers ---------------------------------------------------------------------------

    def _hooks(self, enabled: bool) -> Hooks:
        """spawn.toml's hooks; what they print is dropped (nothing here prints)."""
        from spawn_db.migrate.hooks import Hooks

        return Hooks(self.config, self.variables(), enabled=enabled)

    def _test_runner(self, timeout: float, hooks: bool) -> TestRunner:
        from spawn_db.sqltest.suite import TestRunner

        runner_hooks = self._hooks(hooks)
        return TestRunner(self.config, variables=self.variables(), timeout=timeout or None,
                          before=lambda test: runner_hooks.run("before_test", test=test))

    @staticmethod
    def _prepare(runner: TestRunner, names: list[str]) -> None:
        """Read every test.toml and build the fresh databases' templates first, as the
        CLI does, so a broken one stops the run before any test."""
        runner.check_settings(names)
        runner.prepare(names)

    def _push_remote(self) -> None:
        if self.config.spawn_folder_url is not None:
            from spawn_db.remote.mirror import Mirror

            Mirror(self.config.spawn_folder_url, self.config.spawn_folder).push()
