"""What the language server says about one buffer: problems, the rendered SQL, the
component a path names, the component paths to complete.

Pure functions of the buffer text, the other open buffers and the files on disk,
returning plain dataclasses with 0-based lines and columns (the protocol's
unit); ``server`` turns them into LSP messages. A template error or an SQL
syntax error inside an included component is reported at the line of the
buffer that includes it, since that is the file the user is looking at.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from spawn_db.errors import SpawnError, TemplateError
from spawn_db.lint.source_map import Location, SourceMap
from spawn_db.lsp.documents import Document, document_for

# A quoted path after include/import/from, or as the argument of a read_* function.
_PATH_TAG = re.compile(
    r"""(?:\b(?:include|import|from)\s+|\bread_(?:file|json|toml|yaml)\(\s*)(["'])([^"'\n]*)\1?""")
_PATH_FILTERED = re.compile(r"""(["'])([^"'\n]*)\1\s*\|\s*read_(?:file|json|toml|yaml)\b""")
_DISABLE_COMMENT = re.compile(r"--\s*spawn-lint:\s*disable=([A-Za-z0-9_, ]+)")
_OPEN_PATH = re.compile(
    r"""(?:\b(?:include|import|from)\s+|\bread_(?:file|json|toml|yaml)\(\s*)["']([^"'\n]*)$""")


@dataclass(frozen=True)
class Problem:
    """A diagnostic: 0-based line and column (characters) of the buffer, and the message;
    ``code`` is the lint rule of a risky-DDL warning."""

    line: int
    column: int
    message: str
    source: str  # "template", "sql" or "lint"
    severity: str = "error"  # or "warning"
    code: str = ""


@dataclass(frozen=True)
class Analysis:
    """What one buffer's check found, and the component files its render read (a change
    to one of them changes this buffer's diagnostics)."""

    problems: list[Problem]
    reads: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Preview:
    """The rendered SQL of a buffer, and where its components came from."""

    file: str
    origin: str
    sql: str


@dataclass(frozen=True)
class PathAt:
    """A component path written in the buffer: its text, the 0-based line and the
    columns [start, end) of the text between the quotes."""

    path: str
    line: int
    start: int
    end: int


def _never() -> bool:
    return False


def problems(path: Path, text: str, buffers: Mapping[str, str],
             variables: Path | None = None) -> list[Problem]:
    """The template and SQL syntax errors (and, for an ``up.sql``, the lint warnings) of
    ``text`` (the buffer of ``path``)."""
    return analyse(path, text, buffers, variables).problems


def analyse(path: Path, text: str, buffers: Mapping[str, str],
            variables: Path | None = None, cancelled: Callable[[], bool] = _never
            ) -> Analysis:
    """``problems``, and which component files the render read; ``variables`` (the
    editor's ``spawn.variables`` setting) replaces the file spawn.toml selects. Raises
    ``render.Cancelled`` when ``cancelled()`` turns true on the way."""
    try:
        document = document_for(path, buffers)
    except SpawnError as exc:
        return Analysis([Problem(0, 0, exc.message, "template")])
    if document is None:
        return Analysis([])
    try:
        mapped = render(document, text, variables, cancelled)
    except TemplateError as exc:
        return Analysis([_template_problem(exc, text, document.display)], _reads(document))
    except SpawnError as exc:
        return Analysis([Problem(0, 0, exc.message, "template")], _reads(document))
    return Analysis(_sql_problems(document, mapped, text, cancelled), _reads(document))


def _reads(document: Document) -> frozenset[str]:
    return frozenset(getattr(document.components, "reads", ()))


def preview(path: Path, text: str, buffers: Mapping[str, str],
            variables: Path | None = None) -> Preview:
    """The SQL the buffer renders to (raises ``SpawnError`` when it does not render, or
    when ``path`` is not a file spawn renders)."""
    from spawn_db.errors import UsageError

    document = document_for(path, buffers)
    if document is None:
        raise UsageError(f"{path} is not a migration script, test or component of a spawn "
                         "project; open an up.sql, down.sql, verify.sql, test.sql or a "
                         "file under components/")
    return Preview(document.display, document.origin, render(document, text, variables).text)


def render(document: Document, text: str, variables: Path | None = None,
           cancelled: Callable[[], bool] = _never) -> SourceMap:
    """``text`` rendered as ``document`` with the project's variables (or ``variables``),
    keeping the map from output back to template lines."""
    from spawn_db.lsp.render import render_fast
    from spawn_db.render.plaintext import plain_output
    from spawn_db.render.template import template_context

    plain = plain_output(text)
    if plain is not None:
        return SourceMap.identity(plain, document.display)
    context = template_context(document.config, _variables(document, variables))
    if document.path.name == "test.sql":
        context.update(_test_functions())
    return render_fast(text, document.display, document.components, context, cancelled)


# Functions only a golden test has (``spawn test`` adds them when it runs one): in the
# editor they render as the comments ``spawn test build`` shows, so a test that drives
# sessions or inlines a migration has no "undefined" diagnostic.
TEST_FUNCTIONS = ("bg", "step", "wait", "apply_migration")


def _test_functions() -> dict[str, Callable[..., Any]]:
    from spawn_db.render.sqlvalue import SqlMarkup

    def preview(name: str) -> Callable[..., Any]:
        def shown(*args: Any) -> SqlMarkup:
            listed = ", ".join(repr(a) for a in args)
            return SqlMarkup(f"-- {name}({listed})".replace("\n", " ") + "\n")
        return shown

    return {name: preview(name) for name in TEST_FUNCTIONS}


def _variables(document: Document, override: Path | None) -> Any:
    from spawn_db.render.variables import load_variables

    if override is not None and not override.is_file():
        from spawn_db.errors import ConfigError

        raise ConfigError(f"the editor setting spawn.variables names {override}, which is "
                          "not a file; fix the setting (a relative path starts at the "
                          "workspace folder) or clear it to use spawn.toml's")
    found = override if override is not None else document.config.variables_file()
    return {} if found is None else load_variables(found)


def _template_problem(exc: TemplateError, text: str, display: str) -> Problem:
    """The error at its line when it is in this buffer, else at the line of the buffer
    that names the file it is in (the include), else at the first line."""
    if exc.template == display and exc.line:
        return Problem(exc.line - 1, 0, exc.message, "template")
    if exc.template and exc.template.startswith("components/"):
        line = _line_naming(text, exc.template[len("components/"):])
        if line is not None:
            return Problem(line, 0, exc.message, "template")
    return Problem(0, 0, exc.message, "template")


def _line_naming(text: str, component: str) -> int | None:
    for number, line in enumerate(text.splitlines()):
        if any(found.path.lstrip("./") == component for found in _paths_on(line, number)):
            return number
    return None


def _sql_problems(document: Document, mapped: SourceMap, text: str,
                  cancelled: Callable[[], bool]) -> list[Problem]:
    from spawn_db.lint.rules import check_statements

    statements, syntax = parse_cached(mapped.text, cancelled, str(document.path))
    found = [_located(document, mapped.locate(offset), f"syntax error: {message}", "sql")
             for offset, message in syntax]
    if document.path.name == "up.sql" and not document.display.startswith("components/"):
        off = _disabled(document, text)
        found += [_located(document, mapped.locate(hit.offset), f"{hit.rule}: {hit.message}",
                           "lint", "warning", hit.rule)
                  for hit in check_statements(statements) if hit.rule not in off]
    return found


def _located(document: Document, where: Location, message: str, source: str,
             severity: str = "error", code: str = "") -> Problem:
    """The problem at its place in this buffer, or at the include line that brought in
    the component it is in (naming the component's line)."""
    if where.file == document.display:
        return Problem(where.line - 1, where.column - 1, message, source, severity, code)
    return Problem(_outer_line(where, document.display), 0, f"{message} (at {where})",
                   source, severity, code)


def _disabled(document: Document, text: str) -> frozenset[str]:
    """The rules ``[lint] disable`` and the migration's ``-- spawn-lint: disable=`` turn
    off (an unknown ID is spawn lint's error to report, not the editor's)."""
    off = set(document.config.lint_disable)
    for match in _DISABLE_COMMENT.finditer(text):
        off |= {i.strip().upper() for i in match.group(1).split(",") if i.strip()}
    return frozenset(off)


class _Statement(NamedTuple):
    """``lint.parse.Statement``'s fields (what the rules read), cheaper to make a thousand
    of on every check."""

    node: Any
    start: int


# Parsed statements by their text: an edit re-parses the statements it changed only.
PARSE_CACHE_SIZE = 20_000
_PARSED: OrderedDict[str, tuple[tuple[Any, int], ...] | tuple[str, int]] = OrderedDict()


def parse_cached(text: str, cancelled: Callable[[], bool] = _never, key: str = ""
                 ) -> tuple[list[Any], list[tuple[int, str]]]:
    """``lint.parse.parse_script`` with each statement's pglast result kept by its text,
    and (with a ``key``, the buffer's) the split redone only around what changed since
    the last text of that key: the statements (``parse.Statement``) and the syntax
    errors as (offset, message)."""
    statements: list[Any] = []
    syntax: list[tuple[int, str]] = []
    for start, sql, meta, uses_variables in _chunks(text, key):
        if meta or uses_variables:
            continue
        result = _PARSED.get(sql)
        if result is None:
            if cancelled():
                from spawn_db.lsp.render import Cancelled

                raise Cancelled
            result = _parse_one(sql)
            _PARSED[sql] = result
            if len(_PARSED) > PARSE_CACHE_SIZE:
                _PARSED.popitem(last=False)
        if result and isinstance(result[0], str):
            message, index = result
            syntax.append((start + int(index), str(message)))
        else:
            statements += [_Statement(node, start + at) for node, at in result]
    return statements, syntax


def _chunks(text: str, key: str) -> list[tuple[int, str, bool, bool]]:
    """``lint.parse.chunks`` as (character offset, text, meta, uses variables), from
    ``split_again``'s pieces."""
    data = text.encode("utf-8")
    pieces = split_again(key, data) if key else _split(data)
    if len(data) == len(text):  # ASCII: bytes are characters
        return [(p.start, text[p.start:p.end], p.meta, p.uses_variables) for p in pieces]
    chars: dict[int, int] = {}  # byte offset -> character offset, walked in order
    done_bytes = done_chars = 0
    for at in sorted({p.start for p in pieces} | {p.end for p in pieces}):
        done_chars += len(data[done_bytes:at].decode("utf-8", "replace"))
        chars[at] = done_chars
        done_bytes = at
    return [(chars[p.start], text[chars[p.start]:chars[p.end]], p.meta, p.uses_variables)
            for p in pieces]


def _split(data: bytes) -> list[Any]:
    from spawn_db.lint.split import split

    return split(data)


# The last split of each buffer, for ``split_again``.
_LAST_SPLIT: OrderedDict[str, tuple[bytes, list[Any]]] = OrderedDict()
LAST_SPLIT_SIZE = 64
_SENTINEL = b"\nSELECT 1;"


def split_again(key: str, data: bytes) -> list[Any]:
    """``lint.split.split(data)``, scanning again only from the last statement that ends
    before the first changed byte since ``key``'s last text to the first statement end
    after the last changed byte where the scanner is back in its initial state (a
    sentinel statement after it must come out as a statement of its own)."""
    last = _LAST_SPLIT.pop(key, None)
    pieces = _split(data) if last is None else _resplit(last[0], last[1], data)
    _LAST_SPLIT[key] = (data, pieces)
    if len(_LAST_SPLIT) > LAST_SPLIT_SIZE:
        _LAST_SPLIT.popitem(last=False)
    return pieces


def _resplit(old: bytes, pieces: list[Any], new: bytes) -> list[Any]:
    from dataclasses import replace

    if old == new:
        return pieces
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old, new, min(len(old), len(new)) - prefix)
    clean = [p for p in pieces if _ends_clean(old, p)]
    restart = max((p.end for p in clean if p.end <= prefix), default=0)
    delta = len(new) - len(old)
    resync = next((p.end for p in clean if p.end >= len(old) - suffix
                   and p.end + delta >= restart), None)
    kept = [p for p in pieces if p.end <= restart]
    if resync is not None:
        middle = new[restart:resync + delta]
        again = _split(middle + _SENTINEL)
        if again and (again[-1].start, again[-1].end) == (len(middle) + 1,
                                                          len(middle) + len(_SENTINEL)):
            after = [replace(p, start=p.start + delta, end=p.end + delta)
                     for p in pieces if p.start >= resync]
            return kept + [replace(p, start=p.start + restart, end=p.end + restart)
                           for p in again[:-1]] + after
    return kept + [replace(p, start=p.start + restart, end=p.end + restart)
                   for p in _split(new[restart:])]


def _ends_clean(data: bytes, piece: Any) -> bool:
    """Whether the scanner is in its initial state after ``piece``: a statement ended by
    its semicolon, which is every statement but the last (that one may run to the end of
    the text unterminated) and COPY ... FROM STDIN (data follows it)."""
    return not piece.meta and not piece.reads_stdin and piece.end < len(data)


def _common_prefix(a: bytes, b: bytes) -> int:
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    low, high = 0, max(0, limit)
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle:] == b[len(b) - middle:]:
            low = middle
        else:
            high = middle - 1
    return low


def _parse_one(sql: str) -> tuple[tuple[Any, int], ...] | tuple[str, int]:
    from pglast import parse_sql
    from pglast.parser import ParseError

    from spawn_db.lint.parse import _AT_INDEX

    try:
        raws = parse_sql(sql)
    except ParseError as exc:
        index = exc.args[1] if len(exc.args) > 1 else None
        # "at end of input" comes without a position: the end of the statement.
        return _AT_INDEX.sub("", str(exc.args[0])), len(sql) if index is None else index
    return tuple((raw.stmt, raw.stmt_location or 0) for raw in raws)


def _outer_line(where: Location, display: str) -> int:
    """The 0-based line of this buffer that included the file ``where`` is in."""
    for file, line in where.chain:
        if file == display:
            return line - 1
    return 0


def path_at(text: str, line: int, column: int) -> PathAt | None:
    """The include/import/read_* path under the cursor, if any."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return None
    for found in _paths_on(lines[line], line):
        if found.start <= column <= found.end:
            return found
    return None


def _paths_on(source: str, line: int) -> list[PathAt]:
    found = [PathAt(m.group(2), line, m.start(2), m.end(2)) for m in _PATH_TAG.finditer(source)]
    found += [PathAt(m.group(2), line, m.start(2), m.end(2))
              for m in _PATH_FILTERED.finditer(source)]
    return found


def definition(path: Path, text: str, line: int, column: int) -> Path | None:
    """The component file the path under the cursor names, when it exists in the working
    tree's ``components/`` (a path leaving ``components/`` names nothing)."""
    from spawn_db.lsp.documents import config_for

    found = path_at(text, line, column)
    config = config_for(path) if found is not None else None
    if found is None or config is None:
        return None
    return _component_file(config.components_dir, found.path)


def links(path: Path, text: str) -> list[tuple[PathAt, Path]]:
    """Every include/import/read_* path of the buffer that names an existing component,
    with that file (document links: editors underline them and open them on click)."""
    from spawn_db.lsp.documents import config_for

    config = config_for(path)
    if config is None:
        return []
    found: list[tuple[PathAt, Path]] = []
    for number, line in enumerate(text.splitlines()):
        for named in _paths_on(line, number):
            target = _component_file(config.components_dir, named.path)
            if target is not None:
                found.append((named, target))
    return found


def _component_file(components_dir: Path, written: str) -> Path | None:
    from spawn_db.errors import RefusedPath
    from spawn_db.render.template import component_parts

    try:
        parts = component_parts(written)
    except RefusedPath:
        return None
    target = components_dir.absolute().joinpath(*parts)
    return target if target.is_file() else None


def completions(path: Path, text: str, line: int, column: int) -> tuple[PathAt, list[str]] | None:
    """When the cursor is inside an unfinished include/import/read_* path: what is typed
    so far and the component paths that start with it (sorted)."""
    from spawn_db.lsp.documents import config_for

    lines = text.splitlines()
    source = lines[line][:column] if 0 <= line < len(lines) else ""
    match = _OPEN_PATH.search(source)
    config = config_for(path) if match is not None else None
    if match is None or config is None:
        return None
    typed = match.group(1)
    names = [name for name in component_files(config.components_dir) if name.startswith(typed)]
    return PathAt(typed, line, match.start(1), column), names


def component_files(root: Path) -> list[str]:
    """Every file under ``components/``, as the path an include names (sorted)."""
    names: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative = Path(folder).relative_to(root)
        names += [(relative / name).as_posix() for name in files if not name.startswith(".")]
    return sorted(names)
