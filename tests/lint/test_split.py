"""Statements cut where psql cuts them: quotes, comments, dollar quotes and BEGIN ATOMIC
bodies keep their semicolons; meta-commands are not SQL."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spawn_db.lint.parse import parse_script
from spawn_db.lint.split import split

STATEMENTS = [
    "SELECT 'a;b'", "SELECT $$;$$", "SELECT $q$ ; $q$", "SELECT 1 /* ; /* nested ; */ */",
    'SELECT 1 AS ";"', "SELECT E'\\';'",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
    "SELECT (1\n;\n)",
]


@given(st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=10),
       st.sampled_from([";\n", "; -- x;\n", ";\n\\echo a;b\n"]))
def test_each_statement_is_one_piece(statements: list[str], separator: str) -> None:
    text = separator.join(statements) + ";"
    pieces = [p for p in split(text.encode()) if not p.meta]
    sql = [text.encode()[p.start:p.end].decode() for p in pieces]
    expected = [s for s in statements if s != "SELECT (1\n;\n)"]
    if len(expected) == len(statements):
        assert sql == [s + ";" for s in statements]
    parsed = parse_script(text)
    broken = statements.count("SELECT (1\n;\n)")
    assert len(parsed.statements) == len(statements) - broken


def test_meta_commands_and_variables() -> None:
    text = "\\set x 1\nSELECT :x;\nSELECT 2;\n"
    pieces = split(text.encode())
    assert [(p.meta, p.uses_variables) for p in pieces] == [
        (True, False), (False, True), (False, False)]
    parsed = parse_script(text)
    assert parsed.meta_commands == ("\\set x 1",)
    assert parsed.unparsed == (9,)
    assert len(parsed.statements) == 1


def test_copy_data_is_not_sql() -> None:
    text = "COPY t (a, b) FROM stdin;\n1\tx;y\n2\t'\n\\.\nSELECT 2;\n"
    pieces = split(text.encode())
    assert [(text[p.start:p.end], p.reads_stdin) for p in pieces] == [
        ("COPY t (a, b) FROM stdin;", True), ("SELECT 2;", False)]
    parsed = parse_script(text)
    assert (len(parsed.statements), parsed.problems) == (2, ())
