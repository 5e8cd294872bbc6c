"""The project on disk (SPEC §1): creating it, and finding migrations and tests in it."""

from __future__ import annotations

import difflib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from spawn_db.config import CONFIG_FILE_NAME, Config, find_project_config, toml_string
from spawn_db.errors import AmbiguousName, NameTooLong, NotFoundError, UsageError
from spawn_db.fsutil import atomic_write_text

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
TIMESTAMP_PREFIX = re.compile(r"^\d{14}-")
SPAWN_FOLDERS = ("components", "migrations", "tests", "pinned")
GITIGNORE_ENTRY = ".spawn/"
# Linux file systems allow 255 bytes a name and PATH_MAX (4096, with the NUL) a path.
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4095
TIMESTAMP_BYTES = len("20260101090000-")


def validate_name(name: str, what: str) -> str:
    """A migration, test or database name must be one plain folder name."""
    if not NAME_PATTERN.match(name) or name in (".", ".."):
        example = "shop" if what == "database" else "add-users"
        raise UsageError(
            f"invalid {what} name {name!r}: use letters, digits, `-`, `_` and `.` only "
            f"(no `/`, spaces or leading `.`), e.g. {example}"
        )
    _check_name_length(name, what)
    return name


def _check_name_length(name: str, what: str) -> None:
    """The folder for ``name`` must fit in one file-system name (255 bytes).

    A new migration's folder is ``<timestamp>-NAME``, so a migration name without
    that prefix may use 15 bytes less.
    """
    reserved = TIMESTAMP_BYTES if what == "migration" and not TIMESTAMP_PREFIX.match(name) else 0
    limit = NAME_MAX_BYTES - reserved
    size = len(name.encode("utf-8"))
    if size <= limit:
        return
    why = f" and spawn adds a {reserved}-byte timestamp prefix" if reserved else ""
    raise NameTooLong(
        f"{what} name {name[:24]}... is {size} bytes long: a folder name can have at most "
        f"{NAME_MAX_BYTES} bytes{why}; use a name of at most {limit} bytes"
    )


def check_path_length(path: Path, what: str) -> None:
    """Refuse a path the file system cannot hold, naming the limit (not ENAMETOOLONG later)."""
    for part in path.parts:
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX_BYTES:
            raise NameTooLong(
                f"{what} {part[:24]}... is {size} bytes long: a file or folder name can have "
                f"at most {NAME_MAX_BYTES} bytes; choose a shorter name"
            )
    size = len(str(path).encode("utf-8", "surrogateescape"))
    if size > PATH_MAX_BYTES:
        raise NameTooLong(
            f"{what} {str(path)[:40]}... is {size} bytes long: a path can have at most "
            f"{PATH_MAX_BYTES} bytes; choose a shorter folder"
        )


def refuse_nested_project(directory: Path, *, example: bool) -> None:
    """Refuse to create a project inside another one (a spawn.toml in a parent folder).

    Commands find the nearest spawn.toml upwards, so a nested project silently
    takes over its folder and starts a second embedded server. Nesting on
    purpose stays possible with an explicit ``--config-file``. A spawn.toml in
    ``directory`` itself is left to ``init_project``'s "already exists".
    """
    if example:
        found = find_project_config(directory)
    elif (directory / CONFIG_FILE_NAME).exists():
        return
    else:
        found = find_project_config(directory.parent)
    if found is None:
        return
    if example:
        raise UsageError(
            f"{directory} is inside the Spawn project of {found}; create the example "
            "outside any project (e.g. `cd /tmp && spawn init --example`)"
        )
    raise UsageError(
        f"{directory} is inside the Spawn project of {found}; run spawn commands from here as "
        f"they are (spawn.toml is found in parent folders), or pass --config-file "
        f"{directory / CONFIG_FILE_NAME} to create a separate, nested project on purpose"
    )


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    created: tuple[Path, ...]


def init_project(
    directory: Path,
    *,
    config_name: str = CONFIG_FILE_NAME,
    docker_database: str | None = None,
    spawn_folder: str = "spawn",
) -> InitResult:
    """Create ``spawn.toml`` and the folders; refuses when a config already exists."""
    config_path = directory / config_name
    check_path_length(config_path, "project path")
    if config_path.exists():
        raise UsageError(
            f"{config_path} already exists; this folder is already a Spawn project "
            "(delete the file to start over)"
        )
    compose = directory / "docker-compose.yaml"
    if docker_database is not None:
        validate_name(docker_database, "database")
        if compose.exists():
            raise UsageError(f"{compose} already exists; remove it or run init without --docker")
    directory.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    for folder in SPAWN_FOLDERS:
        path = directory / spawn_folder / folder
        path.mkdir(parents=True, exist_ok=True)
        keep = path / ".gitkeep"
        if not keep.exists():
            keep.touch()
            created.append(keep)
    if docker_database is not None:
        atomic_write_text(compose, _docker_compose(docker_database))
        created.append(compose)
    if _ensure_gitignore(directory / ".gitignore"):
        created.append(directory / ".gitignore")
    atomic_write_text(config_path, _config_text(spawn_folder, docker_database))
    created.append(config_path)
    return InitResult(config_path, tuple(created))


def _config_text(spawn_folder: str, docker_database: str | None) -> str:
    if docker_database is None:
        command = '{ kind = "embedded" }'
        comment = (
            "# The embedded target: spawn runs a private PostgreSQL for this project\n"
            "# under .spawn/postgres/, on a Unix socket (no TCP port).\n"
        )
    else:
        argv = ["docker", "exec", "-i", f"{docker_database}-db", "psql", "-U", "postgres",
                docker_database]
        command = '{ kind = "direct", direct = [' + ", ".join(toml_string(a) for a in argv) + "] }"
        comment = "# Runs psql inside the container from docker-compose.yaml.\n"
    return (
        f"spawn_folder = {toml_string(spawn_folder)}\n"
        'target = "local"\n'
        f'project_id = "{uuid.uuid4()}"\n'
        "\n"
        "[targets.local]\n"
        f"{comment}"
        'engine = "postgres-psql"\n'
        'spawn_schema = "_spawn"\n'
        'environment = "dev"\n'
        f"command = {command}\n"
        "\n"
        "[templates]\n"
        "# An undefined value such as {{ variables.missing }} is an error, not empty text.\n"
        'undefined = "strict"\n'
    )


def _docker_compose(database: str) -> str:
    return (
        "services:\n"
        "  postgres:\n"
        "    image: postgres:17\n"
        f"    container_name: {database}-db\n"
        "    environment:\n"
        "      POSTGRES_PASSWORD: postgres\n"
        f"      POSTGRES_DB: {database}\n"
        "    ports:\n"
        '      - "5432:5432"\n'
    )


def _ensure_gitignore(path: Path) -> bool:
    """Add ``.spawn/`` to ``.gitignore``; True when the file changed."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = {line.strip() for line in text.splitlines()}
    if GITIGNORE_ENTRY in lines or ".spawn" in lines:
        return False
    prefix = text if not text or text.endswith("\n") else text + "\n"
    atomic_write_text(path, prefix + GITIGNORE_ENTRY + "\n")
    return True


class Project:
    """Finds migrations and tests of a loaded config."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def migration_names(self) -> list[str]:
        """Folders with an ``up.sql``, and scripted migrations (``[[steps]]``, no up.sql)."""
        names = _folders_with(self.config.migrations_dir, "up.sql")
        plain = set(names)  # not the list: 10,000 migrations made that 50M comparisons
        scripted = [n for n in _folders_with(self.config.migrations_dir, STEPS_SETTINGS)
                    if n not in plain and is_scripted(self.migration_dir(n))]
        return sorted(names + scripted) if scripted else names

    def migration_dir(self, name: str) -> Path:
        return self.config.migrations_dir / name

    def find_migration(self, name: str) -> Path:
        """The folder of migration ``name`` (see ``resolve_migration`` for the names accepted)."""
        return self.migration_dir(self.resolve_migration(name))

    def resolve_migration(self, name: str) -> str:
        """The full folder name of the migration a user typed as ``name``.

        Every command that takes a migration name comes through here. Accepted:
        the exact folder name (which always wins), with or without the trailing
        ``/`` shell completion adds, or a unique suffix of it that starts after
        a ``-``, ``_`` or ``.`` (``add-users`` or ``users`` for
        ``20260131120000-add-users``). Several matches are an error listing
        them; no match suggests close names.
        """
        typed = name.rstrip("/") or name
        validate_name(typed, "migration")
        if (self.migration_dir(typed) / "up.sql").is_file() \
                or (self.migration_dir(typed) / TENANT_PART).is_file() \
                or is_scripted(self.migration_dir(typed)):
            return typed
        names = sorted(set(self.migration_names())
                       | set(_folders_with(self.config.migrations_dir, TENANT_PART)))
        matches = [n for n in names if _ends_with_part(n, typed)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousName(
                f"migration {typed!r} is ambiguous: it ends {len(matches)} migration names "
                f"({', '.join(matches)}); type more of the name, or the full folder name"
            )
        raise NotFoundError(
            f"migration {typed!r} not found in {self.config.migrations_dir}"
            f"{_suggestions(typed, names)}; `spawn migration list` lists them"
        )

    def test_names(self) -> list[str]:
        return _folders_with(self.config.tests_dir, "test.sql")

    def find_test(self, name: str) -> Path:
        validate_name(name, "test")
        path = self.config.tests_dir / name
        if (path / "test.sql").is_file():
            return path
        raise NotFoundError(
            f"test {name!r} not found in {self.config.tests_dir}"
            f"{_suggestions(name, self.test_names())}; create it with `spawn test new {name}`"
        )

    def display(self, path: Path) -> str:
        """A path relative to the project folder, for messages and template names."""
        try:
            return str(path.relative_to(self.config.project_dir))
        except ValueError:
            return str(path)


def _ends_with_part(name: str, suffix: str) -> bool:
    """``suffix`` is the end of ``name`` after a ``-``, ``_`` or ``.`` (a whole word or more)."""
    if len(suffix) >= len(name) or not name.endswith(suffix):
        return False
    return name[-len(suffix) - 1] in "-_."


# A migration with only a tenant part (docs/fleets.md) has tenant.sql and no up.sql.
TENANT_PART = "tenant.sql"
# A scripted migration (migrate/steps.py) has no up.sql: its migration.toml lists [[steps]].
STEPS_SETTINGS = "migration.toml"


def is_scripted(folder: Path) -> bool:
    """Whether ``folder`` is a scripted migration: no ``up.sql``, a ``migration.toml``
    with ``steps`` (checked properly when it is loaded; here only found)."""
    import tomllib

    if (folder / "up.sql").is_file():
        return False
    try:
        raw = tomllib.loads((folder / STEPS_SETTINGS).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return "steps" in raw


def folders_with(parent: Path, filename: str) -> list[str]:
    """Names of the folders of ``parent`` that hold ``filename`` (see ``_folders_with``)."""
    return _folders_with(parent, filename)


def _folders_with(parent: Path, filename: str) -> list[str]:
    """Names of the folders of ``parent`` that hold ``filename``; string paths, since a
    project may have ten thousand migrations and this runs on every command."""
    try:
        entries = list(os.scandir(parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e.name for e in entries if os.path.isfile(os.path.join(e.path, filename)))


def _suggestions(name: str, names: list[str]) -> str:
    by_suffix = [n for n in names if TIMESTAMP_PREFIX.sub("", n) == name]
    close = by_suffix or difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if not close:
        by_contains = [n for n in names if name in n][:3]
        close = by_contains
    if not close:
        return ""
    return "; did you mean " + " or ".join(close) + "?"
