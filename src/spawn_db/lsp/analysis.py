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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spawn_db.errors import SpawnError, TemplateError
from spawn_db.lint.source_map import Location, SourceMap
from spawn_db.lsp.documents import Document, document_for

# A quoted path after include/import/from, or as the argument of a read_* function.
_PATH_TAG = re.compile(
    r"""(?:\b(?:include|import|from)\s+|\bread_(?:file|json|toml|yaml)\(\s*)(["'])([^"'\n]*)\1?""")
_PATH_FILTERED = re.compile(r"""(["'])([^"'\n]*)\1\s*\|\s*read_(?:file|json|toml|yaml)\b""")
_OPEN_PATH = re.compile(
    r"""(?:\b(?:include|import|from)\s+|\bread_(?:file|json|toml|yaml)\(\s*)["']([^"'\n]*)$""")


@dataclass(frozen=True)
class Problem:
    """A diagnostic: 0-based line and column of the buffer, and the message."""

    line: int
    column: int
    message: str
    source: str  # "template" or "sql"


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


def problems(path: Path, text: str, buffers: Mapping[str, str]) -> list[Problem]:
    """The template and SQL syntax errors of ``text`` (the buffer of ``path``)."""
    try:
        document = document_for(path, buffers)
    except SpawnError as exc:
        return [Problem(0, 0, exc.message, "template")]
    if document is None:
        return []
    try:
        mapped = render(document, text)
    except TemplateError as exc:
        return [_template_problem(exc, text, document.display)]
    except SpawnError as exc:
        return [Problem(0, 0, exc.message, "template")]
    return _sql_problems(document, mapped, text)


def preview(path: Path, text: str, buffers: Mapping[str, str]) -> Preview:
    """The SQL the buffer renders to (raises ``SpawnError`` when it does not render, or
    when ``path`` is not a file spawn renders)."""
    from spawn_db.errors import UsageError

    document = document_for(path, buffers)
    if document is None:
        raise UsageError(f"{path} is not a migration script, test or component of a spawn "
                         "project; open an up.sql, down.sql, verify.sql, test.sql or a "
                         "file under components/")
    return Preview(document.display, document.origin, render(document, text).text)


def render(document: Document, text: str) -> SourceMap:
    """``text`` rendered as ``document`` with the project's variables, keeping the map
    from output back to template lines."""
    from spawn_db.lint.source_map import render_mapped
    from spawn_db.render.plaintext import plain_output
    from spawn_db.render.template import template_context

    plain = plain_output(text)
    if plain is not None:
        return SourceMap.identity(plain, document.display)
    context = template_context(document.config, _variables(document))
    return render_mapped(text, document.display, document.components, context)


def _variables(document: Document) -> Any:
    from spawn_db.render.variables import load_variables

    found = document.config.variables_file()
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


def _sql_problems(document: Document, mapped: SourceMap, text: str) -> list[Problem]:
    from spawn_db.lint.parse import parse_script

    found: list[Problem] = []
    for problem in parse_script(mapped.text).problems:
        where = mapped.locate(problem.offset)
        message = f"syntax error: {problem.message}"
        if where.file == document.display:
            found.append(Problem(where.line - 1, where.column - 1, message, "sql"))
        else:
            found.append(Problem(_outer_line(where, document.display), 0,
                                 f"{message} (at {where})", "sql"))
    return found


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
