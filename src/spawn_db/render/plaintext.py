"""What Jinja renders for text that holds no template syntax, without loading Jinja.

Most components and many migrations are plain SQL. Compiling them costs more
than running a small migration, so the loader and ``apply`` both serve them
through this one function, which reproduces what the Jinja environment does
to such text: drop a leading byte order mark and one trailing line break, and
keep every other byte (see ``template.SqlEnvironment._tokenize``).
"""

from __future__ import annotations

import re

BOM = "\ufeff"
_SYNTAX = re.compile(r"\{[{%#]")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def plain_output(text: str) -> str | None:
    """The rendered output of ``text`` (no BOM, one trailing line break dropped, line
    breaks as the file's first one), or None when ``text`` has template syntax."""
    if _SYNTAX.search(text):
        return None
    text = without_bom(text)
    if "\r" not in text:
        return text[:-1] if text.endswith("\n") else text
    lines = _NEWLINES.split(text)
    if lines[-1] == "":
        del lines[-1]
    return newline_of(text).join(lines)


def without_bom(text: str) -> str:
    """``text`` without a leading UTF-8 byte order mark, which is never SQL.

    Editors on Windows add one; psql would send it as part of the first
    statement, an invisible syntax error. Only the very first character is
    dropped: a BOM anywhere else is data.
    """
    return text[1:] if text.startswith(BOM) else text


def newline_of(text: str) -> str:
    """The first line break of ``text`` (``\\r\\n``, ``\\r`` or ``\\n``); ``\\n`` if none.

    Jinja writes every line break of a template as one sequence; using the
    file's own keeps a CRLF file, and the CR bytes inside its string literals,
    byte for byte. A file that mixes kinds gets all of them as its first.
    """
    found = _NEWLINES.search(text)
    return found.group() if found else "\n"
