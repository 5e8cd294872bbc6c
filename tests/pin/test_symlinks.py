"""Symbolic links under components/: followed inside it, refused when they leave it.

A link to ``/etc/passwd``, ``/etc`` or ``/proc/self/environ`` must never be read
into the pin store, which users commit (issue 11, item 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spawn_db.errors import OutsideLink
from spawn_db.pin.snapshot import snapshot
from spawn_db.pin.store import PinnedTree, PinStore, read_lock
from tests.helpers import run_spawn

SECRET = "PGPASSWORD"
SECRET_VALUE = "spawn-secret-7f3a9c"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    assert run_spawn("init", cwd=root).exit_code == 0
    components = root / "spawn" / "components"
    (components / "lib").mkdir()
    (components / "lib" / "a.sql").write_text("SELECT 1;\n")
    return root


def new_migration(project: Path) -> Path:
    result = run_spawn("migration", "new", "m", cwd=project)
    assert result.exit_code == 0, result.stderr
    return project / "spawn" / "migrations" / result.stdout.strip()


def store_files(project: Path) -> dict[str, bytes]:
    pinned = project / "spawn" / "pinned"
    return {str(p.relative_to(pinned)): p.read_bytes()
            for p in sorted(pinned.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("link", "target", "shown"),
    [
        ("passwd.sql", "/etc/passwd", "/etc/passwd"),
        ("etc", "/etc", "/etc"),
        ("lib/environ", "/proc/self/environ", "/proc/"),
        ("dotdot.sql", "lib/../../spawn.toml", "spawn.toml"),
        ("project", "..", "/project/spawn"),
    ],
)
def test_pin_refuses_a_link_leaving_components_and_writes_nothing(
    project: Path, link: str, target: str, shown: str
) -> None:
    migration = new_migration(project)
    run_spawn("migration", "pin", migration.name, cwd=project)
    before, lock = store_files(project), (migration / "lock.toml").read_bytes()
    (project / "spawn" / "components" / link).symlink_to(target)
    (project / "spawn" / "components" / "lib" / "b.sql").write_text("SELECT 2;\n")

    result = run_spawn("migration", "pin", migration.name, cwd=project,
                       env={SECRET: SECRET_VALUE})

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot pin components/{link}: it is a symbolic "
                                    "link to "), result.stderr
    assert shown in result.stderr
    assert result.stderr.endswith(", outside components/; replace it with a copy of the file, "
                                  "or point it inside components/\n")
    assert "Traceback" not in result.stderr
    assert store_files(project) == before
    assert (migration / "lock.toml").read_bytes() == lock


def test_no_byte_of_an_outside_target_reaches_the_store(project: Path) -> None:
    """Even across many pins with the link added late, deep and behind a link chain."""
    migration = new_migration(project)
    components = project / "spawn" / "components"
    (components / "deep" / "er").mkdir(parents=True)
    (components / "deep" / "er" / "hop").symlink_to("../../lib/hop2")
    (components / "lib" / "hop2").symlink_to("/proc/self/environ")
    result = run_spawn("migration", "pin", migration.name, cwd=project,
                       env={SECRET: SECRET_VALUE})
    assert result.exit_code == 1
    assert "components/deep/er/hop: it is a symbolic link to /proc/" in result.stderr
    stored = b"".join(store_files(project).values())
    assert SECRET_VALUE.encode() not in stored
    assert b"root:" not in stored
    assert read_lock(migration) is None


def test_a_link_inside_components_is_pinned_as_a_copy_of_its_target(
    project: Path, tmp_path: Path
) -> None:
    components = project / "spawn" / "components"
    (components / "alias.sql").symlink_to("lib/a.sql")
    (components / "chain.sql").symlink_to("alias.sql")
    (components / "tricky.sql").symlink_to("lib/../lib/./a.sql")
    (components / "same").symlink_to("lib")
    plain = tmp_path / "plain"
    (plain / "lib").mkdir(parents=True)
    for name in ("alias.sql", "chain.sql", "tricky.sql"):
        (plain / name).write_text("SELECT 1;\n")
    (plain / "lib" / "a.sql").write_text("SELECT 1;\n")
    (plain / "same").mkdir()
    (plain / "same" / "a.sql").write_text("SELECT 1;\n")
    (plain / ".gitkeep").write_bytes(b"")

    linked = snapshot(PinStore(tmp_path / "one"), components)

    assert linked == snapshot(PinStore(tmp_path / "two"), plain)
    tree = PinnedTree(PinStore(tmp_path / "one"), linked, context="test")
    assert tree.read(["same", "a.sql"]) == tree.read(["chain.sql"]) == b"SELECT 1;\n"


@pytest.mark.parametrize("target", [".", "..", "../lib"])
def test_a_folder_link_back_into_its_own_ancestors_is_a_cycle(
    project: Path, tmp_path: Path, target: str
) -> None:
    components = project / "spawn" / "components"
    (components / "lib" / "loop").symlink_to(target)
    with pytest.raises(OutsideLink) as info:
        snapshot(PinStore(tmp_path / "store"), components)
    assert info.value.message.startswith("cannot pin components/lib/loop: it is a symbolic "
                                         "link to ")
    assert info.value.message.endswith(", a folder that contains the link, so the snapshot "
                                       "would never end; remove the link")
    assert not (tmp_path / "store").exists()


def test_mutual_folder_links_are_a_cycle(project: Path, tmp_path: Path) -> None:
    components = project / "spawn" / "components"
    (components / "b").mkdir()
    (components / "lib" / "to_b").symlink_to("../b")
    (components / "b" / "to_lib").symlink_to("../lib")
    with pytest.raises(OutsideLink, match="a folder that contains the link"):
        snapshot(PinStore(tmp_path / "store"), components)


def test_a_components_folder_linked_inside_the_project_is_followed(
    project: Path, tmp_path: Path
) -> None:
    spawn = project / "spawn"
    os.rename(spawn / "components", spawn / "shared")
    (spawn / "components").symlink_to("shared")
    migration = new_migration(project)
    result = run_spawn("migration", "pin", migration.name, cwd=project)
    assert result.exit_code == 0, result.stderr
    assert read_lock(migration) == snapshot(PinStore(tmp_path / "x"), spawn / "shared")


def test_a_components_folder_linked_outside_the_project_is_refused(project: Path) -> None:
    spawn = project / "spawn"
    os.rename(spawn / "components", spawn / "old")
    (spawn / "components").symlink_to("/etc")
    migration = new_migration(project)
    result = run_spawn("migration", "pin", migration.name, cwd=project)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot pin {spawn / 'components'}: it is a symbolic link to /etc, outside "
        f"{spawn}; spawn pins components only from inside the project (move the files into "
        "it)\n"
    )
    assert store_files(project) == {".gitkeep": b""}
    assert read_lock(migration) is None


def test_a_dangling_link_is_an_error_not_a_silent_gap(project: Path) -> None:
    migration = new_migration(project)
    (project / "spawn" / "components" / "lib" / "gone.sql").symlink_to("missing.sql")
    result = run_spawn("migration", "pin", migration.name, cwd=project)
    assert result.exit_code == 1
    real = (project / "spawn" / "components" / "lib").resolve() / "missing.sql"
    assert result.stderr == (
        f"error: cannot pin components/lib/gone.sql: it is a symbolic link to {real}, which "
        "does not exist; remove the link or restore its target\n"
    )
    assert read_lock(migration) is None


def test_a_fifo_is_skipped(project: Path, tmp_path: Path) -> None:
    components = project / "spawn" / "components"
    before = snapshot(PinStore(tmp_path / "a"), components)
    os.mkfifo(components / "pipe")
    (components / "to_pipe").symlink_to("pipe")
    assert snapshot(PinStore(tmp_path / "b"), components) == before
