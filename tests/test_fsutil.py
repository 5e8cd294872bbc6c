"""The files spawn writes: atomic, private when new, and an existing file keeps its mode.

Modes are checked on real files. The umask is process-wide, so the in-process
tests set it around one call and restore it; the CLI test runs the real
``spawn`` entry point with ``umask 000`` to show a permissive umask does not
leak SQL or test output to other users.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.fsutil import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    atomic_write,
    atomic_write_text,
    make_private_dir,
    write_new,
)
from tests.conftest import DbProject
from tests.helpers import SPAWN, Result, spawn_env

UMASKS = st.integers(min_value=0, max_value=0o777)
MODES = st.integers(min_value=0, max_value=0o777)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _write_atomic(path: Path) -> None:
    atomic_write(path, b"SELECT 1;\n")


def _write_atomic_text(path: Path) -> None:
    atomic_write_text(path, "SELECT 1;\n", durable=False)


def _write_new(path: Path) -> None:
    assert write_new(str(path), b"SELECT 1;\n")


WRITERS: list[Callable[[Path], None]] = [_write_atomic, _write_atomic_text, _write_new]


def test_private_modes_are_owner_only() -> None:
    assert (PRIVATE_FILE_MODE, PRIVATE_DIR_MODE) == (0o600, 0o700)


@pytest.mark.parametrize("write", WRITERS, ids=lambda w: w.__name__)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mask=UMASKS)
def test_new_files_are_0600_whatever_the_umask(write: Callable[[Path], None], mask: int,
                                               tmp_path: Path) -> None:
    path = tmp_path / f"new-{mask:03o}.sql"
    path.unlink(missing_ok=True)
    with _umask(mask):
        write(path)
    assert _mode(path) == 0o600
    assert path.read_bytes() == b"SELECT 1;\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=MODES, mask=UMASKS)
def test_replacing_a_file_keeps_its_mode(mode: int, mask: int, tmp_path: Path) -> None:
    path = tmp_path / "expected"
    path.write_bytes(b"old\n")
    os.chmod(path, mode)
    with _umask(mask):
        atomic_write(path, b"new\n")
    assert _mode(path) == mode
    os.chmod(path, 0o600)
    assert path.read_bytes() == b"new\n"


def test_replacing_keeps_the_owner_and_group_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        # Only root may give a file away; a normal user's replacement is its own file.
        path = tmp_path / "mine"
        path.write_bytes(b"old\n")
        atomic_write(path, b"new\n")
        assert (path.stat().st_uid, path.read_bytes()) == (os.geteuid(), b"new\n")
        return
    path = tmp_path / "theirs"
    path.write_bytes(b"old\n")
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o640)
    atomic_write(path, b"new\n")
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o640)
    assert path.read_bytes() == b"new\n"


def test_a_stale_temporary_file_does_not_lend_its_mode(tmp_path: Path) -> None:
    """A temporary left by a killed writer (same pid and thread) is reused, not trusted."""
    import _thread

    path = tmp_path / "out.xml"
    stale = tmp_path / f".out.xml.{os.getpid()}-{_thread.get_ident()}.tmp"
    stale.write_bytes(b"half")
    os.chmod(stale, 0o666)
    atomic_write(path, b"<xml/>\n")
    assert (_mode(path), path.read_bytes(), stale.exists()) == (0o600, b"<xml/>\n", False)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mask=UMASKS)
def test_private_dir_is_0700_whatever_the_umask(mask: int, tmp_path: Path) -> None:
    path = tmp_path / f"dir-{mask:03o}" / "inner"
    with _umask(mask):
        make_private_dir(path)
    assert (_mode(path), _mode(path.parent)) == (0o700, 0o700)
    make_private_dir(path)  # already there: nothing to do
    assert _mode(path) == 0o700


@pytest.mark.parametrize(("before", "after"), [
    (0o755, 0o711), (0o777, 0o711), (0o750, 0o710), (0o710, 0o710), (0o700, 0o700),
])
def test_private_dir_tightens_an_existing_folder(before: int, after: int,
                                                 tmp_path: Path) -> None:
    """Others lose read and write; passing through (a root-run server's 0710) stays."""
    folder = tmp_path / "state"
    folder.mkdir()
    os.chmod(folder, before)
    make_private_dir(folder)
    assert _mode(folder) == after


def test_private_dir_leaves_a_linked_folder_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o755)
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    make_private_dir(link)  # a folder the user linked in on purpose: used, mode left alone
    assert (_mode(elsewhere), link.is_symlink()) == (0o755, True)


# -- the real CLI, with a permissive umask -------------------------------------------------


def _spawn_umask000(*args: str, cwd: Path) -> Result:
    done = subprocess.run([*SPAWN, *args], cwd=cwd, input="", capture_output=True, text=True,
                          env=spawn_env(), timeout=120, check=False, umask=0)
    return Result(done.returncode, done.stdout, done.stderr)


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


def _modes(root: Path, new: set[Path]) -> dict[str, str]:
    return {str(p.relative_to(root)): f"{_mode(p):04o}" for p in sorted(new)}


def test_cli_writes_private_files_under_umask_000(db_project: DbProject, tmp_path: Path) -> None:
    """Every file spawn writes (config, SQL, pins, locks, caches, test outputs, reports) is
    0600 and ``.spawn/`` is 0700; a file that existed keeps the mode it had."""
    component = db_project.add_component("users.sql", "CREATE TABLE users();\n")
    root = tmp_path / "fresh"
    root.mkdir()
    _ok(_spawn_umask000("init", cwd=root))
    written = {p for p in root.rglob("*") if p.is_file() and p.name != ".gitkeep"}
    assert _modes(root, written) == {".gitignore": "0600", "spawn.toml": "0600"}

    project = db_project.root
    time.sleep(max(0.0, component.stat().st_ctime + 2.1 - time.time()))  # cached when 2 s old
    before = set(project.rglob("*"))
    _ok(_spawn_umask000("migration", "new", "users", cwd=project))
    _ok(_spawn_umask000("test", "new", "smoke", cwd=project))
    [migration] = [p.name for p in (db_project.spawn_dir / "migrations").iterdir()
                   if p.name.endswith("-users")]
    _ok(_spawn_umask000("migration", "pin", migration, cwd=project))
    _ok(_spawn_umask000("test", "expect", "smoke", cwd=project))
    junit = project / "junit.xml"
    _ok(_spawn_umask000("test", "compare", "--junit", str(junit), cwd=project))
    modes = _modes(project, {p for p in set(project.rglob("*")) - before if p.is_file()})
    pinned = {k: v for k, v in modes.items() if k.startswith("spawn/pinned/")}
    assert pinned and set(pinned.values()) == {"0600"}
    assert {k: v for k, v in modes.items() if k not in pinned} == {
        ".spawn/pin-cache.json": "0600",
        f"spawn/migrations/{migration}/up.sql": "0600",
        f"spawn/migrations/{migration}/lock.toml": "0600",
        "spawn/tests/smoke/test.sql": "0600",
        "spawn/tests/smoke/expected": "0600",
        "junit.xml": "0600",
    }
    assert _mode(project / ".spawn") == 0o700

    expected = db_project.spawn_dir / "tests/smoke/expected"
    os.chmod(expected, 0o644)
    os.chmod(junit, 0o640)
    _ok(_spawn_umask000("test", "expect", "smoke", cwd=project))
    _ok(_spawn_umask000("test", "compare", "--junit", str(junit), cwd=project))
    assert (_mode(expected), _mode(junit)) == (0o644, 0o640)
