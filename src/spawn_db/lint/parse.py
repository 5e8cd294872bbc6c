"""Each statement of a rendered script through PostgreSQL's own parser (``pglast``).

``pglast`` wraps libpg_query, the parser of the PostgreSQL server itself, so a
statement it accepts is one the server's grammar accepts (names, types and
permissions are only known to a database: that is what ``--db`` would add).
Offsets are characters of the rendered text, the unit ``SourceMap`` uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from spawn_db.lint.split import split

_AT_INDEX = re.compile(r", at index \d+$")


@dataclass(frozen=True)
class Statement:
    """One parsed statement: its ``pglast.ast`` node and where it starts."""

    node: Any
    start: int


@dataclass(frozen=True)
class SyntaxProblem:
    """A statement PostgreSQL's parser refuses: the parser's message and the offset of the
    token it stopped at."""

    message: str
    offset: int


@dataclass(frozen=True)
class ParsedScript:
    """The script's statements in order, the statements that failed to parse, the
    meta-commands (psql's, not SQL) and the statements left unparsed because they use
    psql ``:variables``."""

    statements: tuple[Statement, ...]
    problems: tuple[SyntaxProblem, ...]
    meta_commands: tuple[str, ...] = ()
    unparsed: tuple[int, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """One piece of ``split`` as text: where it starts (characters) and what it says."""

    start: int
    text: str
    meta: bool
    uses_variables: bool
    reads_stdin: bool = False


def chunks(text: str) -> list[Chunk]:
    """``split``'s pieces of ``text`` with character offsets (split works on UTF-8 bytes)."""
    data = text.encode("utf-8")
    found: list[Chunk] = []
    done_bytes = done_chars = 0
    for piece in split(data):
        done_chars += len(data[done_bytes:piece.start].decode("utf-8", "replace"))
        sql = data[piece.start:piece.end].decode("utf-8", "replace")
        found.append(Chunk(done_chars, sql, piece.meta, piece.uses_variables,
                           piece.reads_stdin))
        done_chars += len(sql)
        done_bytes = piece.end
    return found


def parse_script(text: str) -> ParsedScript:
    """Split ``text`` as psql would and parse every SQL statement."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    statements: list[Statement] = []
    problems: list[SyntaxProblem] = []
    meta: list[str] = []
    unparsed: list[int] = []
    for chunk in chunks(text):
        if chunk.meta:
            meta.append(chunk.text)
        elif chunk.uses_variables:
            unparsed.append(chunk.start)
        else:
            try:
                raws = parse_sql(chunk.text)
            except ParseError as exc:
                index = exc.args[1] if len(exc.args) > 1 else None
                if index is None:  # "at end of input" has no position: the end
                    index = len(chunk.text)
                message = _AT_INDEX.sub("", str(exc.args[0]))
                problems.append(SyntaxProblem(message, chunk.start + max(0, index)))
            else:
                statements += [Statement(raw.stmt, chunk.start + (raw.stmt_location or 0))
                               for raw in raws]
    return ParsedScript(tuple(statements), tuple(problems), tuple(meta), tuple(unparsed))
