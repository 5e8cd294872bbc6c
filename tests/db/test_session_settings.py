"""Every psql session spawn starts speaks UTF-8 with standard_conforming_strings on.

The client encoding can come from ``PGCLIENTENCODING`` in spawn's environment,
from ``ALTER DATABASE … SET client_encoding`` or from the role. Under SJIS,
GBK or BIG5 a multibyte character swallows the backslash that follows it, so
an escaped literal ends early and psql runs what comes next (``\\!`` is a
shell command); under LATIN1 non-ASCII text is silently stored wrong. With
``standard_conforming_strings = off`` a ``'\\x…'::bytea`` literal means
something else. These tests set each of them and check what reaches the
database, read back from a UTF-8 session.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.config import toml_string
from spawn_db.migrate.tracking import checksum
from tests.conftest import DbProject
from tests.migrate.history import latest

ENCODINGS = ("SJIS", "GBK", "BIG5", "LATIN1")
# "ā" (C4 81) ends on an SJIS lead byte, "日" (E6 97 A5) on a GBK/BIG5 lead byte: the
# backslash after either is swallowed by a client that believes that encoding.
HOSTILE = ("ā\\' ā\\! touch {marker}\n", "日\\' 日\\! touch {marker}\n")
BLOB = b"\x00\\\xff'A\\x41"
TEXT = "café ā 日本 \\ ' \\x41"


def _hostile(marker: Path, encoding: str = "SJIS") -> list[str]:
    """Both hostile values; the one that breaks out under ``encoding`` comes last, so
    the first cannot disturb it and, unfixed, its ``\\!`` really runs."""
    values = [h.format(marker=f"{marker}-{i}") for i, h in enumerate(HOSTILE)]
    return values if encoding in ("GBK", "BIG5") else values[::-1]


def _set_encoding(db_project: DbProject, how: str, encoding: str) -> dict[str, str]:
    """Make ``encoding`` the client encoding spawn's psql would get; the env to run with."""
    database = db_project.database
    if how == "env":
        return {"PGCLIENTENCODING": encoding}
    database.query(f'ALTER DATABASE "{database.name}" SET client_encoding = {encoding!r}')
    if how == "wrapper":
        _wrap_without_environment(db_project)
    return {}


def _wrap_without_environment(db_project: DbProject) -> None:
    """A direct command that, like ``docker exec``, does not pass libpq variables on."""
    argv = ["env", "-u", "PGCLIENTENCODING", "-u", "PGOPTIONS",
            *db_project.database.psql_argv()]
    _set_direct(db_project, argv)


def _set_direct(db_project: DbProject, argv: list[str]) -> None:
    text = db_project.config_path.read_text()
    start = text.index("direct = [")
    end = text.index("]", start)
    direct = ", ".join(toml_string(a) for a in argv)
    db_project.config_path.write_text(text[:start] + f"direct = [{direct}" + text[end:])


MODES = [(how, enc) for enc in ENCODINGS for how in ("env", "database", "wrapper")]


@pytest.mark.parametrize(("how", "encoding"), MODES)
def test_apply_stores_exact_text_and_runs_no_shell(
    db_project: DbProject, tmp_path: Path, how: str, encoding: str
) -> None:
    marker = tmp_path / "pwned"
    values = _hostile(marker, encoding)
    db_project.database.query("CREATE TABLE vals (id int PRIMARY KEY, v text NOT NULL)")
    db_project.add_migration("hostile", (
        "INSERT INTO vals VALUES (1, {{ variables.a }});\n"
        "INSERT INTO vals VALUES (2, {{ variables.b }});\n"
        f"INSERT INTO vals VALUES (3, {{{{ variables.c }}}}), "
        f"(4, '{TEXT.replace(chr(39), chr(39) * 2)}');\n"
    ))
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"a": values[0], "b": values[1], "c": TEXT}))
    env = _set_encoding(db_project, how, encoding)

    result = db_project.run("migration", "apply", "--variables", str(variables), env=env)

    assert not list(tmp_path.glob("pwned*")), "psql ran the shell command"

    assert result.exit_code == 0, result.stderr
    stored = db_project.database.query(
        "SELECT string_agg(encode(convert_to(v, 'UTF8'), 'hex'), ',' ORDER BY id) FROM vals")
    assert stored == ",".join(v.encode().hex() for v in [*values, TEXT, TEXT])
    assert latest(db_project.database) == {"20240101000000-hostile": "SUCCESS"}


TEST_SQL = (
    "\\set VERBOSITY terse\n"
    "SELECT {{ variables.a }} AS a;\n"
    "SELECT {{ variables.b }} AS b;\n"
    f"SELECT {{{{ variables.c }}}} AS c, '{TEXT.replace(chr(39), chr(39) * 2)}' AS t;\n"
    "SELECT '\\x41'::bytea AS x, length({{ variables.c }}) AS n;\n"
)


@pytest.mark.parametrize(("how", "encoding"), MODES)
def test_compare_output_is_identical_to_a_utf8_run(
    db_project: DbProject, tmp_path: Path, how: str, encoding: str
) -> None:
    marker = tmp_path / "pwned"
    values = _hostile(marker, encoding)
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"a": values[0], "b": values[1], "c": TEXT}))
    db_project.add_test("enc", TEST_SQL)
    expected = db_project.run("test", "expect", "enc", "--variables", str(variables))
    assert expected.exit_code == 0, expected.stderr
    golden = (db_project.spawn_dir / "tests" / "enc" / "expected").read_text()
    assert "café ā 日本" in golden and "\\x41" in golden
    env = _set_encoding(db_project, how, encoding)

    result = db_project.run("test", "compare", "--variables", str(variables), env=env)

    assert not list(tmp_path.glob("pwned*")), "psql ran the shell command"

    assert (result.exit_code, result.stdout.splitlines()[0]) == (0, "[PASS] enc"), result.stdout


def test_database_setting_after_backslash_connect_keeps_utf8(
    db_project: DbProject, tmp_path: Path
) -> None:
    """A migration or test that ``\\c``s into a database set to SJIS stays UTF-8."""
    database = db_project.database
    other = f"{database.name}_sjis"
    database.query(f'CREATE DATABASE "{other}" TEMPLATE "{database.name}"')
    try:
        database.query(f'ALTER DATABASE "{other}" SET client_encoding = SJIS')
        database.query(f'ALTER DATABASE "{other}" SET standard_conforming_strings = off')
        database.query("CREATE TABLE vals (id int PRIMARY KEY, v text, b bytea)", other)
        db_project.add_component("blob.bin", "")
        (db_project.spawn_dir / "components" / "blob.bin").write_bytes(b"\x00\\\xff'A")
        db_project.add_migration("reconnect", (
            f"\\c {other}\n"
            "INSERT INTO vals VALUES (1, {{ variables.a }}, {{ read_file('blob.bin') }}),\n"
            f"  (2, {{{{ variables.c }}}}, NULL);\n"
            "SELECT current_setting('client_encoding') AS e, "
            "current_setting('standard_conforming_strings') AS s \\gset\n"
            "INSERT INTO vals VALUES (3, :'e' || ' ' || :'s', NULL);\n"
        ))
        values = _hostile(tmp_path / "pwned")
        variables = tmp_path / "vars.json"
        variables.write_text(json.dumps({"a": values[0], "c": TEXT}))

        result = db_project.run("migration", "apply", "--variables", str(variables))

        assert not list(tmp_path.glob("pwned*")), "psql ran the shell command"

        assert result.exit_code == 0, result.stderr
        stored = database.query(
            "SELECT string_agg(encode(convert_to(v, 'UTF8'), 'hex') || ':' "
            "|| coalesce(encode(b, 'hex'), ''), ',' ORDER BY id) FROM vals", other)
        assert stored == ",".join([
            values[0].encode().hex() + ":00" + "5c" + "ff" + "27" + "41",
            TEXT.encode().hex() + ":", b"UTF8 on".hex() + ":",
        ])
    finally:
        database.query(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


@pytest.mark.parametrize("how", ["database", "wrapper"])
def test_tracking_and_bytea_are_right_without_standard_conforming_strings(
    db_project: DbProject, how: str
) -> None:
    database = db_project.database
    database.query(f'ALTER DATABASE "{database.name}" SET standard_conforming_strings = off')
    if how == "wrapper":
        _wrap_without_environment(db_project)
    database.query("CREATE TABLE blobs (id int PRIMARY KEY, b bytea NOT NULL)")
    (db_project.spawn_dir / "components").mkdir(exist_ok=True)
    (db_project.spawn_dir / "components" / "blob.bin").write_bytes(BLOB)
    name = db_project.add_migration(
        "blob", "INSERT INTO blobs VALUES (1, {{ read_file('blob.bin') }});\n")
    second = db_project.add_migration(
        "again", "INSERT INTO blobs VALUES (2, {{ read_file('blob.bin') }});\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert database.query("SELECT string_agg(encode(b, 'hex'), ',' ORDER BY id) FROM blobs") \
        == ",".join([BLOB.hex()] * 2)
    assert latest(database) == {name: "SUCCESS", second: "SUCCESS"}
    rendered = f"INSERT INTO blobs VALUES (1, '\\x{BLOB.hex()}'::bytea);"
    assert db_project.run("migration", "build", name).stdout == rendered + "\n"
    sums = database.query(
        "SELECT encode(h.checksum, 'hex') FROM _spawn.migration_history h JOIN "
        "_spawn.migration m ON m.migration_id = h.migration_id_migration "
        f"WHERE m.name = '{name}' AND h.status_id_status = 'SUCCESS'")
    assert sums == checksum(rendered.encode()).hex()


@pytest.mark.parametrize("encoding", ["SJIS", "BIG5"])
def test_role_setting_does_not_change_the_session(
    db_project: DbProject, tmp_path: Path, encoding: str
) -> None:
    database = db_project.database
    role = f"{database.name}_r"
    database.query(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    try:
        database.query(f'ALTER ROLE "{role}" SET client_encoding = {encoding!r}')
        argv = database.psql_argv()
        argv[argv.index("-U") + 1] = role
        _set_direct(db_project, argv)
        database.query("CREATE TABLE vals (id int PRIMARY KEY, v text NOT NULL)")
        values = _hostile(tmp_path / "pwned", encoding)
        db_project.add_migration("role", "INSERT INTO vals VALUES (1, {{ variables.a }});\n"
                                 "INSERT INTO vals VALUES (2, {{ variables.b }});\n")
        variables = tmp_path / "vars.json"
        variables.write_text(json.dumps({"a": values[0], "b": values[1]}))

        result = db_project.run("migration", "apply", "--variables", str(variables))

        assert not list(tmp_path.glob("pwned*")), "psql ran the shell command"

        assert result.exit_code == 0, result.stderr
        assert database.query(
            "SELECT string_agg(encode(convert_to(v, 'UTF8'), 'hex'), ',' ORDER BY id) FROM vals"
        ) == ",".join(v.encode().hex() for v in values)
    finally:
        database.query(f"DROP OWNED BY \"{role}\"; DROP ROLE IF EXISTS \"{role}\"")


STRINGS = st.text(
    st.one_of(st.sampled_from("\\'āé日本ｱ€\n!"),
              st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    max_size=60,
)
_counters: dict[object, itertools.count[int]] = {}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=STRINGS, encoding=st.sampled_from(ENCODINGS))
def test_any_text_round_trips_under_any_database_encoding(
    db_project: DbProject, value: str, encoding: str
) -> None:
    from spawn_db.config import Overrides, load_config
    from spawn_db.migrate.apply import apply

    database = db_project.database
    n = next(_counters.setdefault(db_project.root, itertools.count(1)))
    if n == 1:
        database.query("CREATE TABLE vals (id int PRIMARY KEY, v text NOT NULL)")
    database.query(f'ALTER DATABASE "{database.name}" SET client_encoding = {encoding!r}')
    name = db_project.add_migration(
        f"value-{n}", f"INSERT INTO vals VALUES ({n}, {{{{ variables.v }}}});\n")
    config = load_config(Overrides(config_file=str(db_project.config_path)))

    apply(config, name, variables={"v": value})

    stored = database.query(
        f"SELECT encode(convert_to(v, 'UTF8'), 'hex') FROM vals WHERE id = {n}")
    assert stored == value.encode("utf-8").hex()
