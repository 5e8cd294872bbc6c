"""Cut a rendered script into the statements psql would send, with their offsets.

The tokens, quote bodies and the ``BEGIN ATOMIC ... END`` heuristic are psql's,
taken from ``db.psqlscan`` (the scanner apply trusts to share sessions), so a
statement here is exactly what psql would send. A backslash meta-command runs
to the end of its line and is not SQL: it is left out of the statements (and
listed, so a rule can tell ``\\set`` from SQL). A statement that uses a psql
``:variable`` cannot be parsed without psql's values; it is marked as such.
``COPY ... FROM STDIN`` is followed by data up to a ``\\.`` line, which is not SQL
either: it is skipped, and the statement marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spawn_db.db.psqlscan import _TOKEN, _is_variable, _Scanner

_META_END = re.compile(rb"[\n\r]")
_COPY_FROM_STDIN = re.compile(rb"\s*copy\b.*\bfrom\s+stdin\b", re.I | re.S)
_COPY_DATA_END = re.compile(rb"^\\\.[ \t]*\r?$", re.M)


@dataclass(frozen=True)
class Piece:
    """One statement (or meta-command) of the script: byte offsets ``[start, end)`` in the
    UTF-8 text, the end including its semicolon when it has one."""

    start: int
    end: int
    meta: bool = False
    uses_variables: bool = False
    reads_stdin: bool = False


def split(text: bytes) -> list[Piece]:
    """The statements and meta-commands of ``text`` in order; blank and comment-only text
    between them is dropped. An unterminated last statement ends at the end of the text."""
    return _Splitter(text).pieces()


class _Splitter(_Scanner):
    def pieces(self) -> list[Piece]:
        text, pos, end = self.text, 0, len(self.text)
        found: list[Piece] = []
        start: int | None = None
        variables = False
        while pos < end:
            match = _TOKEN.match(text, pos)
            assert match is not None
            kind, token_start, pos = match.lastgroup, match.start(), match.end()
            if kind in ("ws", "line"):
                continue
            if kind == "backslash":
                line_end = _META_END.search(text, pos)
                pos = line_end.start() if line_end else end
                found.append(Piece(token_start, pos, meta=True))
                continue
            if kind == "block":
                pos = self._skip_comment(pos)
                if pos < 0:
                    pos = end
                continue
            if start is None:
                start = token_start
            if kind == "colon" and _is_variable(match.group()):
                variables = True
            elif kind in ("str", "estr", "qid", "dollar"):
                new_pos, _reason = self._skip_quoted(kind, match.group(), pos)
                pos = end if new_pos < 0 else new_pos
            elif kind == "ident":
                self._identifier(match.group())
            elif kind == "open":
                self.paren_depth += 1
            elif kind == "close" and self.paren_depth > 0:
                self.paren_depth -= 1
            elif kind == "semi" and self.paren_depth == 0 and self.begin_depth == 0:
                stdin = bool(_COPY_FROM_STDIN.match(text, start, pos))
                found.append(Piece(start, pos, uses_variables=variables, reads_stdin=stdin))
                if stdin:
                    data_end = _COPY_DATA_END.search(text, pos)
                    pos = data_end.end() if data_end else end
                start, variables = None, False
                self.identifier_count = 0
                self.in_routine = False
        if start is not None:
            found.append(Piece(start, end, uses_variables=variables))
        return found
