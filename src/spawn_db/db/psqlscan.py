"""What psql will make of a rendered migration, decided before it is sent.

Migrations share one psql session when that cannot change what they do, and
that is only certain for a script psql would read as plain SQL: no
meta-command, no ``:variable``, no text whose quoting depends on
``standard_conforming_strings``, no ``COPY ... FROM STDIN`` data, and an end
that leaves psql's lexer outside any quote or comment with an empty query
buffer (else what spawn sends next would be read as part of the migration).
Everything else runs in a psql of its own, exactly as a fresh session would.

The scanner follows psql's lexer (``psqlscan.l``): quotes, ``E''`` strings,
dollar quotes, nested comments, parentheses, and the ``BEGIN ... END`` depth
psql tracks inside ``CREATE [OR REPLACE] FUNCTION|PROCEDURE`` bodies. When in
doubt it says "isolate", which is always correct, only slower.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    rb"""
    (?P<ws>[ \t\n\r\f\v]+)
  | (?P<line>--[^\n\r]*)
  | (?P<block>/\*)
  | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]*)?)
  | (?P<estr>[eE]')
  | (?P<ident>[A-Za-z_\x80-\xff][A-Za-z_0-9$\x80-\xff]*)
  | (?P<str>')
  | (?P<qid>")
  | (?P<dollar>\$(?:[A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*)?\$)
  | (?P<backslash>\\)
  | (?P<colon>::|:=|:['"{A-Za-z_0-9\x80-\xff]|:)
  | (?P<semi>;)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<other>[^ \t\n\r\f\v'"$\\:;()/\-.A-Za-z_0-9\x80-\xff]+|.)
    """,
    re.X | re.S,
)
# A run of tokens that change nothing the scanner tracks (whitespace, line comments,
# numbers, identifiers, operators and punctuation); it stops before anything that
# can open a quote or comment, end a statement, nest, or be psql syntax. The
# identifier branch refuses a lone e/E before a quote: that is an E'' string.
_PLAIN_RUN = re.compile(
    rb"""(?:
        [ \t\n\r\f\v]+
      | --[^\n\r]*
      | (?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]*)?
      | (?![eE]')[A-Za-z_\x80-\xff][A-Za-z_0-9$\x80-\xff]*
      | [^ \t\n\r\f\v'"$\\:;()/\-.A-Za-z_0-9\x80-\xff]+
      | \.(?![0-9]) | -(?!-) | /(?!\*)
    )+""",
    re.X,
)
_STRING_BODY = re.compile(rb"(?:[^']++|'')*+'")
_ESTRING_BODY = re.compile(rb"(?:[^'\\]++|''|\\.)*+'", re.S)
_QUOTED_IDENT_BODY = re.compile(rb'(?:[^"]++|"")*+"')
_COMMENT_EDGE = re.compile(rb"/\*|\*/")

_COPY_STDIN = re.compile(rb"stdin", re.I)
_SESSION_STICKY = re.compile(
    rb"\balter\s+(?:role|user|database|system)\b|\bload\s*'|\bdblink|\bpl(?:perl|python|tcl|v8)",
    re.I,
)
_CREATE_WORDS = (b"create", b"function", b"procedure", b"or", b"replace")


@dataclass(frozen=True)
class ScriptShape:
    """The verdict on one script: can it share a session, and must the session end after it."""

    shareable: bool
    reason: str = ""
    restart_after: bool = False

    @property
    def clean_end(self) -> bool:
        return self.reason not in _UNCLEAN_END_REASONS


UNTERMINATED = "it ends inside a quote, dollar quote or comment"
INCOMPLETE = "its last statement has no terminating semicolon"
_UNCLEAN_END_REASONS = (UNTERMINATED, INCOMPLETE)


def analyze(text: bytes) -> ScriptShape:
    """Decide whether ``text`` (the bytes psql will read) can share a session.

    Bytes, as psql lexes them: every byte from 0x80 up is an identifier
    character, whatever the encoding.
    """
    if _COPY_STDIN.search(text):
        return ScriptShape(False, "it may read COPY data from standard input")
    reason = _Scanner(text).run()
    sticky = bool(_SESSION_STICKY.search(text))
    return ScriptShape(reason == "", reason, restart_after=sticky)


class _Scanner:
    """One pass over the script with psql's lexer states; ``run`` returns why not shareable."""

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.paren_depth = 0
        self.begin_depth = 0
        self.identifier_count = 0
        self.identifiers = [0, 0, 0, 0]
        self.in_routine = False
        self.buffer_empty = True

    def run(self) -> str:
        text, pos, end = self.text, 0, len(self.text)
        while pos < end:
            if self.identifier_count >= 4 and not self.in_routine:
                run = _PLAIN_RUN.match(text, pos)
                if run is not None:
                    self.buffer_empty = False
                    pos = run.end()
                    if pos >= end:
                        break
            match = _TOKEN.match(text, pos)
            assert match is not None
            kind = match.lastgroup
            pos = match.end()
            if kind in ("ws", "line"):
                continue
            if kind == "backslash":
                return "it contains psql meta-commands"
            if kind == "colon" and _is_variable(match.group()):
                return "it interpolates psql variables"
            if kind == "block":
                pos = self._skip_comment(pos)
            elif kind in ("str", "estr", "qid", "dollar"):
                new_pos, reason = self._skip_quoted(kind, match.group(), pos)
                if reason:
                    return reason
                pos = new_pos
            if pos < 0:
                return UNTERMINATED
            if kind == "block":
                continue
            self.buffer_empty = False
            if kind == "ident":
                self._identifier(match.group())
            elif kind == "open":
                self.paren_depth += 1
            elif kind == "close" and self.paren_depth > 0:
                self.paren_depth -= 1
            elif kind == "semi" and self.paren_depth == 0 and self.begin_depth == 0:
                self.buffer_empty = True
                self.identifier_count = 0
                self.in_routine = False
        return "" if self.buffer_empty else INCOMPLETE

    def _skip_comment(self, pos: int) -> int:
        depth = 1
        while depth:
            edge = _COMMENT_EDGE.search(self.text, pos)
            if edge is None:
                return -1
            depth += 1 if edge.group() == b"/*" else -1
            pos = edge.end()
        return pos

    def _skip_quoted(self, kind: str, opener: bytes, pos: int) -> tuple[int, str]:
        text = self.text
        if kind == "dollar":
            close = text.find(opener, pos)
            return (-1, "") if close < 0 else (close + len(opener), "")
        body = {"str": _STRING_BODY, "estr": _ESTRING_BODY, "qid": _QUOTED_IDENT_BODY}[kind]
        match = body.match(text, pos)
        if match is None:
            return -1, ""
        if kind == "str" and b"\\" in match.group():
            return -1, "a string literal contains a backslash (its meaning depends on " \
                "standard_conforming_strings)"
        return match.end(), ""

    def _identifier(self, word: bytes) -> None:
        """psql's heuristic for ``BEGIN ATOMIC ... END`` bodies, transcribed from psqlscan.l.

        Only the first four identifiers of a statement decide whether it is
        ``CREATE [OR REPLACE] FUNCTION|PROCEDURE``; after them, only such a
        statement needs its identifiers looked at.
        """
        lower = word.lower()
        if self.identifier_count == 0:
            self.identifiers = [0, 0, 0, 0]
        if self.identifier_count < 4:
            if lower in _CREATE_WORDS:
                self.identifiers[self.identifier_count] = lower[0]
            ids = self.identifiers
            self.in_routine = ids[0] == ord("c") and (
                ids[1] in _F_P or (ids[1] == ord("o") and ids[2] == ord("r") and ids[3] in _F_P)
            )
        self.identifier_count += 1
        if not self.in_routine or self.paren_depth != 0:
            return
        if lower == b"begin" or (lower == b"case" and self.begin_depth >= 1):
            self.begin_depth += 1
        elif lower == b"end" and self.begin_depth > 0:
            self.begin_depth -= 1


_F_P = (ord("f"), ord("p"))


def _is_variable(token: bytes) -> bool:
    return token not in (b"::", b":=", b":")


_VARIABLE_REST = re.compile(rb"[A-Za-z0-9_\x80-\xff]+['\"]")


def unsubstituted_lines(text: bytes, needle: bytes) -> list[int]:
    """The line numbers where ``needle`` (a ``:'variable'`` reference) stands inside a
    quoted or dollar-quoted body or a comment, where psql leaves it as written."""
    spans = _protected_spans(text)
    found, start = [], text.find(needle)
    while start >= 0:
        if any(begin <= start < end for begin, end in spans):
            found.append(text.count(b"\n", 0, start) + 1)
        start = text.find(needle, start + 1)
    return found


def _protected_spans(text: bytes) -> list[tuple[int, int]]:
    """Where psql's lexer is inside a quote, dollar quote or comment: (start, end) pairs."""
    scanner = _Scanner(text)
    spans: list[tuple[int, int]] = []
    pos, end = 0, len(text)
    while pos < end:
        match = _TOKEN.match(text, pos)
        assert match is not None
        kind, begin, pos = match.lastgroup, match.start(), match.end()
        if kind == "colon" and match.group() in (b":'", b':"'):
            closing = _VARIABLE_REST.match(text, pos)
            pos = closing.end() if closing is not None and closing.group()[-1:] == \
                match.group()[1:] else pos
            continue
        if kind == "line":
            spans.append((begin, pos))
        elif kind == "block":
            pos = scanner._skip_comment(pos)
        elif kind == "str":  # _skip_quoted refuses backslashes, which matter not here
            body = _STRING_BODY.match(text, pos)
            pos = -1 if body is None else body.end()
        elif kind in ("estr", "qid", "dollar"):
            pos = scanner._skip_quoted(kind, match.group(), pos)[0]
        else:
            continue
        if pos < 0:
            spans.append((begin, end))
            break
        if kind != "line":
            spans.append((begin, pos))
    return spans
