"""Spawn writes UTF-8 and quotes its bookkeeping for UTF-8 with standard-conforming
strings, whatever ``client_encoding`` the environment, the target's command or a
migration asks for: the history (a non-ASCII OS user in ``created_by``, the checksums) and
the next migrations' text keep their exact bytes.

Where it used to go wrong: a migration that changed ``client_encoding`` (or
``standard_conforming_strings``) in the shared runner had the message after it, the
session reset and its bookkeeping, read in the migration's settings (PostgreSQL converts
and lexes a whole message before it runs any of it), so ``created_by`` became ``josÃ©``
and the checksum ``'\\x…'`` a different value; and a command whose connection itself asks
for LATIN1 (a ``psql-…`` wrapper exporting ``PGCLIENTENCODING``, a conninfo
``client_encoding``) had ``RESET ALL`` after each migration return the runner to LATIN1,
so the next migrations' ``é`` was stored as ``Ã©``."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.db.psql import ControlSession
from spawn_db.escape import ascii_bytea, ascii_literal
from tests.conftest import DbProject, EmbeddedProject, PgServer, TestDatabase
from tests.migrate.test_apply_targets import set_target, toml_list, write_script

USER = "josé"
USER_ENV = {"USER": USER, "LOGNAME": USER}
SECOND = "CREATE TABLE x (n int, a text);\nINSERT INTO x VALUES (1, 'é');\n"
THIRD = "INSERT INTO x VALUES (2, 'ü'), (3, '€');\n"


def add_migrations(project: DbProject, first: str) -> dict[str, str]:
    """``first``, then a migration that writes ``é``, then one that
    writes ``ü`` and ``€``: {name: up.sql}."""
    texts = [first, SECOND, THIRD]
    names = [project.add_migration(name, text)
             for name, text in zip(["first", "second", "third"], texts, strict=True)]
    return dict(zip(names, texts, strict=True))


def history_bytes(database: TestDatabase) -> list[tuple[str, str, str, str]]:
    """(name, status, created_by as UTF-8 hex, checksum hex) of each history row."""
    text = database.query(
        "SELECT m.name || '|' || h.status_id_status || '|' || "
        "encode(convert_to(h.created_by, 'UTF8'), 'hex') || '|' || encode(h.checksum, 'hex') "
        "FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration WHERE m.namespace = 'default' "
        "ORDER BY h.migration_history_id")
    return [(a, b, c, d) for a, b, c, d in (line.split("|") for line in text.splitlines())]


def expected_history(migrations: dict[str, str]) -> list[tuple[str, str, str, str]]:
    user = USER.encode().hex()
    rows = []
    for name, text in migrations.items():
        digest = xxhash.xxh3_128(text[:-1].encode()).hexdigest()  # rendered: no final newline
        rows += [(name, "ATTEMPTED", user, digest), (name, "SUCCESS", user, digest)]
    return rows


def data_bytes(database: TestDatabase) -> str:
    return database.query("SELECT string_agg(encode(convert_to(a, 'UTF8'), 'hex'), ',' "
                          "ORDER BY n) FROM x")


DATA = ",".join(c.encode().hex() for c in "éü€")


def assert_intact(project: DbProject, migrations: dict[str, str], stderr: str) -> None:
    database = project.database
    assert history_bytes(database) == expected_history(migrations), stderr
    assert data_bytes(database) == DATA
    status = project.run("migration", "status")
    assert status.exit_code == 0, status.stderr
    assert "modified" not in status.stdout.lower(), status.stdout


@pytest.mark.parametrize("first", [
    "SET client_encoding = 'LATIN1';\n",
    "SET NAMES 'LATIN1';\n",
    "SET client_encoding = 'SJIS';\n",
    "SET standard_conforming_strings = off;\n",
    "\\encoding LATIN1\nSELECT 1;\n",
    "SET client_encoding = 'LATIN1';\n\\set spawn_own_psql 1\n",
])
def test_a_migration_that_changes_the_encoding_leaves_the_history_and_the_next_intact(
    db_project: DbProject, first: str,
) -> None:
    """In the shared runner (SET), or in a psql of its own (``\\encoding``, a psql
    meta-command), a migration that leaves another client encoding or non-standard
    strings behind: the rows written after it and the migrations after it keep UTF-8."""
    migrations = add_migrations(db_project, first)

    result = db_project.run("migration", "apply", "--yes", env=USER_ENV)

    assert result.exit_code == 0, result.stderr
    assert_intact(db_project, migrations, result.stderr)


def conninfo(database: TestDatabase, extra: str) -> str:
    return (f"host={database.host} port={database.port} user={database.user} "
            f"dbname={database.name} {extra}")


@pytest.mark.parametrize("command", [
    "psql-named wrapper exporting PGCLIENTENCODING",
    "other wrapper exporting PGCLIENTENCODING",
    "conninfo client_encoding",
    "conninfo options",
    "PGCLIENTENCODING in spawn's environment",
])
def test_a_command_that_connects_in_latin1_still_runs_every_migration_in_utf8(
    db_project: DbProject, tmp_path: Path, command: str,
) -> None:
    """The target's command asks for LATIN1 (or other server settings) at connect time,
    which outranks what spawn passes in the environment: ``RESET ALL`` after each
    migration would return the runner to it, so spawn sees that at connect time and sets
    its own settings again after each reset."""
    database = db_project.database
    psql = database.psql
    argv = database.psql_argv()[1:]
    env = dict(USER_ENV)
    if "wrapper" in command:
        name = "psql-latin1" if command.startswith("psql") else "by-latin1"
        wrapper = write_script(tmp_path / name, "export PGCLIENTENCODING=LATIN1\n"
                                                f'exec {shlex.quote(psql)} "$@"\n')
        argv = [str(wrapper), *argv]
    elif command == "conninfo client_encoding":
        argv = [psql, "-X", conninfo(database, "client_encoding=LATIN1")]
    elif command == "conninfo options":
        argv = [psql, "-X", conninfo(database, "options='-c standard_conforming_strings=off'")]
    else:
        argv = [psql, *argv]
        env["PGCLIENTENCODING"] = "LATIN1"
    set_target(db_project, f'{{ kind = "direct", direct = {toml_list(argv)} }}')
    migrations = add_migrations(db_project, "SELECT 1;\n")

    result = db_project.run("migration", "apply", "--yes", env=env)

    assert result.exit_code == 0, result.stderr
    assert_intact(db_project, migrations, result.stderr)


@pytest.fixture(scope="module")
def session(pg_server: PgServer) -> Iterator[ControlSession]:
    """One psql session for the whole module (each example of the property below reuses
    it; the values need no table, so the server's maintenance database does)."""
    control = ControlSession(pg_server.psql_argv())
    yield control
    control.close()


SESSIONS = [
    "SET client_encoding = 'LATIN1' \\; SET standard_conforming_strings = off",
    "SET client_encoding = 'SJIS' \\; SET standard_conforming_strings = on",
    "SET client_encoding = 'BIG5' \\; SET standard_conforming_strings = off",
    "SET client_encoding = 'UTF8' \\; SET standard_conforming_strings = on",
]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")),
       data=st.binary(max_size=32), setup=st.sampled_from(SESSIONS))
def test_bookkeeping_values_mean_the_same_in_any_session(
    session: ControlSession, text: str, data: bytes, setup: str,
) -> None:
    """``ascii_literal`` and ``ascii_bytea`` (every value of a history row) are pure ASCII
    and read back exactly, in one message with the settings a migration may leave behind
    (as the runner's message after a migration is), whatever those are."""
    literal, bytea = ascii_literal(text), ascii_bytea(data)
    assert (literal + bytea).isascii()

    got = session.query(f"{setup} \\; SELECT encode(convert_to({literal}, 'UTF8'), 'hex') "
                        f"|| '|' || encode({bytea}, 'hex') \\; "
                        "SET client_encoding = 'UTF8' \\; SET standard_conforming_strings = on")

    assert got == f"{text.encode().hex()}|{data.hex()}"


def test_sql_hooks_after_a_migration_that_changed_the_encoding_keep_utf8(
    db_project: DbProject,
) -> None:
    """A migration's SQL hooks run in its session (they see its settings), but spawn sends
    their text as UTF-8 with standard-conforming strings: it says so again after the
    migration, whatever encoding the migration left."""
    database = db_project.database
    database.query("CREATE TABLE hook_log (n serial, a text)")
    hooks = db_project.spawn_dir / "hooks"
    hooks.mkdir()
    (hooks / "log.sql").write_text("INSERT INTO hook_log (a) VALUES ('é\\');\n",
                                   encoding="utf-8")
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write('\n[[hooks.after_each_migration]]\nsql = "hooks/log.sql"\n')
    db_project.add_migration("latin1", "SET client_encoding = 'LATIN1';\n"
                                       "SET standard_conforming_strings = off;\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert database.query("SELECT encode(convert_to(a, 'UTF8'), 'hex') FROM hook_log") \
        == "é\\".encode().hex()


def latin1_command(project: DbProject, tmp_path: Path, how: str) -> dict[str, str]:
    """Make the target connect in LATIN1: through a psql-named wrapper exporting
    ``PGCLIENTENCODING`` (spawn's own environment then says UTF8), or with LATIN1 in
    spawn's environment; the environment to run spawn with."""
    database = project.database
    if how == "environment":
        return {**USER_ENV, "PGCLIENTENCODING": "LATIN1"}
    wrapper = write_script(tmp_path / "psql-latin1", "export PGCLIENTENCODING=LATIN1\n"
                                                     f'exec {shlex.quote(database.psql)} "$@"\n')
    argv = [str(wrapper), *database.psql_argv()[1:]]
    set_target(project, f'{{ kind = "direct", direct = {toml_list(argv)} }}')
    return dict(USER_ENV)


def utf8_hex(database: TestDatabase, expression: str, table: str) -> str:
    return database.query(f"SELECT encode(convert_to({expression}, 'UTF8'), 'hex') FROM {table}")


@pytest.mark.parametrize("how", ["wrapper", "environment"])
def test_verify_scripts_tests_and_adopt_write_and_read_utf8(
    db_project: DbProject, tmp_path: Path, how: str,
) -> None:
    """The other sessions spawn opens on a target that connects in LATIN1: a verify script
    (during apply and with ``migration verify``) compares with what the migration wrote, a
    failing one's message is the FAILURE note, a test's output, and an adopted migration's
    description, all exact UTF-8."""
    database = db_project.database
    env = latin1_command(db_project, tmp_path, how)
    first = db_project.add_migration("first", SECOND)
    (db_project.spawn_dir / "migrations" / first / "verify.sql").write_text(
        "DO $$ BEGIN IF (SELECT a FROM x) <> 'é' OR (SELECT octet_length(a) FROM x) <> 2 "
        "THEN RAISE EXCEPTION 'wrong bytes'; END IF; END $$;\n", encoding="utf-8")
    failing = db_project.add_migration("failing", "SELECT 1;\n")
    (db_project.spawn_dir / "migrations" / failing / "verify.sql").write_text(
        "DO $$ BEGIN RAISE EXCEPTION 'échec: %', (SELECT a FROM x); END $$;\n",
        encoding="utf-8")
    db_project.add_test("enc", "SELECT a, octet_length(a) AS bytes FROM x;\n")

    applied = db_project.run("migration", "apply", "--yes", env=env)

    assert applied.exit_code == 1, applied.stderr
    assert "ERROR:  échec: é\n" in applied.stderr
    note = "verify failed: ERROR:  échec: é"
    assert utf8_hex(database, f"left(status_note, {len(note)})",
                    "_spawn.migration_history WHERE status_id_status = 'FAILURE'") \
        == note.encode().hex()
    verified = db_project.run("migration", "verify", first, env=env)
    assert (verified.exit_code, verified.stdout) == (0, f"ok      {first}\n"), verified.stderr
    tested = db_project.run("test", "run", "enc", env=env)
    assert (tested.exit_code, tested.stdout) == (
        0, " a | bytes \n---+-------\n é |     2\n(1 row)\n\n"), tested.stderr
    adopted = db_project.run("migration", "adopt", failing, "--yes", "--description",
                             "réparé à la main", env=env)
    assert adopted.exit_code == 0, adopted.stderr
    assert utf8_hex(database, "description",
                    "_spawn.migration_history WHERE activity_id_activity = 'ADOPT'") \
        == "réparé à la main".encode().hex()
    assert history_bytes(database)[-1][2] == USER.encode().hex()


def test_the_embedded_target_and_db_shell(embedded_project: EmbeddedProject) -> None:
    """The embedded server's target with LATIN1 in spawn's environment: apply writes UTF-8
    (data and history). ``spawn db shell`` is psql as the user runs it and writes no
    history: it keeps the user's ``PGCLIENTENCODING`` (a LATIN1 terminal needs it), and
    reads the same bytes back in it."""
    folder = embedded_project.root / "spawn" / "migrations" / "20240101000000-enc"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text(SECOND, encoding="utf-8")
    env = {**USER_ENV, "PGCLIENTENCODING": "LATIN1"}

    applied = embedded_project.run("migration", "apply", "--yes", "--no-pin", env=env)

    assert applied.exit_code == 0, applied.stderr
    shell = embedded_project.run(
        "db", "shell", "--", "-Atc",
        "SELECT current_setting('client_encoding'), encode(convert_to(a, 'UTF8'), 'hex') "
        "FROM x UNION ALL SELECT DISTINCT 'created_by', "
        "encode(convert_to(created_by, 'UTF8'), 'hex') FROM _spawn.migration_history "
        "WHERE migration_id_migration = (SELECT migration_id FROM _spawn.migration "
        "WHERE name = '20240101000000-enc')", env=env)
    assert (shell.exit_code, shell.stdout) == (
        0, f"LATIN1|{'é'.encode().hex()}\ncreated_by|{USER.encode().hex()}\n"), shell.stderr
