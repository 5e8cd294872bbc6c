"""What Jinja renders for text that holds no template syntax, without loading Jinja.

Most components and many migrations are plain SQL. Compiling them costs more
than running a small migration, so the loader and ``apply`` both serve them
through this one function, which reproduces Jinja's two changes to such text.
"""

from __future__ import annotations

import re

_SYNTAX = re.compile(r"\{[{%#]")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def plain_output(text: str) -> str | None:
    """Jinja's output for ``text`` (newlines normalised to ``\\n``, one trailing newline
    dropped), or None when ``text`` has template syntax and must be compiled."""
    if _SYNTAX.search(text):
        return None
    lines = _NEWLINES.split(text)
    if lines[-1] == "":
        del lines[-1]
    return "\n".join(lines)
