"""Quoting follows libpq's PQescapeLiteral / PQescapeIdentifier rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spawn_db.errors import EscapeError
from spawn_db.escape import Identifier, Literal, escape_identifier, escape_literal

text_without_nul = st.text(alphabet=st.characters(blacklist_characters="\x00"))


def unquote_literal(sql: str) -> str:
    """Read a literal back the way PostgreSQL's scanner does (independent of the code)."""
    escaped = sql.startswith(" E'")
    body = sql[3:-1] if escaped else sql[1:-1]
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "'":
            assert body[i + 1] == "'", f"lone quote at {i} in {sql!r}"
            out.append("'")
            i += 2
        elif ch == "\\" and escaped:
            assert body[i + 1] == "\\", f"lone backslash at {i} in {sql!r}"
            out.append("\\")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@given(text_without_nul)
def test_literal_round_trips_by_libpq_rules(text: str) -> None:
    sql = escape_literal(text)
    assert sql.endswith("'")
    assert sql.startswith(" E'") == ("\\" in text)
    if "\\" not in text:
        assert sql.startswith("'")
    assert unquote_literal(sql) == text


@given(text_without_nul)
def test_identifier_round_trips_by_libpq_rules(text: str) -> None:
    sql = escape_identifier(text)
    assert sql.startswith('"') and sql.endswith('"')
    body = sql[1:-1]
    assert body.replace('""', "") .count('"') == 0
    assert body.replace('""', '"') == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "''"),
        ("plain", "'plain'"),
        ("it's", "'it''s'"),
        ("a\\b", " E'a\\\\b'"),
        ("it's a\\b", " E'it''s a\\\\b'"),
        ("ünïcødé ✓", "'ünïcødé ✓'"),
        ("line\nbreak", "'line\nbreak'"),
    ],
)
def test_literal_examples(text: str, expected: str) -> None:
    assert escape_literal(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("users", '"users"'), ('we"ird', '"we""ird"'), ("a\\b", '"a\\b"'), ("My Table", '"My Table"')],
)
def test_identifier_examples(text: str, expected: str) -> None:
    assert escape_identifier(text) == expected


def test_nul_is_refused_with_a_clear_error() -> None:
    with pytest.raises(EscapeError, match="cannot contain a NUL"):
        escape_literal("a\x00b")
    with pytest.raises(EscapeError, match="cannot contain a NUL"):
        escape_identifier("a\x00b")


def test_typed_wrappers_render_their_sql() -> None:
    assert str(Literal.of("x'y")) == "'x''y'"
    assert str(Identifier.of("_spawn", "migration")) == '"_spawn"."migration"'
