"""``spawn watch`` against the suite's real PostgreSQL: draft migrations re-applied when a
file they read changes, tests re-run, and the real process following real file edits."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import DbProject
from tests.helpers import start_spawn

VIEW = ('{% include "views/greeting.sql" %}\n')
GREETING_V1 = "CREATE OR REPLACE VIEW greeting AS SELECT 'hello'::text AS word;\n"
GREETING_V2 = "CREATE OR REPLACE VIEW greeting AS SELECT 'hello'::text AS word, 2 AS version;\n"


def draft(db_project: DbProject, name: str, up: str, *, down: str | None = None) -> str:
    folder = db_project.add_migration(name, up, pin=False)
    path = db_project.spawn_dir / "migrations" / folder
    (path / "migration.toml").write_text("draft = true\n", encoding="utf-8")
    if down is not None:
        (path / "down.sql").write_text(down, encoding="utf-8")
    return folder


def view_columns(db_project: DbProject) -> str:
    return db_project.database.query(
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = to_regclass('greeting') AND attnum > 0")


def history(db_project: DbProject, name: str) -> str:
    return db_project.database.query(
        "SELECT string_agg(activity_id_activity || ':' || status_id_status, ' ' "
        "ORDER BY migration_history_id) FROM _spawn.migration_history h "
        f"JOIN _spawn.migration m ON m.migration_id = h.migration_id_migration "
        f"WHERE m.name = '{name}'")


def repeatable_runs(db_project: DbProject) -> str:
    return db_project.database.query(
        "SELECT count(*) FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration WHERE m.namespace = 'repeatable' "
        "AND h.status_id_status = 'SUCCESS'")


def test_once_applies_a_draft_then_does_nothing_until_a_component_it_includes_changes(
    db_project: DbProject,
) -> None:
    component = db_project.add_component("views/greeting.sql", GREETING_V1)
    name = draft(db_project, "greeting", VIEW)

    first = db_project.run("watch", "--once")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.startswith(f"applied draft {name} (up.sql) in ")
    assert view_columns(db_project) == "word"

    again = db_project.run("watch", "--once")
    assert (again.exit_code, again.stdout) == (0, ""), again.stderr

    component.write_text(GREETING_V2, encoding="utf-8")
    changed = db_project.run("watch", "--once")
    assert changed.exit_code == 0, changed.stderr
    assert changed.stdout.startswith(f"applied draft {name} (up.sql again) in ")
    assert view_columns(db_project) == "word,version"
    assert history(db_project, name) == "APPLY:ATTEMPTED APPLY:SUCCESS APPLY:ATTEMPTED " \
        "APPLY:SUCCESS"


def repeatable(db_project: DbProject, name: str, up: str) -> None:
    folder = db_project.spawn_dir / "repeatable" / name
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text(up, encoding="utf-8")


def test_once_reapplies_a_repeatable_whose_component_changed(db_project: DbProject) -> None:
    component = db_project.add_component("views/greeting.sql", GREETING_V1)
    repeatable(db_project, "greeting", VIEW)

    first = db_project.run("watch", "--once")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.startswith("applied repeatable greeting (up.sql) in ")
    assert db_project.run("watch", "--once").stdout == ""

    component.write_text(GREETING_V2, encoding="utf-8")
    again = db_project.run("watch", "--once")
    assert again.stdout.startswith("applied repeatable greeting (up.sql) in ")
    assert view_columns(db_project) == "word,version"


def test_a_draft_with_a_down_script_is_reverted_then_applied(db_project: DbProject) -> None:
    component = db_project.add_component(
        "views/greeting.sql", "CREATE VIEW greeting AS SELECT 'hello'::text AS word;\n")
    name = draft(db_project, "greeting", VIEW, down="DROP VIEW greeting;\n")
    assert db_project.run("watch", "--once").exit_code == 0

    component.write_text("CREATE VIEW greeting AS SELECT 1 AS version, 'hi'::text AS word;\n",
                         encoding="utf-8")
    result = db_project.run("watch", "--once")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"applied draft {name} (down.sql, then up.sql) in ")
    assert view_columns(db_project) == "version,word"
    assert history(db_project, name).endswith("REVERT:SUCCESS APPLY:ATTEMPTED APPLY:SUCCESS")


def test_render_and_apply_errors_are_reported_and_once_exits_1(db_project: DbProject) -> None:
    broken = draft(db_project, "broken", "{% include 'views/missing.sql' %}\n")
    failing = draft(db_project, "failing", "SELECT * FROM no_such_table;\n")

    result = db_project.run("watch", "--once")

    assert result.exit_code == 1
    assert f"error: draft {broken}: " in result.stderr
    assert "views/missing.sql" in result.stderr
    assert f"error: draft {failing}: " in result.stderr
    assert 'relation "no_such_table" does not exist' in result.stderr
    assert history(db_project, failing) == "APPLY:ATTEMPTED APPLY:FAILURE"

    (db_project.spawn_dir / "migrations" / failing / "up.sql").write_text(
        "SELECT 1;\n", encoding="utf-8")
    (db_project.spawn_dir / "migrations" / broken / "up.sql").write_text(
        "SELECT 2;\n", encoding="utf-8")
    fixed = db_project.run("watch", "--once")
    assert fixed.exit_code == 0, fixed.stderr
    assert history(db_project, failing) == ("APPLY:ATTEMPTED APPLY:FAILURE APPLY:ATTEMPTED "
                                            "APPLY:SUCCESS")


def test_once_runs_the_named_tests_and_shows_the_diff(db_project: DbProject) -> None:
    db_project.add_component("views/greeting.sql", GREETING_V1)
    draft(db_project, "greeting", VIEW)
    test = db_project.add_test("greets", "SELECT word FROM greeting;\n")
    (test.parent / "expected").write_text("no such output\n", encoding="utf-8")

    result = db_project.run("watch", "--once", "--test", "greets")

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[1:] == [
        "[FAIL] greets", "", "--- spawn/tests/greets/expected", "+++ actual output of greets",
        "@@ -1 +1,5 @@",
        "  1     -|no such output", "      1 +| word  ", "      2 +|-------", "      3 +| hello",
        "      4 +|(1 row)", "      5 +|", lines[-1]]
    assert re.fullmatch(r"1 test: 0 passed, 1 failed in \d+\.\d\ds", lines[-1])


def test_prod_is_refused(db_project: DbProject) -> None:
    draft(db_project, "greeting", "SELECT 1;\n")

    result = db_project.run("-e", "prod", "watch", "--once")

    assert result.exit_code == 2
    assert result.stderr == (
        "error: spawn watch is for development databases and the environment is 'prod'; "
        "select a development target (--target NAME) or pass -e dev\n")
    assert db_project.database.query("SELECT to_regnamespace('_spawn') IS NULL") == "t"


def test_an_unknown_test_is_refused_before_anything_runs(db_project: DbProject) -> None:
    draft(db_project, "greeting", "CREATE TABLE t (id int);\n")

    result = db_project.run("watch", "--once", "--test", "nope")

    assert result.exit_code != 0
    assert "nope" in result.stderr
    assert db_project.database.query("SELECT to_regclass('t') IS NULL") == "t"


class Reader(threading.Thread):
    """Collects a process's output lines as they come, so the test can wait for one."""

    def __init__(self, stream: object) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self.stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def wait_for(self, text: str, deadline: float) -> None:
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} in {self.lines}"
            time.sleep(0.02)


def test_the_running_watch_follows_a_component_edit_and_ignores_a_touch(
    db_project: DbProject,
) -> None:
    component = db_project.add_component("views/greeting.sql", GREETING_V1)
    repeatable(db_project, "greeting", VIEW)
    process = start_spawn("watch", cwd=db_project.root, env={"PYTHONUNBUFFERED": "1"})
    out, err = Reader(process.stdout), Reader(process.stderr)
    out.start()
    err.start()
    try:
        err.wait_for("Watching ", time.monotonic() + 30)
        assert view_columns(db_project) == "word"

        component.write_text(GREETING_V2, encoding="utf-8")
        deadline = time.monotonic() + 20
        while view_columns(db_project) != "word,version":
            assert time.monotonic() < deadline, (out.lines, err.lines)
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while sum("applied repeatable greeting" in line for line in out.lines) < 2:
            assert time.monotonic() < deadline, out.lines
            time.sleep(0.02)

        applied = len(out.lines)
        os.utime(component)
        component.write_text(GREETING_V2, encoding="utf-8")
        (db_project.spawn_dir / "pinned").mkdir(exist_ok=True)
        (db_project.spawn_dir / "pinned" / "noise").write_text("x", encoding="utf-8")
        time.sleep(0.6)  # several debounce periods: a sync would have printed by now
        assert len(out.lines) == applied, out.lines
        assert repeatable_runs(db_project) == "2"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        out.join(5)
        err.join(5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert code == 130
    assert err.lines[-1] == "Stopped watching.\n"
    assert not any("Traceback" in line for line in err.lines)


def test_watch_leaves_files_outside_the_spawn_folder_alone(db_project: DbProject,
                                                           tmp_path: Path) -> None:
    from spawn_db.config import Overrides, load_config
    from spawn_db.watch.watcher import Watcher

    class Quiet:
        def applied(self, done: object) -> None: ...
        def failed(self, what: str, message: str) -> None: ...
        def tested(self, outcomes: object) -> None: ...

    config = load_config(Overrides(config_file=str(db_project.config_path)))
    watcher = Watcher(config, Quiet())
    inside = db_project.add_component("a.sql", "SELECT 1;\n")
    outside = tmp_path / "elsewhere.sql"
    outside.write_text("x", encoding="utf-8")
    pinned = db_project.spawn_dir / "pinned" / "x"

    assert watcher.really_changed([inside, outside, pinned]) == {inside}
    assert watcher.really_changed([inside]) == set()
    inside.write_text("SELECT 2;\n", encoding="utf-8")
    assert watcher.really_changed([inside]) == {inside}
