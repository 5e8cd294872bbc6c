"""One WAL flush per migration without giving up a trace (issue 13's apply speed, issue 11's
durability): a shared runner that writes the history runs each migration with
``synchronous_commit = off`` and commits each ATTEMPTED row with the session's own setting,
whose flush also carries the migration before it. Migrations in their own psql, and runs
whose history lives in another database, keep the session's setting; a migration that sets
``synchronous_commit`` keeps its own; and a crash after a migration committed, before the
next durable commit, leaves it ATTEMPTED, never SUCCESS without its effects."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DbProject, EmbeddedProject, TestDatabase
from tests.helpers import start_spawn
from tests.migrate.history import history, latest
from tests.migrate.test_apply_targets import set_target, toml_list

# Records, for every history row spawn inserts, the synchronous_commit its transaction
# commits with (a SET LOCAL earlier in the same message is what the commit uses).
NOTE_COMMITS = """\
CREATE TABLE probe (id int GENERATED ALWAYS AS IDENTITY, who text, setting text);
CREATE TABLE commits (id int GENERATED ALWAYS AS IDENTITY, status text, setting text);
CREATE FUNCTION note_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO commits (status, setting)
    VALUES (NEW.status_id_status, current_setting('synchronous_commit'));
    RETURN NEW;
END $$;
CREATE TRIGGER note_commit AFTER INSERT ON _spawn.migration_history
    FOR EACH ROW EXECUTE FUNCTION note_commit();
INSERT INTO probe (who, setting) VALUES ('m0', current_setting('synchronous_commit'));
"""


def probe(who: str) -> str:
    return f"INSERT INTO probe (who, setting) VALUES ('{who}', " \
        "current_setting('synchronous_commit'));\n"


def rows(database: TestDatabase, sql: str) -> list[tuple[str, ...]]:
    return [tuple(line.split("|")) for line in database.query(sql).splitlines()]


@pytest.fixture
def local_commit(database: TestDatabase) -> TestDatabase:
    """The test database's sessions default to ``synchronous_commit = local`` (the test
    cluster's own default is ``off``), so that the session's setting is recognisable."""
    database.query(f'ALTER DATABASE "{database.name}" SET synchronous_commit = local',
                   "postgres")
    return database


def test_shared_migrations_commit_asynchronously_and_attempted_rows_with_the_session_setting(
    db_project: DbProject, local_commit: TestDatabase,
) -> None:
    db_project.add_migration("notes", NOTE_COMMITS)
    db_project.add_migration("own-setting",
                             "SET synchronous_commit = remote_apply;\n" + probe("m1"))
    db_project.add_migration("after-own-setting", probe("m2"))
    db_project.add_migration("isolated", "\\set who m3\n" + probe("m3").replace("'m3'", ":'who'"))
    db_project.add_migration("after-isolated", probe("m4"))

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert rows(local_commit, "SELECT who, setting FROM probe ORDER BY id") == [
        ("m0", "off"), ("m1", "remote_apply"), ("m2", "off"), ("m3", "local"), ("m4", "off"),
    ]
    # From the trigger's creation on: each ATTEMPTED row commits durably with the session's
    # setting, in one transaction with the SUCCESS row of the migration before it when the
    # two are chained; an outcome row the runner writes on its own (before an isolated
    # migration, at the end) commits asynchronously; the isolated migration's rows go
    # through the control session, durably.
    assert rows(local_commit, "SELECT status, setting FROM commits ORDER BY id") == [
        ("SUCCESS", "local"),
        ("ATTEMPTED", "local"), ("SUCCESS", "local"),
        ("ATTEMPTED", "local"), ("SUCCESS", "off"),
        ("ATTEMPTED", "local"), ("SUCCESS", "local"),
        ("ATTEMPTED", "local"), ("SUCCESS", "off"),
    ]
    assert [status for _, _, status in history(local_commit)] == ["ATTEMPTED", "SUCCESS"] * 5


def test_attempted_row_commits_with_the_session_setting_after_a_migration_turned_it_off(
    db_project: DbProject, local_commit: TestDatabase,
) -> None:
    """A migration's own ``SET synchronous_commit = off`` must not reach the next ATTEMPTED
    row, even when the session's setting is not the server's default."""
    db_project.add_migration("notes", NOTE_COMMITS)
    db_project.add_migration("turns-it-off", "SET synchronous_commit = off;\n" + probe("m1"))
    db_project.add_migration("next", probe("m2"))

    result = db_project.run("migration", "apply", "--yes",
                            env={"PGOPTIONS": "-c synchronous_commit=remote_write"})

    assert result.exit_code == 0, result.stderr
    assert rows(local_commit, "SELECT who, setting FROM probe ORDER BY id") == [
        ("m0", "off"), ("m1", "off"), ("m2", "off"),
    ]
    assert rows(local_commit, "SELECT status, setting FROM commits ORDER BY id") == [
        ("SUCCESS", "remote_write"),
        ("ATTEMPTED", "remote_write"), ("SUCCESS", "remote_write"),
        ("ATTEMPTED", "remote_write"), ("SUCCESS", "off"),
    ]


@pytest.fixture
def tracking_elsewhere(database: TestDatabase) -> Iterator[str]:
    name = f"{database.name}_tracking"
    database.query(f'CREATE DATABASE "{name}"')
    yield name
    database.query(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_migrations_keep_the_session_setting_when_the_history_is_elsewhere(
    db_project: DbProject, local_commit: TestDatabase, tracking_elsewhere: str,
) -> None:
    """With the history in another database (possibly another cluster), nothing orders the
    migration's commit before its SUCCESS row, so the migration commits durably itself."""
    set_target(db_project,
               f'{{ kind = "direct", direct = {toml_list(local_commit.psql_argv())} }}',
               extra=f'spawn_database = "{tracking_elsewhere}"\n')
    db_project.add_migration("probe", "CREATE TABLE probe (id int GENERATED ALWAYS AS "
                             "IDENTITY, who text, setting text);\n" + probe("m0"))
    db_project.add_migration("second", probe("m1"))

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert rows(local_commit, "SELECT who, setting FROM probe ORDER BY id") == [
        ("m0", "local"), ("m1", "local"),
    ]


# -- a crash between a migration's commit and the next durable commit --------------------------

GATE = """\
CREATE TABLE effects (n int);
CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status_id_status = 'ATTEMPTED' AND EXISTS (
        SELECT FROM _spawn.migration m
        WHERE m.migration_id = NEW.migration_id_migration AND m.name LIKE '%-gated') THEN
        PERFORM pg_sleep(60);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER gate BEFORE INSERT ON _spawn.migration_history
    FOR EACH ROW EXECUTE FUNCTION gate();
"""


def shell(project: EmbeddedProject, sql: str) -> str:
    done = project.run("db", "shell", "--", "-Atc", sql)
    assert done.exit_code == 0, done.stderr
    return done.stdout.strip()


def test_crash_before_the_next_durable_commit_leaves_the_migration_attempted(
    embedded_project: EmbeddedProject,
) -> None:
    """The server (default durability) stops with ``-m immediate`` after migration 1
    committed and its SUCCESS row was written, both asynchronously, while the next
    ATTEMPTED row (the durable commit that would flush them) waits in a trigger. The WAL
    writer is stopped, so nothing else writes the WAL out: migration 1's commit and its
    SUCCESS row are lost together, and its durable ATTEMPTED row remains."""
    project = embedded_project
    migrations = project.root / "spawn" / "migrations"
    bodies = {"20260101000000-gate": GATE, "20260101000001-effect":
              "INSERT INTO effects VALUES (1);\n", "20260101000002-gated":
              "INSERT INTO effects VALUES (2);\n"}
    for name, body in bodies.items():
        (migrations / name).mkdir(parents=True)
        (migrations / name / "up.sql").write_text(body, encoding="utf-8")
        assert project.run("migration", "pin", name).exit_code == 0
    walwriter = int(shell(project, "SELECT pid FROM pg_stat_activity "
                                   "WHERE backend_type = 'walwriter'"))
    postmaster = int((project.root / ".spawn" / "postgres" / "postmaster.pid")
                     .read_text().split()[0])
    os.kill(walwriter, signal.SIGSTOP)
    try:
        proc = start_spawn("migration", "apply", "--yes", cwd=project.root)
        deadline = time.monotonic() + 60
        while shell(project, "SELECT count(*) FROM pg_stat_activity "
                             "WHERE wait_event = 'PgSleep'") != "1":
            assert time.monotonic() < deadline, proc.communicate(timeout=5)
            time.sleep(0.05)
        os.kill(postmaster, signal.SIGQUIT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(walwriter, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    while _alive(postmaster):
        time.sleep(0.05)

    history_rows = shell(project, (
        "SELECT m.name || ' ' || h.status_id_status FROM _spawn.migration_history h "
        "JOIN _spawn.migration m ON m.migration_id = h.migration_id_migration "
        "WHERE m.namespace = 'default' ORDER BY h.migration_history_id"))
    assert history_rows.splitlines() == [
        "20260101000000-gate ATTEMPTED", "20260101000000-gate SUCCESS",
        "20260101000001-effect ATTEMPTED",
    ]
    assert shell(project, "SELECT count(*) FROM effects") == "0"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- apply's start: the stale-component check reads nothing for plain migrations -------------


def test_stale_check_reads_no_lock_file_of_a_plain_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A migration without template syntax includes no component, so the check apply runs
    before it asks for confirmation neither reads its pin nor renders it (apply reads the
    pin once, when it renders the migration); a templated one is still checked."""
    from spawn_db.config import Overrides, load_config
    from spawn_db.migrate import drift
    from spawn_db.migrate.migration import pin_migration
    from spawn_db.project import init_project

    init = init_project(tmp_path / "project")
    config = load_config(Overrides(config_file=str(init.config_path)))
    (config.components_dir / "f.sql").write_text("SELECT 1;\n", encoding="utf-8")
    bodies = {"20240101000000-plain": "CREATE TABLE t (a int);\n",
              "20240101000001-templated": "{% include 'f.sql' %}\n"}
    for name, body in bodies.items():
        (config.migrations_dir / name).mkdir(parents=True)
        (config.migrations_dir / name / "up.sql").write_text(body, encoding="utf-8")
        pin_migration(config, name)
    (config.components_dir / "f.sql").write_text("SELECT 2;\n", encoding="utf-8")
    read: list[str] = []
    real = drift.read_lock

    def counting(folder: Path) -> str | None:
        read.append(folder.name)
        return real(folder)

    monkeypatch.setattr(drift, "read_lock", counting)

    stale = drift.stale_components(config, list(bodies), None)

    assert read == ["20240101000001-templated"]
    assert [(s.migration, s.files) for s in stale] == [("20240101000001-templated", ("f.sql",))]


# -- the lock check before each migration: this run's control session, not any holder ----------


def test_a_lock_taken_over_by_another_session_still_stops_the_run(db_project: DbProject) -> None:
    """Each migration starts only while *this run's* control session holds the migration lock
    (the runner probes the random run key that session took with it). Here the control
    session is ended during the first migration and another session takes the migration
    lock at once, as a second deployment would: the run must stop before the second
    migration, and the first one's outcome is still recorded."""
    import subprocess

    from spawn_db.migrate.tracking import lock_key

    database = db_project.database
    first = db_project.add_migration("first", "SELECT pg_sleep(1.5);\n")
    second = db_project.add_migration("second", "CREATE TABLE after_takeover (a int);\n")
    key = lock_key()
    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    database.wait_until("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = "
                        "current_database() AND state = 'active' AND query LIKE "
                        "'%pg_sleep(1.5)%' AND pid <> pg_backend_pid())")
    other = subprocess.Popen([*database.psql_argv(), "-At", "-v", "ON_ERROR_STOP=1"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdin is not None and other.stdout is not None
        other.stdin.write(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database());\n"
            f"SELECT pg_advisory_lock({key}), 'taken';\n")
        other.stdin.flush()
        deadline = time.monotonic() + 30
        while "taken" not in other.stdout.readline():
            assert time.monotonic() < deadline
        code = proc.wait(timeout=60)
        _, err = proc.communicate()
    finally:
        other.communicate("", timeout=30)

    assert code == 1, err
    assert "migration lock" in err and "lost" in err, err
    assert latest(database) == {first: "SUCCESS"}
    assert database.query("SELECT to_regclass('after_takeover') IS NULL") == "t"
    assert second not in latest(database)


def test_chained_bookkeeping_is_one_transaction_per_migration(
    db_project: DbProject, local_commit: TestDatabase,
) -> None:
    """Between two chained migrations the runner writes the SUCCESS row of the one and the
    ATTEMPTED row of the next in one transaction (one message, one durable commit): each
    such pair shares a transaction id, and no migration starts before its ATTEMPTED row."""
    db_project.add_migration("notes", "CREATE TABLE xacts (status text, xact xid8, "
                             "seen bigint);\nCREATE FUNCTION note_xact() RETURNS trigger "
                             "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO xacts VALUES "
                             "(NEW.status_id_status, pg_current_xact_id(), (SELECT count(*) "
                             "FROM probe)); RETURN NEW; END $$;\nCREATE TABLE probe (n int);\n"
                             "CREATE TRIGGER note_xact AFTER INSERT ON _spawn.migration_history "
                             "FOR EACH ROW EXECUTE FUNCTION note_xact();\n")
    for n in (1, 2, 3):
        db_project.add_migration(f"m{n}", f"INSERT INTO probe VALUES ({n});\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    found = rows(local_commit, "SELECT status, dense_rank() OVER (ORDER BY xact), seen "
                               "FROM xacts ORDER BY xact, status DESC")
    # (status, transaction number, probe rows when written): each migration's ATTEMPTED row
    # precedes its insert into probe, and commits with the previous migration's SUCCESS.
    assert found == [
        ("SUCCESS", "1", "0"), ("ATTEMPTED", "1", "0"),
        ("SUCCESS", "2", "1"), ("ATTEMPTED", "2", "1"),
        ("SUCCESS", "3", "2"), ("ATTEMPTED", "3", "2"),
        ("SUCCESS", "4", "3"),
    ]
    assert [status for _, _, status in history(local_commit)] == ["ATTEMPTED", "SUCCESS"] * 4


def test_an_open_transaction_before_a_chained_migration_rolls_back_both_rows(
    db_project: DbProject,
) -> None:
    """The message after a migration that left its transaction open runs inside that
    transaction and fails: the migration, its SUCCESS row and the next migration's
    ATTEMPTED row are rolled back together; the migration is recorded FAILURE and the next
    one neither starts nor appears in the history."""
    database = db_project.database
    open_one = db_project.add_migration("open", "BEGIN;\nCREATE TABLE never_committed (a int);\n")
    following = db_project.add_migration("next", "CREATE TABLE after_open (a int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1, result.stderr
    assert f"migration {open_one} failed" in result.stderr
    assert "transaction block" in result.stderr
    assert history(database) == [(open_one, "APPLY", "ATTEMPTED"), (open_one, "APPLY", "FAILURE")]
    assert following not in latest(database)
    assert database.query("SELECT to_regclass('never_committed') IS NULL "
                          "AND to_regclass('after_open') IS NULL") == "t"
