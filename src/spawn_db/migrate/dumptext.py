"""The text of a schema dump: cleaned for psql streaming, and turned into a template.

``clean_dump`` removes what a baseline or an import must not carry: pg_dump's
``\\restrict``/``\\unrestrict`` lines (pg_dump 17.6+; an older psql refuses them, and the
key is random per dump), and the header's session settings (``SET statement_timeout = 0``,
``search_path`` emptied, ``transaction_timeout`` which PostgreSQL 16 and older do not
know...), which would leak into the migrations apply runs after it in the same psql
session. ``check_function_bodies`` is the one setting the dump needs (a function may be
created before what its body uses): it is kept, and reset at the end.

``sentinel_variables`` and ``template_of`` put the variables back: every string value is
replaced by a sentinel (``spawnvar<random>_<n>_``: lowercase letters, digits and
underscores, so PostgreSQL prints it unquoted and unchanged wherever the value went,
and random per run, so it cannot be text the user wrote), and each token of the dump
that holds one becomes a template expression that renders the same SQL for any value: a
string literal ``'...'`` the value's literal, an identifier ``{{ ... | escape_identifier
}}``, a comment plain text. What is left of the dump is escaped where it would read as
template syntax.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from spawn_db.errors import SchemaDumpFailed

CHECK_BODIES = "SET check_function_bodies = false;"
RESTRICT = re.compile(r"^\\(un)?restrict\b.*$|^-- Dumped (from database|by pg_dump) version ")
HEADER_SETTING = re.compile(
    r"^(SET [a-z_]+ = .*;|SELECT pg_catalog\.set_config\('search_path', '', false\);)$")
TOKEN = re.compile(
    r"""--[^\n]*                        # a line comment
      | /\*.*?\*/                        # a block comment
      | '(?:[^']|'')*'                   # a string literal
      | "(?:[^"]|"")*"                   # a quoted identifier
      | [A-Za-z_][A-Za-z0-9_$]*          # a word
      | [^'"A-Za-z_\-/]+ | .             # anything else
    """, re.VERBOSE | re.DOTALL)
JINJA_OPENING = re.compile(r"\{(?=[{%#])")
DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")
COPY_START = re.compile(r"^COPY .* FROM stdin;$")
COPY_TAG = "COPY"


# -- cleaning ---------------------------------------------------------------------------------


def clean_dump(text: str) -> str:
    """``text`` without ``\\restrict`` lines, header settings and the versions of the
    server and pg_dump (the same migrations give the same baseline on every machine);
    blank runs collapsed. Lines inside a dollar-quoted body or COPY data are kept as they
    are: they are a function's source text or rows, not the dump's own lines."""
    kept: list[str] = []
    bodies = False
    quoted: list[str | None] = [None]
    for line in text.splitlines():
        inside = _inside(quoted, line)
        if inside:
            kept.append(line)
            continue
        if RESTRICT.match(line):
            continue
        if HEADER_SETTING.match(line):
            bodies = bodies or line == CHECK_BODIES
            continue
        if not line.strip() and (not kept or not kept[-1].strip()):
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    if bodies:
        kept = [CHECK_BODIES, "", *kept, "", "RESET check_function_bodies;"]
    return "\n".join(kept) + "\n"


def _inside(quoted: list[str | None], line: str) -> bool:
    """Whether ``line`` began inside a dollar quote or COPY data; ``quoted[0]`` carries the
    open tag (or ``COPY``) from line to line."""
    began = quoted[0] is not None
    if quoted[0] == COPY_TAG:
        if line == "\\.":
            quoted[0] = None
        return True
    for tag in DOLLAR_TAG.findall(line):
        if quoted[0] is None:
            quoted[0] = tag
        elif tag == quoted[0]:
            quoted[0] = None
    if quoted[0] is None and COPY_START.match(line):
        quoted[0] = COPY_TAG
    return began


# -- variables -> sentinels -------------------------------------------------------------------


def sentinel_variables(variables: Any, token: str
                       ) -> tuple[Any, dict[str, str], tuple[str, ...]]:
    """``variables`` with every string replaced by a sentinel; which path each sentinel
    stands for (``variables.owner``); and the paths of values that are not strings
    (numbers, booleans...: a sentinel would change what they do, so they stay as they are)."""
    paths: dict[str, str] = {}
    kept: list[str] = []

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str):
            sentinel = f"spawnvar{token}_{len(paths)}_"
            paths[sentinel] = path
            return sentinel
        if isinstance(value, Mapping):
            return {key: walk(item, _member(path, key)) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item, f"{path}[{index}]") for index, item in enumerate(value)]
        kept.append(path)
        return value

    return walk(variables, "variables"), paths, tuple(kept)


def _member(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier() and key.isascii():
        return f"{path}.{key}"
    return f"{path}[{_jinja_string(str(key))}]"


# -- sentinels -> template --------------------------------------------------------------------


def template_of(dump: str, token: str, paths: Mapping[str, str]) -> str:
    """``dump`` as a template: each token holding a sentinel rendered from the variables,
    everything else escaped where it would read as template syntax."""
    sentinel = re.compile(rf"spawnvar{re.escape(token)}_\d+_")
    out: list[str] = []
    for match in TOKEN.finditer(dump):
        text = match.group(0)
        out.append(_expression(text, sentinel, paths) if sentinel.search(text)
                   else _escaped(text))
    template = "".join(out)
    _check_left(template, token, paths)
    return template


def _expression(text: str, sentinel: re.Pattern[str], paths: Mapping[str, str]) -> str:
    if text.startswith(("--", "/*")):
        return _escaped(sentinel.sub(lambda m: paths[m.group(0)], text))
    if text.startswith("'"):
        return "{{ " + _concat(text[1:-1].replace("''", "'"), sentinel, paths) + " }}"
    body = text[1:-1].replace('""', '"') if text.startswith('"') else text
    value = _concat(body, sentinel, paths)
    return "{{ " + (value if " ~ " not in value else f"({value})") + " | escape_identifier }}"


def _concat(text: str, sentinel: re.Pattern[str], paths: Mapping[str, str]) -> str:
    """``text`` as a Jinja expression: its constant parts as strings, its sentinels as the
    variables they stand for, joined with ``~``."""
    parts: list[str] = []
    start = 0
    for match in sentinel.finditer(text):
        if match.start() > start:
            parts.append(_jinja_string(text[start:match.start()]))
        parts.append(paths[match.group(0)])
        start = match.end()
    if start < len(text):
        parts.append(_jinja_string(text[start:]))
    return " ~ ".join(parts)


def _jinja_string(text: str) -> str:
    """A Jinja string literal of ``text`` (its lexer reads Python's escapes)."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _escaped(text: str) -> str:
    """``text`` printed as is by the template: ``{{``, ``{%`` and ``{#`` start no tag."""
    return JINJA_OPENING.sub('{{ "{" | safe }}', text)


def _check_left(template: str, token: str, paths: Mapping[str, str]) -> None:
    """A sentinel left in another form (``upper``, cut short) means a template transformed
    the value, which cannot be turned back into the variable."""
    left = re.search(rf"spawnvar{re.escape(token)}(_(\d+)_)?", template, re.IGNORECASE)
    if left is None:
        return
    path = paths.get(f"spawnvar{token}_{left.group(2)}_", "a variable")
    raise SchemaDumpFailed(
        f"{path} reaches the schema transformed (by a filter such as upper or a function "
        "of its value), so the baseline cannot name it; write the value into the migration, "
        "or use the variable unchanged")
