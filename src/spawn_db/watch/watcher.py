"""The state ``spawn watch`` keeps between saves, and one synchronisation with the files.

A sync re-renders only the draft migrations whose last render read a changed file,
re-applies those whose rendered checksum differs from what the database has, re-applies
the repeatable migrations whose checksum changed (their own cache knows which files each
read, so unchanged ones are not even rendered), then runs the named tests. Nothing here
prints: the CLI gets events through ``WatchReporter``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from spawn_db.errors import ConfigError, SpawnError
from spawn_db.watch.reads import RecordedRender, content_digest, render_migration_script

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.migrate.tracking import HistoryRow
    from spawn_db.sqltest.suite import TestOutcome

PROD_ENVIRONMENTS = ("prod", "production")
# Folders under the spawn folder whose files never feed a render watch re-applies.
IGNORED_FOLDERS = ("pinned", ".spawn")


@dataclass(frozen=True)
class Applied:
    """One item brought up to date: how (``how``) and in how long."""

    kind: str
    name: str
    how: str
    seconds: float


class WatchReporter(Protocol):
    def applied(self, done: Applied) -> None: ...

    def failed(self, what: str, message: str) -> None: ...

    def tested(self, outcomes: Sequence[TestOutcome]) -> None: ...


@dataclass
class SyncResult:
    """What one sync did; ``ran`` is False when the change touched nothing watch follows."""

    ran: bool = False
    applied: list[Applied] = field(default_factory=list)
    failures: int = 0
    outcomes: list[TestOutcome] = field(default_factory=list)


def refuse_production(config: Config) -> None:
    """``spawn watch`` re-applies migrations on every save: never against production."""
    if config.environment in PROD_ENVIRONMENTS:
        raise ConfigError(
            f"spawn watch is for development databases and the environment is "
            f"{config.environment!r}; select a development target (--target NAME) or pass "
            "-e dev")


class Watcher:
    """Keeps the target following the working tree: drafts re-applied, tests re-run."""

    def __init__(self, config: Config, reporter: WatchReporter, *, tests: Sequence[str] = (),
                 variables_path: str | None = None) -> None:
        refuse_production(config)
        self.config = config
        self.reporter = reporter
        self.tests = list(tests)
        self.variables_file = config.variables_file(variables_path)
        self.reads: dict[str, frozenset[Path]] = {}
        self.digests: dict[Path, bytes | None] = {}
        for name in self.tests:
            from spawn_db.project import Project

            Project(config).find_test(name)

    # -- what to watch ----------------------------------------------------------------------

    def roots(self) -> list[Path]:
        """Folders whose changes can matter: the spawn folder, and the variables file's."""
        roots = [self.config.spawn_folder]
        if self.variables_file is not None:
            parent = self.variables_file.resolve().parent
            if not parent.is_relative_to(self.config.spawn_folder.resolve()):
                roots.append(parent)
        return roots

    def relevant(self, path: Path) -> bool:
        """Whether a changed path can change a render or a test: not the pin store, not
        spawn's own state, and outside the spawn folder only the variables file."""
        folder = self.config.spawn_folder.resolve()
        path = path.resolve() if path.exists() else path
        if self.variables_file is not None and path == self.variables_file.resolve():
            return True
        if not path.is_relative_to(folder):
            return False
        first = path.relative_to(folder).parts[:1]
        return not first or first[0] not in IGNORED_FOLDERS

    def really_changed(self, paths: Iterable[Path]) -> set[Path]:
        """The paths whose content differs from the last time watch looked (a touch or a
        save of the same bytes is no change)."""
        changed: set[Path] = set()
        for path in paths:
            if not self.relevant(path):
                continue
            now = content_digest(path)
            if path in self.digests and self.digests[path] == now:
                continue
            self.digests[path] = now
            changed.add(path)
        return changed

    # -- one synchronisation ----------------------------------------------------------------

    def sync(self, changed: set[Path] | None = None) -> SyncResult:
        """Bring the drafts up to date and run the tests; ``changed`` None means everything
        (the first sync)."""
        result = SyncResult()
        variables = self._variables(result)
        if variables is None:
            return result
        drafts = [name for name in self._drafts()
                  if changed is None or self._affected(name, changed)]
        history = self._history(result) if drafts else {}
        if history is None:
            return result
        for name in drafts:
            result.ran = True
            self._sync_draft(name, history.get(name), variables, result)
        if changed is None or self._repeatables_touched(changed):
            result.ran = True
            self._sync_repeatables(variables, result)
        if self.tests and (result.ran or changed is None or self._tests_touched(changed)):
            result.ran = True
            result.outcomes = self._run_tests(variables)
            self.reporter.tested(result.outcomes)
        return result

    def _variables(self, result: SyncResult) -> Any:
        from spawn_db.render.variables import load_variables

        if self.variables_file is None:
            return {}
        try:
            return load_variables(self.variables_file)
        except SpawnError as exc:
            result.ran = True
            result.failures += 1
            self.reporter.failed("variables", exc.message)
            return None

    def _history(self, result: SyncResult) -> dict[str, HistoryRow] | None:
        from spawn_db.migrate.apply import read_history

        try:
            return read_history(self.config)
        except SpawnError as exc:
            result.ran = True
            result.failures += 1
            self.reporter.failed("database", exc.message)
            return None

    def _drafts(self) -> list[str]:
        from spawn_db.migrate.settings import load_settings
        from spawn_db.project import Project

        drafts = []
        for name in Project(self.config).migration_names():
            try:
                if load_settings(self.config, name).draft:
                    drafts.append(name)
            except SpawnError as exc:
                self.reporter.failed(f"migration {name}", exc.message)
        return drafts

    def _affected(self, name: str, changed: set[Path]) -> bool:
        folder = self.config.migrations_dir / name
        if any(path.is_relative_to(folder) for path in changed):
            return True
        reads = self.reads.get(name)
        if reads is None:  # new draft, or one whose last render failed before reading
            return True
        if self.variables_file is not None and self.variables_file in changed:
            return True
        return not reads.isdisjoint(changed)

    def _repeatables_touched(self, changed: set[Path]) -> bool:
        """A change a repeatable can read: its own folder, a component, the variables."""
        from spawn_db.migrate.repeatable import repeatable_dir

        folders = (repeatable_dir(self.config), self.config.components_dir)
        return any(path.is_relative_to(folder) for path in changed for folder in folders) or (
            self.variables_file is not None and self.variables_file in changed)

    def _sync_repeatables(self, variables: Any, result: SyncResult) -> None:
        from spawn_db.migrate.repeatable import apply_repeatables, repeatable_names

        if not repeatable_names(self.config):
            return
        try:
            done = apply_repeatables(self.config, variables=variables)
        except SpawnError as exc:
            result.failures += 1
            self.reporter.failed("repeatables", exc.message)
            return
        for outcome in done.applied:
            applied = Applied("repeatable", outcome.name, "up.sql", outcome.seconds)
            result.applied.append(applied)
            self.reporter.applied(applied)

    def _tests_touched(self, changed: set[Path]) -> bool:
        tests = self.config.tests_dir
        return any(path.is_relative_to(tests / name) for path in changed for name in self.tests)

    def _sync_draft(self, name: str, row: HistoryRow | None, variables: Any,
                    result: SyncResult) -> None:
        from spawn_db.migrate.plan import is_done, state_of

        try:
            rendered = self._render(name, variables)
        except SpawnError as exc:
            result.failures += 1
            self.reporter.failed(f"draft {name}", exc.message)
            return
        state = state_of(row)
        if is_done(state) and row is not None and row.checksum == rendered.checksum:
            return
        started = time.monotonic()
        try:
            how = self._reapply(name, applied=is_done(state), retry=state in (
                "failed", "attempted"), variables=variables)
        except SpawnError as exc:
            result.failures += 1
            self.reporter.failed(f"draft {name}", exc.message)
            return
        done = Applied("draft", name, how, time.monotonic() - started)
        result.applied.append(done)
        self.reporter.applied(done)

    def _render(self, name: str, variables: Any) -> RecordedRender:
        folder = self.config.migrations_dir / name
        own = frozenset({folder / "up.sql", folder / "down.sql", folder / "migration.toml"})
        try:
            rendered = render_migration_script(self.config, name, "up.sql", variables)
        except SpawnError:
            self.reads.pop(name, None)
            raise
        self.reads[name] = rendered.reads | own
        return rendered

    def _reapply(self, name: str, *, applied: bool, retry: bool, variables: Any) -> str:
        """Run the draft's down.sql then up.sql when it has one, else up.sql again (written
        to be re-runnable); a draft not applied yet is simply applied."""
        from spawn_db.migrate.apply import apply
        from spawn_db.migrate.revert import RevertRequest, revert

        has_down = (self.config.migrations_dir / name / "down.sql").is_file()
        if applied and has_down:
            revert(self.config, RevertRequest(migration=name), pinned=False,
                   variables=variables)
            apply(self.config, name, pinned=False, variables=variables, allow_draft=True)
            return "down.sql, then up.sql"
        if applied:
            apply(self.config, name, pinned=False, variables=variables, allow_draft=True,
                  again=True)
            return "up.sql again"
        apply(self.config, name, pinned=False, variables=variables, allow_draft=True,
              retry=retry)
        return "up.sql"

    def _run_tests(self, variables: Any) -> list[TestOutcome]:
        from spawn_db.sqltest.suite import TestRunner

        runner = TestRunner(self.config, variables=variables)
        return [runner.compare(name) for name in self.tests]
