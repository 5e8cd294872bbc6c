"""The psql scanner that decides which migrations may share a session: known cases, and a
property checked against the real psql."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spawn_db.db.psqlscan import INCOMPLETE, UNTERMINATED, analyze
from tests.conftest import TestDatabase

SHAREABLE = [
    "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n",
    "SELECT 1; -- trailing comment without newline",
    "SELECT 1; /* trailing block comment */",
    "SELECT $$ a ' b $$; SELECT $tag$ $$ ' $tag$;",
    "SELECT E'it\\'s', 'a''b', \"we\"\"ird\";",
    "SELECT x::text, a$b$ FROM t;",
    "/* nested /* comments */ still */ SELECT 1;",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
    "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC "
    "SELECT CASE WHEN true THEN 1 END; END;",
    "DO $$ BEGIN RAISE NOTICE ':not_a_variable \\ ;'; END $$;",
    "SELECT 1e'x';",
    "SELECT 'é', \"ñame\" FROM t;",
]
NOT_SHAREABLE = [
    ("SELECT 1", INCOMPLETE),
    ("SELECT (1;", INCOMPLETE),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;", INCOMPLETE),
    ("SELECT 'open;\n", UNTERMINATED),
    ("SELECT $$ open;", UNTERMINATED),
    ("SELECT 1; /* open", UNTERMINATED),
    ("SELECT 1; /* a /* b */", UNTERMINATED),
    ('SELECT "open;', UNTERMINATED),
    ("\\set x 1\n", "it contains psql meta-commands"),
    ("SELECT 1; \\gset\n", "it contains psql meta-commands"),
    ("SELECT :x;", "it interpolates psql variables"),
    ("SELECT :'x';", "it interpolates psql variables"),
    ("SELECT a[1:2] FROM t;", "it interpolates psql variables"),
    ("SELECT 'C:\\path';", "a string literal contains a backslash (its meaning depends on "
                           "standard_conforming_strings)"),
    ("COPY t FROM STDIN;\n1\n\\.\n", "it may read COPY data from standard input"),
]


@pytest.mark.parametrize("text", SHAREABLE)
def test_plain_sql_that_ends_cleanly_is_shareable(text: str) -> None:
    shape = analyze(text.encode())
    assert shape.shareable, shape.reason
    assert shape.clean_end


@pytest.mark.parametrize(("text", "reason"), NOT_SHAREABLE)
def test_anything_else_runs_in_its_own_psql(text: str, reason: str) -> None:
    shape = analyze(text.encode())
    assert not shape.shareable
    assert shape.reason == reason


@pytest.mark.parametrize("text", [
    "ALTER ROLE app SET search_path = app;", "ALTER DATABASE db SET timezone = 'UTC';",
    "LOAD 'auto_explain';", "CREATE EXTENSION plpython3u;",
])
def test_session_sticky_statements_end_the_shared_session(text: str) -> None:
    assert analyze(text.encode()).restart_after


TOKENS = st.sampled_from([
    "'", '"', "$$", "$a$", "/*", "*/", "--", "\n", " ", "E'", "\\\\", ";", "(", ")", "x", "1",
    "create function f() returns int language sql ", "begin", "end", "case", "atomic",
    "select ", "::", "e", "é",
])


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(TOKENS, max_size=12))
@example(tokens=["begin", ";", "begin", "$$", ";"])
def test_shareable_verdict_agrees_with_psql(database: TestDatabase, tokens: list[str]) -> None:
    """When the scanner says shareable, psql must read what follows as fresh input: a
    meta-command runs and the next statement runs alone.

    The check is about psql's reading, not the server's state: ``begin;begin$$;``
    ends cleanly but would leave an aborted transaction open, where any probe fails.
    ``ON_ERROR_ROLLBACK`` makes psql roll an error inside a transaction back to a
    savepoint, so the transaction stays usable and the probe still tells whether it
    ran alone (a probe glued to an unfinished statement fails, or never runs).
    """
    text = "".join(tokens)
    if not analyze(text.encode()).shareable:
        return
    out, detail = _psql_probe(database, text)
    assert "spawn-scan-mark" in out, (text, *detail)
    assert out[-1] == "424", (text, *detail)


def _psql_probe(database: TestDatabase, text: str) -> tuple[list[str], tuple[bytes, bytes]]:
    """psql's stdout lines for ``text`` followed by a meta-command and a probe statement."""
    script = (f"\\set ON_ERROR_STOP off\n\\set ON_ERROR_ROLLBACK on\n{text}\n"
              "\\echo spawn-scan-mark\nSELECT 420 + 4 AS spawn_probe;\n")
    done = subprocess.run([*database.psql_argv(), "-At"], input=script.encode(),
                          capture_output=True, timeout=30, check=False)
    return done.stdout.decode("utf-8", "replace").splitlines(), (done.stdout, done.stderr)


@pytest.mark.parametrize("text", [
    "SELECT 'open", "SELECT 1 /* open", "SELECT (1", "SELECT 1", "BEGIN; SELECT 1",
    "BEGIN; SELECT (1;",
])
def test_the_psql_oracle_sees_an_unclean_end(database: TestDatabase, text: str) -> None:
    out, _ = _psql_probe(database, text)
    assert "spawn-scan-mark" not in out or out[-1:] != ["424"]


@pytest.mark.parametrize("text", ["begin;begin$$;", "BEGIN; SELECT 1/0; COMMIT;", "BEGIN; x;"])
def test_the_psql_oracle_survives_an_aborted_transaction(database: TestDatabase, text: str) -> None:
    assert analyze(text.encode()).shareable
    out, detail = _psql_probe(database, text)
    assert out[-2:] == ["spawn-scan-mark", "424"], detail
