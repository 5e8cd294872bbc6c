"""The language server's incremental split gives exactly ``lint.split.split``'s pieces
whatever the edit, and its parse cache the same statements and errors as
``lint.parse.parse_script``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.lint.parse import parse_script
from spawn_db.lint.split import split
from spawn_db.lsp.analysis import parse_cached, split_again

FRAGMENTS = [
    "SELECT 1;", "\n", " ", "INSERT INTO t VALUES ('a;b', $$x;$$);", "'", "$$", "(", ")",
    ";", "-- comment;\n", "/* block; */", "/*", "*/", "\\echo hi\n", "\\set x 1\n",
    "SELECT :x;", "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END;",
    "COPY t FROM STDIN;\n1\t2\n\\.\n", "SELECT 'é😀';", "E'\\\\';", "\"q;id\"", "SELEC oops;",
    "BEGIN;", "COMMIT;", "CASE", "END",
]


@settings(max_examples=300, deadline=None)
@given(old=st.lists(st.sampled_from(FRAGMENTS), max_size=40),
       edits=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3),
                                st.lists(st.sampled_from(FRAGMENTS), max_size=3)),
                      min_size=1, max_size=4))
def test_split_again_is_split(old: list[str], edits: list[tuple[int, int, list[str]]]) -> None:
    text = "".join(old)
    key = f"test-{id(old)}"
    assert split_again(key, text.encode()) == split(text.encode())
    parts = list(old)
    for at, removed, inserted in edits:
        at = min(at, len(parts))
        parts[at:at + removed] = inserted
        text = "".join(parts)
        assert split_again(key, text.encode()) == split(text.encode()), text


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=30))
def test_parse_cached_is_parse_script(parts: list[str]) -> None:
    text = "".join(parts)
    statements, syntax = parse_cached(text, key="test-parse")
    parsed = parse_script(text)
    starts = [piece.start for piece in split(text.encode())]
    if starts == sorted(starts):
        assert [(s.start, s.node) for s in statements] == [
            (s.start, s.node) for s in parsed.statements]
        assert syntax == [(p.offset, p.message) for p in parsed.problems]
    else:  # a meta-command inside an unfinished statement: lint counts from its end
        assert [s.node for s in statements] == [s.node for s in parsed.statements]
        assert [m for _, m in syntax] == [p.message for p in parsed.problems]


def test_an_error_after_a_meta_command_inside_a_statement_is_at_its_character() -> None:
    assert parse_cached("SELECT 'é', (\\echo hi\n") == (
        [], [(13, 'syntax error at or near "\\"')])
