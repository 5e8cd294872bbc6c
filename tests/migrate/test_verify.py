"""Verify scripts (issue 13): ``verify.sql`` after each migration in apply, and
``spawn migration verify``, against the test suite's real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.config import toml_string
from spawn_db.migrate.tracking import lock_key
from tests.conftest import DbProject
from tests.migrate.history import history, latest

RAISE_UNLESS_TWO = (
    "DO $$ BEGIN IF (SELECT count(*) FROM users) <> 2 THEN "
    "RAISE EXCEPTION 'expected 2 users, found %', (SELECT count(*) FROM users); END IF; END $$;\n"
)


def add_verify(db_project: DbProject, name: str, sql: str) -> None:
    (db_project.spawn_dir / "migrations" / name / "verify.sql").write_text(sql, encoding="utf-8")


def note_of(db_project: DbProject, name: str, status: str = "FAILURE") -> str:
    return db_project.database.query(
        "SELECT h.status_note FROM _spawn.migration_history h JOIN _spawn.migration m "
        f"ON m.migration_id = h.migration_id_migration WHERE m.name = '{name}' "
        f"AND h.status_id_status = '{status}' ORDER BY h.migration_history_id DESC LIMIT 1")


def rows_of(db_project: DbProject, name: str) -> list[str]:
    """``status|checksum hex|pin`` of each of ``name``'s history rows, oldest first."""
    return db_project.database.query(
        "SELECT h.status_id_status || '|' || encode(h.checksum, 'hex') || '|' || "
        "coalesce(h.pin_hash, '-') FROM _spawn.migration_history h JOIN _spawn.migration m "
        f"ON m.migration_id = h.migration_id_migration WHERE m.name = '{name}' "
        "ORDER BY h.migration_history_id").splitlines()


def pin_of(db_project: DbProject, name: str) -> str:
    return (db_project.spawn_dir / "migrations" / name / "lock.toml").read_text().split('"')[1]


def verify_error(name: str, before: int, total: int, said: str) -> str:
    return (
        f"error: migration {name} ran, but its verify script spawn/migrations/{name}/verify.sql "
        f"failed ({before} of {total} applied before it); recorded as FAILURE in "
        f"_spawn.migration_history, and the run stopped. psql said:\n{said}\n"
        "The migration's changes are committed: fix what verify.sql found (or verify.sql "
        f"itself), then run `spawn migration apply {name} --retry` (which runs up.sql again), "
        f"or, if the database is right as it is, `spawn migration adopt {name}`\n"
    )


# -- apply ----------------------------------------------------------------------------------


@pytest.mark.parametrize("isolated", [False, True], ids=["shared", "isolated"])
def test_a_passing_verify_runs_after_its_migration_before_the_next(
    db_project: DbProject, isolated: bool
) -> None:
    meta = "\\set spawn_test 1\n" if isolated else ""
    users = db_project.add_migration(
        "users", f"{meta}CREATE TABLE users (id int);\nINSERT INTO users VALUES (1), (2);\n")
    # What the verify saw: users has its rows, posts (the next migration) does not exist yet.
    add_verify(db_project, users, RAISE_UNLESS_TWO
               + "INSERT INTO users SELECT -count(*) FROM pg_tables WHERE tablename = 'posts';\n")
    posts = db_project.add_migration("posts", "CREATE TABLE posts (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert re.search(rf"^  {users}: verify\.sql passed \(\d+ ms\)$", result.stderr, re.M)
    assert history(db_project.database) == [
        (users, "APPLY", "ATTEMPTED"), (users, "APPLY", "SUCCESS"),
        (posts, "APPLY", "ATTEMPTED"), (posts, "APPLY", "SUCCESS"),
    ]
    assert db_project.database.query("SELECT string_agg(id::text, ',' ORDER BY id) FROM users") \
        == "0,1,2"


FAILURES = {
    "raise": (RAISE_UNLESS_TWO,
              "ERROR:  expected 2 users, found 1\n"
              "CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE"),
    "assert": ("DO $$ BEGIN ASSERT (SELECT count(*) FROM users) = 2, 'two users'; END $$;\n",
               "ERROR:  two users\n"
               "CONTEXT:  PL/pgSQL function inline_code_block line 1 at ASSERT"),
    "syntax": ("SELEC 1;\n",
               'ERROR:  syntax error at or near "SELEC"\nLINE 1: SELEC 1;\n        ^'),
    "if-quit": ("SELECT count(*) = 2 AS two FROM users \\gset\n"
                "\\if :two\n\\else\n\\warn 'verify: expected 2 users'\n\\quit\n\\endif\n"
                "SELECT 1;\n",
                "verify: expected 2 users\n(verify.sql stopped at a \\quit before its end)"),
    "quit-1": ("\\quit 1\n", "\\quit: extra argument \"1\" ignored\n"
                             "(verify.sql stopped at a \\quit before its end)"),
    "on-error-stop-off": ("\\set ON_ERROR_STOP off\nSELECT * FROM nowhere;\nSELECT 1;\n",
                          'ERROR:  relation "nowhere" does not exist\n'
                          "LINE 1: SELECT * FROM nowhere;\n"
                          "                      ^\n"
                          "(verify.sql turned ON_ERROR_STOP off, and a statement failed)"),
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_a_failing_verify_records_failure_and_nothing_after_it_runs(
    db_project: DbProject, kind: str
) -> None:
    verify, said = FAILURES[kind]
    first = db_project.add_migration("first", "CREATE TABLE first (id int);\n")
    users = db_project.add_migration(
        "users", "CREATE TABLE users (id int);\nINSERT INTO users VALUES (1);\n")
    add_verify(db_project, users, verify)
    # Plain, shareable migrations: without the drain after users, psql would have them queued.
    later = [db_project.add_migration(f"later{n}", f"CREATE TABLE later{n} (id int);\n")
             for n in range(5)]

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert result.stderr.endswith(verify_error(users, 1, 7, said))
    assert latest(db_project.database) == {first: "SUCCESS", users: "FAILURE"}
    assert note_of(db_project, users) == f"verify failed: {said}"
    attempted, success, failure = rows_of(db_project, users)
    assert (success, failure) == (attempted.replace("ATTEMPTED", "SUCCESS"),
                                  attempted.replace("ATTEMPTED", "FAILURE"))
    assert attempted.endswith(f"|{pin_of(db_project, users)}")
    assert db_project.database.query(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'later%'") == "0"
    assert all(rows_of(db_project, name) == [] for name in later)
    assert db_project.database.query("SELECT count(*) FROM users") == "1"

    refused = db_project.run("migration", "apply", "--yes")

    assert refused.exit_code == 1
    assert f"error: migration {users} failed in an earlier run" in refused.stderr
    assert db_project.database.query("SELECT count(*) FROM pg_tables WHERE tablename "
                                     "LIKE 'later%'") == "0"


def test_retry_after_fixing_runs_the_migration_and_its_verify_again(
    db_project: DbProject,
) -> None:
    users = db_project.add_migration(
        "users", "CREATE TABLE IF NOT EXISTS users (id int);\nINSERT INTO users VALUES (1);\n")
    add_verify(db_project, users, RAISE_UNLESS_TWO)
    posts = db_project.add_migration("posts", "CREATE TABLE posts (id int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 1

    retried = db_project.run("migration", "apply", "--yes", "--retry")

    assert retried.exit_code == 0, retried.stderr
    assert f"  {users}: verify.sql passed" in retried.stderr
    assert [s for n, _, s in history(db_project.database) if n == users] == [
        "ATTEMPTED", "SUCCESS", "FAILURE", "ATTEMPTED", "SUCCESS"]
    assert latest(db_project.database) == {users: "SUCCESS", posts: "SUCCESS"}


def test_adopt_after_a_failed_verify_then_migration_verify(db_project: DbProject) -> None:
    users = db_project.add_migration(
        "users", "CREATE TABLE users (id int);\nINSERT INTO users VALUES (1);\n")
    add_verify(db_project, users, RAISE_UNLESS_TWO)
    assert db_project.run("migration", "apply", "--yes").exit_code == 1
    db_project.database.query("INSERT INTO users VALUES (2)")

    assert db_project.run("migration", "adopt", users).exit_code == 0
    checked = db_project.run("migration", "verify")

    assert (checked.exit_code, checked.stdout) == (0, f"ok      {users}\n")


def test_verify_renders_from_the_pin_even_after_the_component_changed(
    db_project: DbProject,
) -> None:
    component = db_project.add_component("expected_users.sql", "2")
    users = db_project.add_migration(
        "users", "CREATE TABLE users (id int);\nINSERT INTO users VALUES (1), (2);\n",
        pin=False)
    add_verify(db_project, users, "DO $$ BEGIN ASSERT (SELECT count(*) FROM users) = "
               "{% include 'expected_users.sql' %}, 'count'; END $$;\n")
    assert db_project.run("migration", "pin", users).exit_code == 0
    component.write_text("3", encoding="utf-8")

    applied = db_project.run("migration", "apply", "--yes")

    assert applied.exit_code == 0, applied.stderr
    assert latest(db_project.database) == {users: "SUCCESS"}
    pinned = db_project.run("migration", "verify")
    assert (pinned.exit_code, pinned.stdout) == (0, f"ok      {users}\n")
    tree = db_project.run("migration", "verify", "--no-pin")
    assert tree.exit_code == 1
    assert tree.stdout == (f"FAILED  {users}\n        ERROR:  count\n"
                           "        CONTEXT:  PL/pgSQL function inline_code_block line 1 at "
                           "ASSERT\n")


def test_a_template_error_in_verify_stops_before_the_migration_runs(
    db_project: DbProject,
) -> None:
    users = db_project.add_migration("users", "CREATE TABLE users (id int);\n")
    add_verify(db_project, users, "SELECT {{ 1 + }};\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert f"spawn/migrations/{users}/verify.sql" in result.stderr
    assert history(db_project.database) == []
    assert db_project.database.query("SELECT to_regclass('users') IS NULL") == "t"
    dry = db_project.run("migration", "apply", "--dry-run")
    assert (dry.exit_code, dry.stderr) == (result.exit_code, result.stderr.splitlines(True)[-1])


@pytest.mark.parametrize("isolated", [False, True], ids=["shared", "isolated"])
def test_the_verify_session_is_fresh(db_project: DbProject, isolated: bool) -> None:
    meta = "\\set from_migration 1\n" if isolated else ""
    users = db_project.add_migration(
        "users",
        f"{meta}CREATE TEMP TABLE scratch (n int);\nSET search_path = public, pg_catalog;\n"
        "CREATE TABLE users (id int, pid int DEFAULT pg_backend_pid());\n"
        "INSERT INTO users (id) VALUES (1);\n")
    add_verify(db_project, users, (
        "\\if :{?from_migration}\n\\warn 'a psql variable of the migration is visible'\n"
        "\\quit\n\\endif\n"
        "DO $$ BEGIN\n"
        "  IF (SELECT pid FROM users) = pg_backend_pid() THEN\n"
        "    RAISE EXCEPTION 'the migration''s backend'; END IF;\n"
        "  IF to_regclass('pg_temp.scratch') IS NOT NULL THEN\n"
        "    RAISE EXCEPTION 'the temp table is visible'; END IF;\n"
        "  IF current_setting('search_path') <> '\"$user\", public' THEN\n"
        "    RAISE EXCEPTION 'search_path is %', current_setting('search_path'); END IF;\n"
        "  IF current_setting('application_name') <> 'spawn verify ' || "
        f"'{users}' THEN\n"
        "    RAISE EXCEPTION 'application_name is %', current_setting('application_name');\n"
        "  END IF;\n"
        "END $$;\n"))
    later = db_project.add_migration("later", "CREATE TABLE later (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert f"  {users}: verify.sql passed" in result.stderr
    assert latest(db_project.database) == {users: "SUCCESS", later: "SUCCESS"}


def test_dry_run_names_the_migrations_that_have_a_verify_script(
    db_project: DbProject,
) -> None:
    users = db_project.add_migration("users", "CREATE TABLE users (id int);\n")
    add_verify(db_project, users, "SELECT 1;\n")
    posts = db_project.add_migration("posts", "CREATE TABLE posts (id int);\n")
    pin = pin_of(db_project, users)

    dry = db_project.run("migration", "apply", "--dry-run")

    assert dry.exit_code == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert re.fullmatch(rf"{users}  pin {pin}  checksum [0-9a-f]{{32}}  then verify\.sql",
                        lines[0])
    assert re.fullmatch(rf"{posts}  pin {pin}  checksum [0-9a-f]{{32}}", lines[1])
    assert dry.stderr == ("Dry run: would apply 2 migrations (0 already applied); nothing was "
                          "written. 1 of them has a verify.sql, run right after its migration.\n")
    sql = db_project.run("migration", "apply", "--dry-run", "--sql")
    assert re.match(rf"-- spawn migration {users}: pin {pin}, checksum [0-9a-f]{{32}}, then "
                    r"verify\.sql\n", sql.stdout)
    as_json = json.loads(db_project.run("migration", "apply", "--dry-run", "--format",
                                        "json").stdout)
    assert [(m["name"], m["verify"]) for m in as_json["to_apply"]] == [
        (users, True), (posts, False)]
    assert db_project.database.query("SELECT to_regclass('_spawn.migration_history') IS NULL") \
        == "t"


@pytest.fixture
def tracking_elsewhere(db_project: DbProject) -> Iterator[str]:
    """The project's tracking tables in another database: spawn writes the rows between
    migrations through its control session, not through the runner."""
    database = db_project.database
    name = f"{database.name}_tracking"
    database.query(f'CREATE DATABASE "{name}"')
    direct = ", ".join(toml_string(a) for a in database.psql_argv())
    db_project.config_path.write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
        f'engine = "postgres-psql"\nenvironment = "dev"\nspawn_database = "{name}"\n'
        f'command = {{ kind = "direct", direct = [{direct}] }}\n', encoding="utf-8")
    yield name
    database.query(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_verify_with_the_tracking_tables_in_another_database(
    db_project: DbProject, tracking_elsewhere: str
) -> None:
    first = db_project.add_migration("first", "CREATE TABLE first (id int);\n")
    add_verify(db_project, first, "DO $$ BEGIN PERFORM 'first'::regclass; END $$;\n")
    users = db_project.add_migration(
        "users", "CREATE TABLE users (id int);\nINSERT INTO users VALUES (1);\n")
    add_verify(db_project, users, RAISE_UNLESS_TWO)
    db_project.add_migration("later", "CREATE TABLE later (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert result.stderr.endswith(verify_error(
        users, 1, 3, "ERROR:  expected 2 users, found 1\n"
        "CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE"))
    rows = db_project.database.query(
        "SELECT m.name || ' ' || h.status_id_status FROM _spawn.migration_history h "
        "JOIN _spawn.migration m ON m.migration_id = h.migration_id_migration "
        "WHERE m.namespace = 'default' ORDER BY h.migration_history_id", tracking_elsewhere)
    assert rows.splitlines() == [f"{first} ATTEMPTED", f"{first} SUCCESS", f"{users} ATTEMPTED",
                                 f"{users} SUCCESS", f"{users} FAILURE"]
    assert db_project.database.query("SELECT to_regclass('later') IS NULL") == "t"
    checked = db_project.run("migration", "verify")
    assert (checked.exit_code, checked.stdout) == (0, f"ok      {first}\n")


# -- spawn migration verify -----------------------------------------------------------------


def applied_trio(db_project: DbProject) -> tuple[str, str, str]:
    """users (verify: two users), plain (none), posts (verify: no post without a user)."""
    users = db_project.add_migration(
        "users", "CREATE TABLE users (id int);\nINSERT INTO users VALUES (1), (2);\n")
    add_verify(db_project, users, RAISE_UNLESS_TWO)
    plain = db_project.add_migration("plain", "CREATE TABLE plain (id int);\n")
    posts = db_project.add_migration("posts", "CREATE TABLE posts (user_id int);\n")
    add_verify(db_project, posts,
               "SELECT count(*) = 0 AS clean FROM posts WHERE user_id NOT IN "
               "(SELECT id FROM users) \\gset\n"
               "\\if :clean\n\\else\n\\warn 'posts without a user'\n\\quit\n\\endif\n")
    result = db_project.run("migration", "apply", "--yes")
    assert result.exit_code == 0, result.stderr
    return users, plain, posts


def test_migration_verify_runs_every_script_in_application_order(
    db_project: DbProject,
) -> None:
    users, _, posts = applied_trio(db_project)
    rows = len(history(db_project.database))

    passed = db_project.run("migration", "verify")

    assert (passed.exit_code, passed.stdout, passed.stderr) == (
        0, f"ok      {users}\nok      {posts}\n", "Verified 2 migrations: 2 passed, 0 failed.\n")

    db_project.database.query("INSERT INTO users VALUES (3); INSERT INTO posts VALUES (9)")
    failed = db_project.run("migration", "verify")

    assert failed.exit_code == 1
    assert failed.stdout == (
        f"FAILED  {users}\n"
        "        ERROR:  expected 2 users, found 3\n"
        "        CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE\n"
        f"FAILED  {posts}\n"
        "        posts without a user\n"
        "        (verify.sql stopped at a \\quit before its end)\n")
    assert failed.stderr == "Verified 2 migrations: 0 passed, 2 failed.\n"
    assert len(history(db_project.database)) == rows

    as_json = db_project.run("migration", "verify", "--format", "json")

    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert [m.pop("seconds") >= 0 for m in report["migrations"]] == [True, True]
    assert report == {
        "migrations": [
            {"name": users, "ok": False, "error": "ERROR:  expected 2 users, found 3\n"
             "CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE"},
            {"name": posts, "ok": False, "error": "posts without a user\n"
             "(verify.sql stopped at a \\quit before its end)"},
        ],
        "passed": 0, "failed": 2, "applied": 3,
    }
    assert as_json.stderr == ""
    assert len(history(db_project.database)) == rows


def test_migration_verify_of_one_and_its_refusals(db_project: DbProject) -> None:
    users, plain, _ = applied_trio(db_project)
    pending = db_project.add_migration("pending", "SELECT 1;\n")
    add_verify(db_project, pending, "SELECT 1;\n")

    one = db_project.run("migration", "verify", "users")

    assert (one.exit_code, one.stdout, one.stderr) == (
        0, f"ok      {users}\n", "Verified 1 migration: 1 passed, 0 failed.\n")
    none = db_project.run("migration", "verify", plain)
    assert (none.exit_code, none.stdout, none.stderr) == (
        2, "", f"error: migration {plain} has no verify script; create "
        f"spawn/migrations/{plain}/verify.sql beside its up.sql to check what it did\n")
    not_applied = db_project.run("migration", "verify", pending)
    assert (not_applied.exit_code, not_applied.stdout, not_applied.stderr) == (
        2, "", f"error: migration {pending} is not applied (its state: pending); `spawn "
        "migration verify` re-runs the verify scripts of applied migrations: apply it first "
        f"(`spawn migration apply {pending}` runs its verify.sql too)\n")


def test_migration_verify_with_no_script_says_so(db_project: DbProject) -> None:
    db_project.add_migration("plain", "CREATE TABLE plain (id int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0

    result = db_project.run("migration", "verify")

    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "", "Nothing to verify: no applied migration has a verify.sql (1 migration is "
        "applied).\n")
    as_json = db_project.run("migration", "verify", "--format", "json")
    assert json.loads(as_json.stdout) == {"migrations": [], "passed": 0, "failed": 0,
                                          "applied": 1}


def test_migration_verify_takes_no_lock_and_writes_nothing(db_project: DbProject) -> None:
    users, _, posts = applied_trio(db_project)
    before = db_project.database.query("SELECT count(*) FROM _spawn.migration_history")
    holder = subprocess.Popen(
        [*db_project.database.psql_argv(), "-c",
         f"SELECT pg_advisory_lock({lock_key()}), pg_sleep(60)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PGAPPNAME": "holder-under-test"},
    )
    try:
        db_project.database.wait_until("SELECT EXISTS (SELECT FROM pg_locks WHERE "
                                      "locktype = 'advisory' AND granted)")
        result = db_project.run("migration", "verify", "--format", "json")
    finally:
        holder.kill()
        holder.wait()

    assert result.exit_code == 0, result.stderr
    assert [m["name"] for m in json.loads(result.stdout)["migrations"]] == [users, posts]
    assert db_project.database.query("SELECT count(*) FROM _spawn.migration_history") == before


def test_migration_verify_of_an_unpinned_migration_hints_no_pin(db_project: DbProject) -> None:
    users = db_project.add_migration(
        "users", "CREATE TABLE users (id int);\nINSERT INTO users VALUES (1), (2);\n",
        pin=False)
    add_verify(db_project, users, RAISE_UNLESS_TWO)
    assert db_project.run("migration", "apply", "--yes", "--no-pin").exit_code == 0

    pinned = db_project.run("migration", "verify")

    assert (pinned.exit_code, pinned.stderr) == (
        2, f"error: migration {users} is not pinned (no lock.toml), so its verify.sql cannot "
        "be rendered from a pin; pass --no-pin to render it from the working tree\n")
    tree = db_project.run("migration", "verify", "--no-pin")
    assert (tree.exit_code, tree.stdout) == (0, f"ok      {users}\n")


# -- any script: the verdict follows what psql did ------------------------------------------

PASSING = ("SELECT 1;", "-- a comment", "/* a block\ncomment */", "\\echo checked",
           "DO $$ BEGIN PERFORM 1; END $$;", "\\if true\nSELECT 2;\n\\endif",
           "SELECT 'it''s' AS quoted;", "\\set ON_ERROR_STOP off\nSELECT 3;",
           "BEGIN;\nSELECT 4;\nROLLBACK;")
FAILING = ("SELECT 1/0;", "\\quit", "DO $$ BEGIN RAISE EXCEPTION 'no'; END $$;",
           "\\if false\n\\else\n\\quit\n\\endif", "DO $$ BEGIN ASSERT false; END $$;")
# Only last: psql sends a statement with no semicolon when its input ends.
LAST = ("", "SELECT 5", "SELECT 1/0", "-- trailing comment")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(PASSING + FAILING), max_size=5),
       last=st.sampled_from(LAST), newline=st.booleans())
def test_any_script_fails_exactly_when_a_piece_fails(
    db_project: DbProject, pieces: list[str], last: str, newline: bool
) -> None:
    from spawn_db.config import Overrides, load_config
    from spawn_db.db.engine import engine_for
    from spawn_db.migrate.verify import render_verify, run_verify

    name = _script_migrations.get(db_project.root)
    if name is None:
        name = _script_migrations[db_project.root] = db_project.add_migration(
            "script", "SELECT 1;\n", pin=False)
    script = "\n".join([*pieces, last]) + ("\n" if newline else "")
    add_verify(db_project, name, script)
    config = load_config(Overrides(config_file=str(db_project.config_path)))
    rendered = render_verify(config, name, pinned=False, variables={})
    try:
        error = run_verify(engine_for(config), rendered, opening="")
    finally:
        rendered.close()

    everything = [*pieces, last]
    failing = [n for n, p in enumerate(everything) if p in FAILING or p == "SELECT 1/0"]
    if not failing:
        assert error is None, script
        return
    first = everything[failing[0]]
    tolerated = "\\set ON_ERROR_STOP off\nSELECT 3;" in everything[: failing[0]]
    if first.endswith("\\quit") or first.endswith("\\quit\n\\endif") or tolerated:
        assert error is not None, script
    else:
        assert error is not None and error.startswith("ERROR:"), (script, error)


_script_migrations: dict[object, str] = {}


def test_sigterm_during_a_verify_cancels_it_and_records_the_failure(
    db_project: DbProject,
) -> None:
    import signal

    from tests.helpers import start_spawn

    users = db_project.add_migration("users", "CREATE TABLE users (id int);\n")
    add_verify(db_project, users, "SELECT pg_sleep(30);\n")
    db_project.add_migration("later", "CREATE TABLE later (id int);\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    db_project.database.wait_until(
        "SELECT EXISTS (SELECT FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = "
        f"'spawn verify {users}' AND query LIKE '%pg_sleep(30)%')")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    _, err = proc.communicate()

    assert code == 143, err
    assert f"error: migration {users} ran, but its verify script spawn/migrations/{users}/" \
           "verify.sql was interrupted (0 of 2 applied before it)" in err, err
    assert "Traceback" not in err
    assert note_of(db_project, users) == (
        "verify failed: ERROR:  canceling statement due to user request")
    assert latest(db_project.database) == {users: "FAILURE"}
    assert db_project.database.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE 'spawn %'") == "0"
