"""``migration list`` (offline), ``pin --all``/``--changed``, name suffixes, blank ``up.sql``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from spawn_db.project import init_project
from tests.conftest import DbProject
from tests.helpers import run_spawn
from tests.migrate.history import latest

# 2024-01-02 03:04:05 UTC
STAMP = 1704164645


def _project(tmp_path: Path) -> Path:
    """A `spawn init` project (default embedded target): nothing here may start it."""
    root = tmp_path / "project"
    init_project(root)
    return root


def _migration(root: Path, name: str, sql: str = "SELECT 1;\n", *, at: int = STAMP) -> Path:
    folder = root / "spawn" / "migrations" / name
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text(sql, encoding="utf-8")
    _touch(folder, at)
    return folder


def _touch(folder: Path, at: int) -> None:
    for path in folder.iterdir():
        os.utime(path, (at, at))


def _lock(folder: Path) -> str | None:
    path = folder / "lock.toml"
    return path.read_text().split('"')[1] if path.exists() else None


# -- migration list ------------------------------------------------------------------------


def test_list_shows_name_pin_and_last_modified_without_starting_a_database(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path)
    pinned = _migration(root, "20240101000000-create-users")
    _migration(root, "20240101000001-add-orders", at=STAMP + 3600)
    assert run_spawn("migration", "pin", pinned.name, cwd=root).exit_code == 0
    _touch(pinned, STAMP)
    pin = _lock(pinned)
    assert pin is not None

    result = run_spawn("migration", "list", cwd=root, env={"TZ": "UTC"})

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "Migration                    Pinned        Last modified\n"
        "---------------------------  ------------  -------------------\n"
        f"20240101000000-create-users  {pin[:12]}  2024-01-02 03:04:05\n"
        "20240101000001-add-orders    no            2024-01-02 04:04:05\n"
    )
    status = run_spawn("db", "status", cwd=root)
    assert "not created yet" in status.stdout
    assert not (root / ".spawn" / "postgres" / "PG_VERSION").exists()


def test_list_last_modified_is_local_time_and_the_newest_file(tmp_path: Path) -> None:
    root = _project(tmp_path)
    folder = _migration(root, "20240101000000-a")
    (folder / "notes.txt").write_text("later\n")
    os.utime(folder / "notes.txt", (STAMP + 60, STAMP + 60))

    result = run_spawn("migration", "list", "--format", "json", cwd=root,
                       env={"TZ": "Asia/Kolkata"})

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"migrations": [{
        "name": "20240101000000-a", "pinned": False, "pin": None, "lock_problem": None,
        "down": False, "draft": False, "last_modified": "2024-01-02T08:35:05+05:30",
    }]}


def test_list_shows_the_down_column_only_when_a_down_script_exists(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _migration(root, "20240101000000-a")
    second = _migration(root, "20240101000001-b")
    (second / "down.sql").write_text("DROP TABLE b;\n")
    _touch(second, STAMP)
    bad = _migration(root, "20240101000002-c")
    (bad / "lock.toml").write_text("pin = 1\n")

    result = run_spawn("migration", "list", cwd=root, env={"TZ": "UTC"})

    assert result.exit_code == 0
    assert result.stdout.splitlines()[:2] == [
        "Migration         Pinned  Down  Last modified",
        "----------------  ------  ----  -------------------",
    ]
    assert result.stdout.splitlines()[2].startswith("20240101000000-a  no      no    ")
    assert result.stdout.splitlines()[3].startswith("20240101000001-b  no      yes   ")
    assert result.stdout.splitlines()[4].startswith("20240101000002-c  broken  no    ")
    assert result.stderr == (
        f"warning: {bad / 'lock.toml'}: `pin` must be a 32-digit hex hash; restore the file "
        "from version control (or, for a migration never applied, re-pin with `spawn "
        "migration pin`)\n")
    (second / "down.sql").unlink()
    plain = run_spawn("migration", "list", cwd=root, env={"TZ": "UTC"})
    assert "Down" not in plain.stdout


def test_list_of_an_empty_project_says_so_on_stderr(tmp_path: Path) -> None:
    root = _project(tmp_path)

    result = run_spawn("migration", "list", cwd=root)

    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == (f"No migrations yet in {root / 'spawn' / 'migrations'}; create "
                             "one with `spawn migration new NAME`.\n")
    as_json = run_spawn("migration", "list", "--format", "json", cwd=root)
    assert json.loads(as_json.stdout) == {"migrations": []}


# -- pin --all / --changed -----------------------------------------------------------------


def test_pin_all_pins_exactly_the_unpinned_ones_from_one_snapshot(tmp_path: Path) -> None:
    root = _project(tmp_path)
    old = _migration(root, "20240101000000-old")
    assert run_spawn("migration", "pin", old.name, cwd=root).exit_code == 0
    old_pin = _lock(old)
    (root / "spawn" / "components" / "x.sql").write_text("SELECT 2;\n")
    first = _migration(root, "20240101000001-first")
    second = _migration(root, "20240101000002-second")

    result = run_spawn("migration", "pin", "--all", cwd=root)

    assert result.exit_code == 0, result.stderr
    root_hash = _lock(first)
    assert root_hash is not None and root_hash != old_pin
    assert (_lock(old), _lock(second)) == (old_pin, root_hash)
    assert result.stdout == (f"Pinned {first.name} to {root_hash}\n"
                             f"Pinned {second.name} to {root_hash}\n")
    assert result.stderr == f"Pinned 2 migrations to {root_hash} (2 first pinned).\n"
    again = run_spawn("migration", "pin", "--all", cwd=root)
    assert (again.exit_code, again.stdout) == (0, "")
    assert again.stderr == "Nothing to pin: no migration is unpinned.\n"
    assert "not created yet" in run_spawn("db", "status", cwd=root).stdout


def test_pin_many_takes_one_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spawn_db.config import Overrides, load_config
    from spawn_db.migrate import migration

    root = _project(tmp_path)
    for i in range(3):
        _migration(root, f"2024010100000{i}-m{i}")
    calls = []
    real = migration.snapshot

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(migration, "snapshot", counted)
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    batch = migration.pin_many(config, unpinned=True, changed=False)

    assert len(calls) == 1
    assert batch.pinned == ("20240101000000-m0", "20240101000001-m1", "20240101000002-m2")


def test_pin_changed_repins_stale_pending_ones_and_skips_applied(db_project: DbProject) -> None:
    db_project.add_component("c.sql", "SELECT 1;\n")
    applied = db_project.add_migration("applied", "CREATE TABLE applied ();\n")
    assert db_project.run("migration", "apply", applied).exit_code == 0
    pending = db_project.add_migration("pending", "CREATE TABLE pending ();\n")
    current = db_project.add_migration("current", "CREATE TABLE current ();\n")
    unpinned = db_project.add_migration("unpinned", "CREATE TABLE unpinned ();\n", pin=False)
    folders = db_project.spawn_dir / "migrations"
    old_pin = _lock(folders / applied)
    db_project.add_component("c.sql", "SELECT 2;\n")
    # `current` is pinned to the new tree already
    assert db_project.run("migration", "pin", current).exit_code == 0
    new_pin = _lock(folders / current)

    result = db_project.run("migration", "pin", "--changed")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"Pinned {pending} to {new_pin}\n"
    assert result.stderr == (
        f"Skipped {applied}: it is applied, so it keeps its pin (put the change in a new "
        "migration)\n"
        f"Pinned 1 migration to {new_pin} (1 re-pinned, 1 applied skipped).\n")
    assert (_lock(folders / applied), _lock(folders / pending)) == (old_pin, new_pin)
    assert _lock(folders / unpinned) is None
    assert latest(db_project.database) == {applied: "SUCCESS"}

    both = db_project.run("migration", "pin", "--all", "--changed")
    assert both.stdout == f"Pinned {unpinned} to {new_pin}\n"


def test_pin_changed_refuses_when_the_history_cannot_be_read(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "spawn.toml").write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
        'engine = "postgres-psql"\nenvironment = "dev"\n'
        'command = { kind = "direct", direct = ["psql", "-h", "/nonexistent-socket-dir"] }\n')
    folder = _migration(root, "20240101000000-a")
    assert run_spawn("migration", "pin", folder.name, cwd=root).exit_code == 0
    before = _lock(folder)
    (root / "spawn" / "components" / "x.sql").write_text("SELECT 2;\n")

    result = run_spawn("migration", "pin", "--changed", cwd=root)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "error: cannot tell which of the 1 migrations pinned to older components are "
        "applied, so none was re-pinned: ")
    assert result.stderr.endswith(
        "; start the database and retry, or re-pin one on purpose with "
        "`spawn migration pin NAME --force`\n")
    assert _lock(folder) == before


@pytest.mark.parametrize(("args", "message"), [
    (("--all", "--force"), "error: --force only applies to one named migration: --all pins "
     "only unpinned migrations and --changed never re-pins an applied one; re-pin one on "
     "purpose with `spawn migration pin NAME --force`\n"),
    (("a", "--all"), "error: --all and --changed pin every migration that needs it; drop "
     "them to pin only a, or drop a\n"),
    ((), "error: name the migration to pin (`spawn migration pin NAME`), or pass --all "
     "(every unpinned one) or --changed (re-pin stale ones)\n"),
])
def test_pin_refuses_meaningless_combinations(tmp_path: Path, args: tuple[str, ...],
                                              message: str) -> None:
    root = _project(tmp_path)
    _migration(root, "20240101000000-a")

    result = run_spawn("migration", "pin", *args, cwd=root)

    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message)
    assert _lock(root / "spawn" / "migrations" / "20240101000000-a") is None


# -- names: suffixes and a trailing slash -------------------------------------------------


def test_a_unique_suffix_or_a_trailing_slash_names_the_migration(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _migration(root, "20240101000000-create-users", "CREATE TABLE users ();\n")
    _migration(root, "20240101000001-add-orders", "CREATE TABLE orders ();\n")

    for typed in ("add-orders", "orders", "20240101000001-add-orders/", "add-orders/"):
        built = run_spawn("migration", "build", typed, cwd=root)
        assert (built.exit_code, built.stdout) == (0, "CREATE TABLE orders ();\n"), typed
    pinned = run_spawn("migration", "pin", "users", cwd=root)
    assert pinned.exit_code == 0, pinned.stderr
    assert _lock(root / "spawn" / "migrations" / "20240101000000-create-users") == \
        pinned.stdout.strip()
    pinned_build = run_spawn("migration", "build", "--pinned", "users/", cwd=root)
    assert pinned_build.stdout == "CREATE TABLE users ();\n"


def test_an_ambiguous_suffix_lists_the_candidates(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _migration(root, "20240101000000-add-users")
    _migration(root, "20240201000000-add-users")
    _migration(root, "20240301000000-users")

    result = run_spawn("migration", "pin", "add-users", cwd=root)

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: migration 'add-users' is ambiguous: it ends 2 migration names "
        "(20240101000000-add-users, 20240201000000-add-users); type more of the name, or "
        "the full folder name\n")
    users = run_spawn("migration", "build", "users", cwd=root)
    assert users.exit_code == 2
    assert "it ends 3 migration names" in users.stderr
    # a suffix must start after - _ or .: "sers" is no suffix of a name part
    partial = run_spawn("migration", "build", "sers", cwd=root)
    assert partial.exit_code == 2
    assert partial.stderr.startswith("error: migration 'sers' not found in ")


def test_an_exact_name_wins_over_a_suffix(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _migration(root, "add-users", "SELECT 'exact';\n")
    _migration(root, "20240101000000-add-users", "SELECT 'suffix';\n")

    result = run_spawn("migration", "build", "add-users", cwd=root)

    assert (result.exit_code, result.stdout) == (0, "SELECT 'exact';\n")


def test_apply_and_adopt_record_the_full_name_for_a_suffix(db_project: DbProject) -> None:
    first = db_project.add_migration("create-users", "CREATE TABLE users ();\n")
    second = db_project.add_migration("add-orders", "CREATE TABLE orders ();\n")

    applied = db_project.run("migration", "apply", "create-users/")
    adopted = db_project.run("migration", "adopt", "orders")

    assert (applied.exit_code, adopted.exit_code) == (0, 0), applied.stderr + adopted.stderr
    assert adopted.stdout == f"Adopted {second}\n"
    assert latest(db_project.database) == {first: "SUCCESS", second: "SUCCESS"}
    assert db_project.database.query("SELECT to_regclass('users') IS NOT NULL") == "t"


def test_completion_offers_names_for_a_suffix_and_ignores_a_trailing_slash(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path)
    _migration(root, "20240101000000-add-users")
    _migration(root, "20240101000001-add-orders")
    env = {"_SPAWN_COMPLETE": "bash_complete", "COMP_WORDS": "", "COMP_CWORD": "3"}

    def complete(word: str) -> list[str]:
        words = f"spawn migration build {word}"
        done = run_spawn(cwd=root, env={**env, "COMP_WORDS": words})
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("orders") == ["20240101000001-add-orders"]
    assert complete("20240101000000-add-users/") == ["20240101000000-add-users"]
    assert complete("add-") == ["20240101000000-add-users", "20240101000001-add-orders"]


# -- blank up.sql --------------------------------------------------------------------------

BLANK = ("warning: migration {name}: up.sql renders to nothing but whitespace, so it would "
         "be recorded as applied doing nothing; write its SQL, or delete the migration\n")


@pytest.mark.parametrize("sql", ["", "\n  \n\t\n", "{% if false %}SELECT 1;{% endif %}\n",
                                 "{# nothing yet #}\n"])
def test_pin_warns_once_about_an_up_sql_that_renders_blank(tmp_path: Path, sql: str) -> None:
    root = _project(tmp_path)
    folder = _migration(root, "20240101000000-todo", sql)

    result = run_spawn("migration", "pin", "todo", cwd=root)

    assert result.exit_code == 0
    assert re.fullmatch(r"[0-9a-f]{32}\n", result.stdout)
    assert result.stderr == BLANK.format(name=folder.name)
    _migration(root, "20240101000001-real")
    (root / "spawn" / "migrations" / "20240101000001-real" / "lock.toml").unlink(
        missing_ok=True)
    (folder / "lock.toml").unlink()
    batch = run_spawn("migration", "pin", "--all", cwd=root)
    assert batch.stderr.count("warning:") == 1
    assert BLANK.format(name=folder.name) in batch.stderr


def test_apply_warns_once_about_a_blank_migration_and_still_applies(
    db_project: DbProject,
) -> None:
    blank = db_project.add_migration("todo", "\n\n")
    real = db_project.add_migration("real", "CREATE TABLE real ();\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0
    assert result.stderr.count("warning:") == 1
    assert BLANK.format(name=blank) in result.stderr
    assert latest(db_project.database) == {blank: "SUCCESS", real: "SUCCESS"}
    one = db_project.run("migration", "apply", "todo", "--retry")
    assert one.exit_code == 0
    assert one.stderr.count(BLANK.format(name=blank)) == 1
