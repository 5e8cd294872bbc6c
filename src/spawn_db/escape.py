"""Quoting of literals and identifiers by libpq's rules.

Every value Spawn puts into SQL, whether it comes from a template or from
Spawn's own bookkeeping, passes through this module, so a reviewer can check
injection safety in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from spawn_db.errors import EscapeError


def _refuse_nul(text: str, what: str) -> None:
    if "\x00" in text:
        raise EscapeError(
            f"cannot quote {what} {text[:40]!r}: PostgreSQL text cannot contain a NUL "
            "character; remove it or pass the value as bytes"
        )


def escape_literal(text: str) -> str:
    """Quote ``text`` as a string literal exactly like libpq's ``PQescapeLiteral``.

    Quotes are doubled; when the text contains a backslash, backslashes are
    doubled too and the literal gets the `` E`` prefix, so the result means the
    same whatever ``standard_conforming_strings`` is set to.
    """
    _refuse_nul(text, "literal")
    body = text.replace("'", "''")
    if "\\" in text:
        return " E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"


def ascii_literal(text: str) -> str:
    """``text`` as an SQL expression in pure ASCII that means the same in any session.

    PostgreSQL converts a whole message from the client encoding and lexes it before it
    runs any statement in it, so a message that resets the session after a migration
    and writes a history row is read with whatever ``client_encoding`` and
    ``standard_conforming_strings`` the migration left. ASCII text is an
    ``escape_literal`` (its ``E''`` form when it has a backslash); anything else is its
    UTF-8 bytes in hex, converted by the server as a UTF-8 literal would be.
    """
    if text.isascii():
        return escape_literal(text)
    _refuse_nul(text, "literal")
    return f"convert_from(decode('{text.encode('utf-8').hex()}', 'hex'), 'UTF8')"


def ascii_bytea(data: bytes) -> str:
    """A ``bytea`` value that means the same in any session (see ``ascii_literal``):
    ``'\\x…'`` would be an escape string with ``standard_conforming_strings`` off."""
    return f"decode('{data.hex()}', 'hex')"


def escape_identifier(text: str) -> str:
    """Quote ``text`` as an identifier exactly like libpq's ``PQescapeIdentifier``."""
    _refuse_nul(text, "identifier")
    return '"' + text.replace('"', '""') + '"'


def escape_bytea(data: bytes) -> str:
    """A ``bytea`` literal in hex format."""
    return "'\\x" + data.hex() + "'::bytea"


@dataclass(frozen=True)
class Literal:
    """A value already quoted as an SQL literal; ``str()`` gives the SQL."""

    sql: str

    @classmethod
    def of(cls, value: str) -> Literal:
        return cls(escape_literal(value))

    def __str__(self) -> str:
        return self.sql


@dataclass(frozen=True)
class Identifier:
    """One or more identifiers joined with dots, each quoted; ``str()`` gives the SQL."""

    sql: str

    @classmethod
    def of(cls, *parts: str) -> Identifier:
        return cls(".".join(escape_identifier(p) for p in parts))

    def __str__(self) -> str:
        return self.sql
