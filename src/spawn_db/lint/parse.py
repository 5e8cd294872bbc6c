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


def parse_script(text: str) -> ParsedScript:
    """Split ``text`` as psql would and parse every SQL statement."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    data = text.encode("utf-8")
    statements: list[Statement] = []
    problems: list[SyntaxProblem] = []
    meta: list[str] = []
    unparsed: list[int] = []
    done_bytes = done_chars = 0
    for piece in split(data):
        done_chars += len(data[done_bytes:piece.start].decode("utf-8", "replace"))
        done_bytes = piece.start
        sql = data[piece.start:piece.end].decode("utf-8", "replace")
        if piece.meta:
            meta.append(sql)
        elif piece.uses_variables:
            unparsed.append(done_chars)
        else:
            try:
                raws = parse_sql(sql)
            except ParseError as exc:
                index = exc.args[1] if len(exc.args) > 1 else 0
                message = _AT_INDEX.sub("", str(exc.args[0]))
                problems.append(SyntaxProblem(message, done_chars + max(0, index)))
            else:
                statements += [Statement(raw.stmt, done_chars + (raw.stmt_location or 0))
                               for raw in raws]
        done_chars += len(sql)
        done_bytes = piece.end
    return ParsedScript(tuple(statements), tuple(problems), tuple(meta), tuple(unparsed))
