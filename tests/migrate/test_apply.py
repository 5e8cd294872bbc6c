"""``spawn migration apply`` end to end, against the test suite's real PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import xxhash

from spawn_db.migrate.tracking import runner_key
from tests.conftest import DbProject
from tests.helpers import SPAWN, spawn_env, start_spawn
from tests.migrate.history import history, latest


def test_apply_all_then_nothing_to_do(db_project: DbProject) -> None:
    first = db_project.add_migration("users", "BEGIN;\nCREATE TABLE users (id int);\nCOMMIT;\n")
    second = db_project.add_migration("posts", "CREATE TABLE posts (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        "Tracking schema _spawn: applied 001-base-migration-table, "
        "002-migration-history-lookup-index, 003-script-run"
    )
    assert result.stdout == ""
    assert re.fullmatch(r"Applied 2 migrations in \d+ ms\.|Applied 2 migrations in [\d.]+ s\.",
                        result.stderr.splitlines()[-1])
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert re.fullmatch(rf"\[1/2\] ✓ {first} \(\d+ ms; 1 left, \d+ ms elapsed\)", progress[0])
    assert re.fullmatch(rf"\[2/2\] ✓ {second} \(\d+ ms; 0 left, \d+ ms elapsed\)", progress[1])
    assert history(db_project.database) == [
        (first, "APPLY", "ATTEMPTED"), (first, "APPLY", "SUCCESS"),
        (second, "APPLY", "ATTEMPTED"), (second, "APPLY", "SUCCESS"),
    ]
    assert db_project.database.query("SELECT count(*) FROM users, posts") == "0"

    again = db_project.run("migration", "apply", "--yes")

    assert again.exit_code == 0, again.stderr
    assert (again.stdout, again.stderr) == (
        "", "Nothing to apply: every migration is applied (2 in total).\n")
    assert len(history(db_project.database)) == 4


def test_named_apply_of_an_applied_migration_is_a_no_op_unless_retry(
    db_project: DbProject,
) -> None:
    name = db_project.add_migration("log", "CREATE TABLE IF NOT EXISTS log (n int);\n"
                                           "INSERT INTO log VALUES (1);\n")
    assert db_project.run("migration", "apply", name).exit_code == 0

    again = db_project.run("migration", "apply", name)

    assert again.exit_code == 0
    assert (again.stdout, again.stderr) == ("", f"Migration {name} is already applied; "
                                            "nothing to do (pass --retry to run it again).\n")
    rerun = db_project.run("migration", "apply", name, "--retry")
    assert rerun.exit_code == 0, rerun.stderr
    assert db_project.database.query("SELECT count(*) FROM log") == "2"
    assert [s for _, _, s in history(db_project.database)] == [
        "ATTEMPTED", "SUCCESS", "ATTEMPTED", "SUCCESS"]


def test_history_row_holds_checksum_of_build_pinned_output_pin_and_user(
    db_project: DbProject, tmp_path: Path
) -> None:
    db_project.add_component("greeting.sql", "SELECT 'héllo' AS greeting;")
    name = db_project.add_migration(
        "templated",
        "CREATE TABLE t (v text);\n{% include 'greeting.sql' %}\n"
        "INSERT INTO t VALUES ({{ variables.word }}), ({{ env }});\n",
    )
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"word": "it's"}), encoding="utf-8")

    applied = db_project.run("migration", "apply", name, "--variables", str(variables))
    built = db_project.run("migration", "build", name, "--pinned", "--variables", str(variables))

    assert applied.exit_code == 0, applied.stderr
    assert built.stdout.endswith("\n")
    rendered = built.stdout[:-1].encode("utf-8")
    expected = xxhash.xxh3_128_hexdigest(rendered)
    pin = (db_project.spawn_dir / "migrations" / name / "lock.toml").read_text().split('"')[1]
    row = db_project.database.query(
        "SELECT encode(checksum, 'hex'), pin_hash, created_by, description, status_note, "
        "execution_time > interval '0' FROM _spawn.migration_history "
        "WHERE status_id_status = 'SUCCESS' AND migration_id_migration = "
        f"(SELECT migration_id FROM _spawn.migration WHERE name = '{name}')"
    )
    import getpass

    assert row == f"{expected}|{pin}|{getpass.getuser()}|||t"
    assert db_project.database.query("SELECT string_agg(v, ',' ORDER BY v) FROM t") == "dev,it's"


def test_failure_is_recorded_with_psql_error_and_stops_the_run(db_project: DbProject) -> None:
    ok = db_project.add_migration("ok", "CREATE TABLE ok (id int);\n")
    bad = db_project.add_migration("bad", "SELECT 1;\nSELECT 1/0;\n")
    later = db_project.add_migration("later", "CREATE TABLE later (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert f"error: migration {bad} failed (1 of 3 applied before it); recorded as FAILURE" \
        in result.stderr
    assert "psql said:\nERROR:  division by zero\n" in result.stderr
    assert f"spawn migration apply {bad} --retry" in result.stderr
    assert latest(db_project.database) == {ok: "SUCCESS", bad: "FAILURE"}
    note = db_project.database.query(
        "SELECT status_note FROM _spawn.migration_history WHERE status_id_status = 'FAILURE'")
    assert note == "ERROR:  division by zero"
    assert db_project.database.query("SELECT to_regclass('later') IS NULL") == "t"
    assert db_project.database.query(
        f"SELECT count(*) FROM _spawn.migration WHERE name = '{later}'") == "0"

    refused = db_project.run("migration", "apply", "--yes")

    assert refused.exit_code == 1
    assert f"error: migration {bad} failed in an earlier run, so spawn stops before it" \
        in refused.stderr
    assert latest(db_project.database) == {ok: "SUCCESS", bad: "FAILURE"}

    (db_project.spawn_dir / "migrations" / bad / "up.sql").write_text("SELECT 1;\n")
    assert db_project.run("migration", "pin", bad).exit_code == 0
    retried = db_project.run("migration", "apply", "--yes", "--retry")

    assert retried.exit_code == 0, retried.stderr
    assert latest(db_project.database) == {ok: "SUCCESS", bad: "SUCCESS", later: "SUCCESS"}


def test_unpinned_migration_is_refused_unless_no_pin(db_project: DbProject) -> None:
    name = db_project.add_migration("loose", "CREATE TABLE loose (id int);\n", pin=False)

    refused = db_project.run("migration", "apply", "--yes")

    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: migration {name} is not pinned (no lock.toml); run `spawn migration pin "
        f"{name}` first, or apply from the working tree with --no-pin\n")
    assert db_project.database.query("SELECT to_regclass('loose') IS NULL") == "t"

    applied = db_project.run("migration", "apply", "--yes", "--no-pin")

    assert applied.exit_code == 0, applied.stderr
    assert db_project.database.query(
        "SELECT h.pin_hash IS NULL FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration "
        f"WHERE h.status_id_status = 'SUCCESS' AND m.name = '{name}'") == "t"


def test_several_migrations_without_a_terminal_or_yes_are_refused(db_project: DbProject) -> None:
    one = db_project.add_migration("one", "CREATE TABLE one ();\n")
    two = db_project.add_migration("two", "CREATE TABLE two ();\n")

    result = db_project.run("migration", "apply")

    assert result.exit_code == 2
    assert result.stderr == (
        f"2 migrations would be applied:\n  {one}\n  {two}\n"
        "error: 2 migrations would be applied, and spawn cannot ask for confirmation because "
        "standard input is not a terminal; pass --yes to go ahead\n")
    assert db_project.database.query("SELECT to_regclass('one') IS NULL") == "t"
    single = db_project.run("migration", "apply", one)
    assert single.exit_code == 0, single.stderr


def test_confirmation_prompt_on_a_terminal(db_project: DbProject) -> None:
    import os
    import pty

    db_project.add_migration("one", "CREATE TABLE one ();\n")
    db_project.add_migration("two", "CREATE TABLE two ();\n")
    master, slave = pty.openpty()
    proc = start_spawn("migration", "apply", cwd=db_project.root, stdin=slave)
    os.close(slave)
    os.write(master, b"n\n")
    out, err = proc.communicate(timeout=60)
    os.close(master)

    assert proc.returncode == 0, err
    assert out == ""
    assert "Apply these 2 migrations? [y/N]: " in err
    assert err.endswith("Cancelled; nothing was applied.\n")
    assert db_project.database.query("SELECT to_regclass('one') IS NULL") == "t"


def test_reuse_connection_is_accepted(db_project: DbProject) -> None:
    db_project.add_migration("one", "CREATE TABLE one ();\n")

    result = db_project.run("migration", "apply", "--yes", "--reuse-connection")

    assert result.exit_code == 0, result.stderr
    assert db_project.database.query("SELECT to_regclass('one') IS NOT NULL") == "t"


def test_each_migration_starts_as_in_a_fresh_session(db_project: DbProject) -> None:
    k1, k2 = runner_key(db_project.database.name, "_spawn")  # spawn's own, held on purpose
    db_project.add_migration(
        "leaves-state",
        "SET search_path = pg_catalog;\nSET statement_timeout = '1s';\n"
        "CREATE TEMP TABLE scratch (a int);\nPREPARE leftover AS SELECT 1;\n"
        "CREATE TABLE public.seq_user (id int GENERATED ALWAYS AS IDENTITY);\n"
        "INSERT INTO public.seq_user DEFAULT VALUES;\n"
        "SELECT pg_advisory_lock(4242);\nLISTEN spawn_test;\n",
    )
    db_project.add_migration(
        "sees-fresh-session",
        "DO $$ BEGIN\n"
        "  IF current_setting('search_path') <> '\"$user\", public' THEN\n"
        "    RAISE EXCEPTION 'search_path leaked: %', current_setting('search_path'); END IF;\n"
        "  IF current_setting('statement_timeout') <> '0' THEN\n"
        "    RAISE EXCEPTION 'statement_timeout leaked'; END IF;\n"
        "  IF to_regclass('pg_temp.scratch') IS NOT NULL THEN\n"
        "    RAISE EXCEPTION 'temp table leaked'; END IF;\n"
        "  IF EXISTS (SELECT FROM pg_prepared_statements) THEN\n"
        "    RAISE EXCEPTION 'prepared statement leaked'; END IF;\n"
        "  IF EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' "
        f"AND pid = pg_backend_pid() AND (classid, objid, objsubid) <> ({k1}, {k2}, 2)) THEN\n"
        "    RAISE EXCEPTION 'advisory lock leaked'; END IF;\n"
        "  IF EXISTS (SELECT FROM pg_listening_channels()) THEN\n"
        "    RAISE EXCEPTION 'LISTEN leaked'; END IF;\n"
        "END $$;\n"
        "SELECT currval('public.seq_user_id_seq');\n",
    )

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert 'currval of sequence "seq_user_id_seq" is not yet defined in this session' \
        in result.stderr
    assert "leaked" not in result.stderr


def test_psql_meta_commands_and_connect_do_not_reach_the_next_migration(
    db_project: DbProject,
) -> None:
    database = db_project.database
    other = f"{database.name}_other"
    database.query(f'CREATE DATABASE "{other}"')
    try:
        db_project.add_migration(
            "meta",
            "CREATE TABLE here (n int);\nSELECT 41 + 1 AS answer \\gset\n"
            "INSERT INTO here VALUES (:answer);\n\\set spawn_leftover 1\n"
            f"\\c {other}\nCREATE TABLE there (n int);\n",
        )
        db_project.add_migration("plain", "CREATE TABLE after_meta (db text DEFAULT "
                                          "current_database());\n")
        db_project.add_migration(
            "checks-vars", "\\if :{?spawn_leftover}\nSELECT 1/0;\n\\endif\n"
            "\\if :{?answer}\nSELECT 1/0;\n\\endif\nCREATE TABLE vars_clean ();\n")

        result = database and db_project.run("migration", "apply", "--yes")

        assert result.exit_code == 0, result.stderr
        assert database.query("SELECT n FROM here") == "42"
        assert database.query("SELECT to_regclass('after_meta') IS NOT NULL, "
                              "to_regclass('vars_clean') IS NOT NULL") == "t|t"
        assert database.query("SELECT to_regclass('there') IS NOT NULL", other) == "t"
        assert database.query("SELECT to_regclass('after_meta') IS NULL", other) == "t"
    finally:
        database.query(f'DROP DATABASE "{other}" WITH (FORCE)')


@pytest.mark.parametrize("shared", [True, False], ids=["shared-session", "own-psql"])
def test_transaction_left_open_is_rolled_back_and_recorded_as_failure(
    db_project: DbProject, shared: bool
) -> None:
    body = "BEGIN;\nCREATE TABLE half_done (id int);\n"
    if not shared:
        body += "\\echo in its own psql\n"
    name = db_project.add_migration("open", body)
    follow = db_project.add_migration("follow", "CREATE TABLE follow (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert "ended inside a transaction block (a BEGIN without COMMIT)" in result.stderr
    assert db_project.database.query("SELECT to_regclass('half_done') IS NULL") == "t"
    assert latest(db_project.database) == {name: "FAILURE"}
    assert follow not in latest(db_project.database)


def test_statement_without_final_semicolon_runs_like_psql_at_end_of_input(
    db_project: DbProject,
) -> None:
    db_project.add_migration("no-semicolon", "CREATE TABLE a (id int);\nCREATE TABLE b (id int)")
    db_project.add_migration("next", "CREATE TABLE c (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert db_project.database.query(
        "SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b', 'c')") == "3"


def test_notices_are_shown(db_project: DbProject) -> None:
    db_project.add_migration("notice", "DO $$ BEGIN RAISE NOTICE 'hello from the migration'; "
                                       "END $$;\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "NOTICE:  hello from the migration" in result.stderr


def test_template_error_stops_before_anything_reaches_the_database(
    db_project: DbProject,
) -> None:
    good = db_project.add_migration("good", "CREATE TABLE good (id int);\n")
    broken = db_project.add_migration("broken", "CREATE TABLE broken (id int);\n"
                                               "{{ 1 / 0 }}\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert f"spawn/migrations/{broken}/up.sql:2" in result.stderr
    assert "ZeroDivisionError" in result.stderr
    assert latest(db_project.database) == {good: "SUCCESS"}
    assert db_project.database.query("SELECT to_regclass('broken') IS NULL") == "t"
    assert db_project.database.query(
        f"SELECT count(*) FROM _spawn.migration WHERE name = '{broken}'") == "0"


@pytest.mark.parametrize("body", [
    "CREATE TABLE crlf (id int);\r\nSELECT '{not jinja}';\r\n\r\n",
    "CREATE TABLE cr (id int);\rSELECT 1;",
    "CREATE TABLE plain (note text DEFAULT 'a {b} c');\n\n\n",
])
def test_plain_sql_checksum_matches_build_output(db_project: DbProject, body: str) -> None:
    name = db_project.add_migration("plain", "")
    (db_project.spawn_dir / "migrations" / name / "up.sql").write_bytes(body.encode())
    assert db_project.run("migration", "pin", name).exit_code == 0

    applied = db_project.run("migration", "apply", name)
    built = subprocess.run([*SPAWN, "migration", "build", name, "--pinned"],  # bytes: keep CRs
                           cwd=db_project.root, capture_output=True, env=spawn_env(), check=True)

    assert applied.exit_code == 0, applied.stderr
    expected = xxhash.xxh3_128_hexdigest(built.stdout[:-1])
    assert db_project.database.query(
        "SELECT encode(checksum, 'hex') FROM _spawn.migration_history "
        "WHERE status_id_status = 'SUCCESS' ORDER BY migration_history_id DESC LIMIT 1"
    ) == expected


def test_session_defaults_changed_by_a_migration_reach_the_next_one(
    db_project: DbProject,
) -> None:
    db_project.add_migration(
        "set-default",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L', "
        "current_database(), '12345'); END $$;\n")
    db_project.add_migration(
        "sees-default",
        "DO $$ BEGIN IF current_setting('statement_timeout') <> '12345ms' THEN "
        "RAISE EXCEPTION 'stale session: %', current_setting('statement_timeout'); "
        "END IF; END $$;\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
