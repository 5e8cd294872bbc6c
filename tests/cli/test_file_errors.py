"""Files spawn cannot write: read-only folders and names longer than the file system allows.

Tests run as root in CI, and root ignores permission bits, so the spawn
process runs as ``nobody`` then (``setpriv``) on a folder owned by root; as a
normal user the folder is simply made read-only. Either way the project lives
in a folder under /tmp that ``nobody`` can enter.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.config import Overrides, load_config
from spawn_db.errors import NameTooLong
from spawn_db.migrate.migration import new_migration
from spawn_db.project import init_project, validate_name
from tests.cli.test_foundation import assert_one_line_error
from tests.helpers import SPAWN, Result, run_spawn, snapshot_files

AS_NOBODY = (["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
             if os.geteuid() == 0 else [])


def run_unprivileged(*args: str, cwd: Path) -> Result:
    """The real entry point, as a user who cannot write the read-only folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPAWN_")}
    done = subprocess.run([*AS_NOBODY, *SPAWN, *args], cwd=cwd, input="", capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def read_only(*folders: Path) -> None:
    for folder in folders:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH
                     | stat.S_IXOTH)


@pytest.fixture()
def shared_root() -> Iterator[Path]:
    """A folder under /tmp that the unprivileged user can enter (tmp_path's parents are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="spawn-ro-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in (base, *base.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def project(shared_root: Path) -> Path:
    root = shared_root / "project"
    init_project(root)
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


# -- item 18: read-only folders --------------------------------------------------------------


@pytest.mark.parametrize(("command", "folder"), [
    (("migration", "new", "add-users"), "spawn/migrations"),
    (("test", "new", "users"), "spawn/tests"),
])
def test_new_in_a_read_only_folder_is_one_line(
    project: Path, command: tuple[str, ...], folder: str
) -> None:
    read_only(project / folder)
    before = snapshot_files(project)

    result = run_unprivileged(*command, cwd=project)

    assert_one_line_error(result, 1, f"error: {project / folder}/", ": permission denied; check "
                          "the permissions of the file and its folder for the user running spawn")
    assert snapshot_files(project) == before


def test_init_in_a_read_only_folder_is_one_line(shared_root: Path) -> None:
    folder = shared_root / "empty"
    folder.mkdir()
    read_only(folder)

    result = run_unprivileged("init", cwd=folder)
    example = run_unprivileged("init", "--example", cwd=folder)

    assert_one_line_error(result, 1, f"error: {folder}/", "permission denied")
    assert_one_line_error(example, 1, f"error: {folder / 'spawn-example'}: permission denied")
    assert list(folder.iterdir()) == []


def test_pin_in_a_read_only_pinned_folder_is_one_line(project: Path) -> None:
    made = run_spawn("migration", "new", "x", cwd=project)
    read_only(project / "spawn" / "pinned")

    result = run_unprivileged("migration", "pin", made.stdout.strip(), cwd=project)

    assert_one_line_error(result, 1, str(project / "spawn" / "pinned"), "ermission denied")


@pytest.fixture()
def db_project_shared(project: Path) -> Path:
    """``project`` with one test, and a target any user can run: a stand-in for psql that
    reads the script and prints one line (``nobody`` cannot reach the suite's server,
    whose socket folder is private, and a connection error now stops a run first)."""
    (project / "spawn.toml").write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\nengine = "postgres-psql"\n'
        'command = { kind = "direct", direct = ["sh", "-c", "cat >/dev/null; echo one"] }\n',
        encoding="utf-8")
    test = project / "spawn" / "tests" / "one"
    test.mkdir(mode=0o755)
    (test / "test.sql").write_text("SELECT 1 AS one;\n", encoding="utf-8")
    (test / "test.sql").chmod(0o644)
    return project


def test_expect_in_a_read_only_test_folder_is_one_line(db_project_shared: Path) -> None:
    folder = db_project_shared / "spawn" / "tests" / "one"
    read_only(folder)

    result = run_unprivileged("test", "expect", "one", cwd=db_project_shared)

    assert_one_line_error(result, 1, f"error: {folder / 'expected'}: permission denied; check "
                          "the permissions")
    assert not (folder / "expected").exists()


def test_compare_junit_into_a_read_only_folder_is_one_line(db_project_shared: Path) -> None:
    assert run_spawn("test", "expect", "one", cwd=db_project_shared).exit_code == 0
    read_only(db_project_shared)

    result = run_unprivileged("test", "compare", "--junit", "report.xml", cwd=db_project_shared)

    assert_one_line_error(
        result, 1, f"cannot write --junit report.xml: folder {db_project_shared} is not "
        "writable (permissions or a read-only file system); pick a writable folder")
    assert result.stdout == ""
    assert not (db_project_shared / "report.xml").exists()


# -- item 17: names longer than the file system allows ----------------------------------------

LONG = "x" * 300


@pytest.fixture()
def plain_project(tmp_path: Path) -> Path:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    return tmp_path


@pytest.mark.parametrize(("command", "fragment"), [
    (("migration", "new", LONG), "migration name xxx"),
    (("migration", "new", "x" * 241), "is 241 bytes long"),
    (("migration", "build", LONG), "migration name xxx"),
    (("migration", "pin", LONG), "migration name xxx"),
    (("migration", "apply", LONG), "migration name xxx"),
    (("test", "new", LONG), "test name xxx"),
    (("test", "build", LONG), "test name xxx"),
    (("test", "run", LONG), "test name xxx"),
    (("test", "expect", LONG), "test name xxx"),
    (("init", "--example", LONG), "example folder xxx"),
    (("test", "compare", "--junit", LONG + ".xml"), "--junit file xxx"),
    (("--config-file", LONG + ".toml", "check"), "the name is too long for the file system"),
    (("migration", "build", "x", "--variables", LONG + ".json"), "ile name too long"),
])
def test_names_longer_than_the_file_system_allows(
    plain_project: Path, command: tuple[str, ...], fragment: str
) -> None:
    workdir = plain_project if command[0] != "init" else plain_project.parent / "elsewhere"
    workdir.mkdir(exist_ok=True)
    before = snapshot_files(plain_project)

    result = run_spawn(*command, cwd=workdir)

    assert_one_line_error(result, 2, fragment)
    if "--variables" not in command and "--config-file" not in command:
        assert "255 bytes" in result.stderr
    assert snapshot_files(plain_project) == before


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=200, max_value=300))
def test_migration_name_limit_is_exactly_what_the_file_system_holds(
    plain_project: Path, size: int
) -> None:
    config = load_config(Overrides(), cwd=plain_project)
    name = "n" * size
    if size > 240:
        with pytest.raises(NameTooLong, match=f"is {size} bytes long"):
            new_migration(config, name)
        validate_name("20260101090000-" + "n" * min(size, 240), "migration")
    else:
        folder = new_migration(config, name)
        assert (config.migrations_dir / folder / "up.sql").is_file()
        shutil.rmtree(config.migrations_dir / folder)
