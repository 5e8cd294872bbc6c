"""One error family for everything Spawn reports to a user.

Library code raises these; the CLI catches ``SpawnError`` once and turns it
into a message on stderr and an exit code. Each message is one sentence that
names the file, line or object involved and says how to fix it.
"""

from __future__ import annotations

USAGE_EXIT = 2
FAILURE_EXIT = 1


class SpawnError(Exception):
    """Base of every error Spawn reports to a user."""

    exit_code: int = USAGE_EXIT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(SpawnError):
    """spawn.toml, a target, a flag or an environment variable is wrong."""


class UsageError(SpawnError):
    """A command was called with arguments that cannot work."""


class NotFoundError(SpawnError):
    """A named migration, test or file does not exist."""


class TemplateError(SpawnError):
    """A template failed to parse or render; names the file and line."""

    exit_code = FAILURE_EXIT

    def __init__(self, message: str, *, template: str | None = None, line: int | None = None):
        super().__init__(message)
        self.template = template
        self.line = line


class RefusedPath(SpawnError):
    """An include or file read tried to leave components/; the renderer adds file:line."""

    exit_code = FAILURE_EXIT


class ComponentNotFound(SpawnError):
    """An include, import or file read names no file under components/; located like above."""

    exit_code = FAILURE_EXIT


class EscapeError(SpawnError):
    """A value cannot be represented in PostgreSQL text (it contains NUL)."""

    exit_code = FAILURE_EXIT


class VariablesError(SpawnError):
    """A --variables file cannot be read or parsed."""


class SecretError(ConfigError):
    """A secret is undeclared or unavailable, or an encrypted file cannot be decrypted: a
    configuration problem (exit 2), never a partial result."""


class PinStoreError(SpawnError):
    """An object of the pin store is missing or corrupt, or a lock file is invalid."""

    exit_code = FAILURE_EXIT


class DatabaseError(SpawnError):
    """The database cannot be reached or set up."""

    exit_code = FAILURE_EXIT


class EmbeddedServerError(DatabaseError):
    """The project-local PostgreSQL server cannot be found, created or started."""


class ControlError(DatabaseError):
    """A bookkeeping statement failed in the control session; carries psql's error text."""


class PsqlError(DatabaseError):
    """psql exited non-zero; carries its exit code and error text."""

    def __init__(self, message: str, *, exit_code: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.psql_exit_code = exit_code
        self.stderr = stderr


class MigrationError(SpawnError):
    """A migration cannot be applied or recorded."""

    exit_code = FAILURE_EXIT


class MigrationFailed(MigrationError):
    """The migration's SQL failed; the failure has been recorded."""


class PreviousAttemptFailed(MigrationError):
    """The latest history row is FAILURE or ATTEMPTED and --retry was not given."""


class NotPinned(MigrationError):
    """An unpinned migration was asked to apply without --no-pin."""

    exit_code = USAGE_EXIT


class MigrationSettingsError(ConfigError):
    """A ``migration.toml`` is unreadable, mistyped or names an unknown migration."""


class DependencyCycle(MigrationSettingsError):
    """Migrations require each other in a cycle; the message prints it."""


class PlanRefused(MigrationError):
    """The plan cannot complete (a requirement, conflict, order or draft rule); nothing ran."""

    exit_code = USAGE_EXIT


class LockUnavailable(MigrationError):
    """The migration lock stayed taken by another session for too long."""


class MigrationStillRunning(MigrationError):
    """A migration a stopped spawn started is still running: nothing may overlap it."""


class LockLost(MigrationError):
    """The migration lock ended while migrations were running; the run stopped."""


class NotRecorded(MigrationError):
    """A migration ran but its outcome could not be written to the history."""


class DatabaseUnreachable(DatabaseError):
    """psql could not connect at all: every other test would fail the same way."""


class CommandUnavailable(ConfigError):
    """The target's psql command cannot be started: configuration, for every command."""

    @classmethod
    def starting(cls, shown: str, exc: OSError) -> CommandUnavailable:
        """``shown``: the program as the message may show it (quoted, secrets masked)."""
        return cls(f"cannot run {shown}: {exc.strerror}; check the target's `command` in "
                   "spawn.toml")


class TestError(SpawnError):
    """A golden-file test could not be run (not: its output differed)."""

    __test__ = False


class SessionFailed(SpawnError):
    """A test's concurrent sessions (bg/step/wait) cannot go on; the test fails, others run."""

    exit_code = FAILURE_EXIT


class PostgresNotFound(EmbeddedServerError):
    """No usable PostgreSQL binaries: a setup problem, reported with install commands."""

    exit_code = USAGE_EXIT


class TestTimedOut(TestError):
    """A test ran past its timeout; it was stopped and its session terminated."""

    __test__ = False
    exit_code = FAILURE_EXIT


class NameTooLong(UsageError):
    """A name or path is longer than the file system allows (255 bytes a name)."""


class FileAccessError(SpawnError):
    """A file or folder spawn reads or writes for the user cannot be: permissions, space.

    Built from the ``OSError`` so the message names the file and the reason in
    one line instead of a traceback; a name that is too long is a usage error.
    """

    exit_code = FAILURE_EXIT

    @classmethod
    def from_os_error(cls, exc: OSError, path: str | None = None) -> SpawnError:
        import errno

        where = path or _user_path(exc)
        prefix = f"{where}: " if where else ""
        if exc.errno == errno.ENAMETOOLONG:
            return NameTooLong(
                f"{prefix}the name is too long for the file system (at most 255 bytes a "
                "name and 4095 a path); choose a shorter name or a shorter folder"
            )
        fix = _OS_ERROR_FIXES.get(exc.errno or 0)
        reason = (exc.strerror or str(exc)).lower() if fix else (exc.strerror or str(exc))
        return cls(f"{prefix}{reason}; {fix or 'check the path and try again'}")


def _os_error_fixes() -> dict[int, str]:
    import errno

    permission = "check the permissions of the file and its folder for the user running spawn"
    space = "free some space and try again"
    return {
        errno.EACCES: permission,
        errno.EPERM: permission,
        errno.EROFS: "the project is on a read-only file system; work in a writable copy",
        errno.ENOSPC: space,
        errno.EDQUOT: space,
    }


_OS_ERROR_FIXES = _os_error_fixes()


def _user_path(exc: OSError) -> str | None:
    """The file the user knows: atomic writes fail on ``.NAME.PID-TID.tmp`` beside NAME."""
    import os
    import re

    name = exc.filename2 if exc.filename2 is not None else exc.filename
    if name is None:
        return None
    text = os.fsdecode(name) if isinstance(name, str | bytes) else str(name)
    folder, base = os.path.split(text)
    temporary = re.fullmatch(r"\.(.+)\.\d+-\d+\.tmp", base)
    return os.path.join(folder, temporary.group(1)) if temporary else text


class AppliedMigrationPin(MigrationError):
    """``migration pin`` was asked to re-pin an applied migration without ``--force``."""

    exit_code = USAGE_EXIT


class OutsideLink(RefusedPath):
    """A symbolic link under components/ (or components/ itself) resolves outside it.

    Raised by every reader of the working tree and by the pin walk, so neither a
    render nor a pin can read a file the project does not hold; names the link.
    """


class TemplateTooLarge(SpawnError):
    """A template asked for a value over a size limit (``range``, ``*``, ``~``, ...).

    Raised at run time and located by the renderer (file and line), so a template
    cannot exhaust memory silently.
    """

    exit_code = FAILURE_EXIT


class AmbiguousName(UsageError):
    """A migration name given as a suffix matches several migrations; lists them."""


class DriftCheckFailed(SpawnError):
    """``spawn migration drift`` could not rebuild the applied migrations on a scratch
    database (a checksum that no longer matches the history, a migration that fails
    there); names the migration. Exit 2: no comparison was made."""


class TemplateBuildFailed(SpawnError):
    """A fresh test database's template could not be built (a migration failed on it, or
    the server refused the database); names the migration or database. No test runs."""

    exit_code = FAILURE_EXIT


class DataFileError(SpawnError):
    """A CSV or JSON Lines file a template reads is not in spawn's fixed dialect (a ragged
    row, bad UTF-8, an unterminated quote); names the file and line. Located by the
    renderer like any template error."""

    exit_code = FAILURE_EXIT


class HookFailed(SpawnError):
    """A ``[[hooks.<event>]]`` entry with ``on_error = "fail"`` failed; names the hook and
    what it said. Exit 1: migrations that ran before it keep their history rows."""

    exit_code = FAILURE_EXIT


class DataSourceError(SpawnError):
    """``spawn data fetch`` could not download or run a ``[data.<name>]`` source, or its
    bytes do not have the declared sha256; nothing under components/data/ changed."""

    exit_code = FAILURE_EXIT


class SchemaDumpFailed(SpawnError):
    """``spawn schema flatten|export|import`` could not build, dump or import the schema (no
    migrations, a migration failing on the scratch database, pg_dump or psql failing, a
    variable the baseline cannot be written with); names the migration, file or variable."""

    exit_code = FAILURE_EXIT
