"""``spawn lint --db``: the rendered migrations applied, in order, to a scratch database.

The parser knows the grammar; only a server knows names, types and
permissions. This is sqlx's check: every statement of every migration is run
in a fresh database created for the purpose on the target's server (embedded
or not) and dropped afterwards, so nothing the user owns is touched and no
rollback is needed; the first statement that fails is reported at its place
in the template source, and the check stops there (later migrations build on
it). Statements run one by one through spawn's control session (psql), so the
error belongs to one statement whose source location is known.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spawn_db.config import Config
from spawn_db.errors import ControlError
from spawn_db.lint.parse import chunks
from spawn_db.lint.report import Finding
from spawn_db.lint.rules import DATABASE_RULE, ERROR
from spawn_db.lint.source_map import Location, SourceMap

if TYPE_CHECKING:
    from spawn_db.lint.lint import Folders

Before = Callable[[str, SourceMap, Any], None]
_PSQL_PREFIX = re.compile(r"^(?:psql:[^:]*:\d+: )?", re.M)
_LINE = re.compile(r"^LINE (\d+): (.*)$", re.M)


def check_on_database(config: Config, names: list[str], *, variables: Any = None,
                      before: Before | None = None,
                      folders: Folders | None = None) -> Finding | None:
    """Apply ``names`` in order to a scratch database; the first failure, or None.
    ``before`` is called with each migration's name, source map and the session just
    before the migration runs (the recreate rule asks ``pg_depend`` then). ``folders``
    says where each name's files are (``[[sources]]``; default: the project's own)."""
    from spawn_db.db.engine import engine_for
    from spawn_db.escape import escape_identifier
    from spawn_db.lint.lint import own_folders

    engine = engine_for(config)
    control = engine.control_session(None)
    scratch = f"spawn_lint_{secrets.token_hex(6)}"
    try:
        control.query(f"CREATE DATABASE {escape_identifier(scratch)}", what="create the "
                      "scratch database")
        try:
            session = engine.control_session(scratch)
            try:
                return _first_failure(folders or own_folders(config), names, variables,
                                      session, before)
            finally:
                session.close()
        finally:
            _drop(control, scratch)
    finally:
        control.close()


def _drop(control: Any, scratch: str) -> None:
    """Drop the scratch database; the session that used it has ended, but its server
    process may not have yet, so PostgreSQL 13+ is told to end it (``FORCE``) and older
    servers are asked again for a few seconds."""
    import time

    from spawn_db.escape import escape_identifier

    force = int(str(control.info.get("server_version_num", 0))) >= 130000
    sql = f"DROP DATABASE IF EXISTS {escape_identifier(scratch)}" + (
        " WITH (FORCE)" if force else "")
    for attempt in range(50):
        try:
            control.query(sql, what="drop the scratch database")
            return
        except ControlError:
            if attempt == 49:
                raise
            time.sleep(0.1)


def _first_failure(folders: Folders, names: list[str], variables: Any,
                   session: Any, before: Before | None) -> Finding | None:
    from spawn_db.lint.lint import render_for_lint, shown

    for name in names:
        config, bare = folders[name]
        _text, mapped = render_for_lint(config, bare, variables)
        if before is not None:
            before(name, mapped, session)
        for chunk in chunks(mapped.text):
            if chunk.meta or chunk.reads_stdin:
                continue  # psql's own commands; COPY's data is not in a query's reach
            try:
                session.query(chunk.text, what=f"migration {name}")
            except ControlError as exc:
                message, offset = _error_at(exc.message, chunk.start, chunk.text)
                return Finding(DATABASE_RULE, ERROR,
                               f"fails on a scratch database: {message}", name,
                               shown(config, _locate(mapped, offset)))
    return None


def _error_at(detail: str, start: int, statement: str) -> tuple[str, int]:
    """The server's message (``ERROR:  ...``) and the offset of the line (and, when psql
    shows it whole, the column) the server points at within ``statement``."""
    text = _PSQL_PREFIX.sub("", detail.split(" failed: ", 1)[-1])
    first = next((line for line in text.splitlines() if "ERROR:" in line), text)
    message = first.split("ERROR:", 1)[-1].strip()
    where = _LINE.search(text)
    if where is None:
        return message, start
    line = int(where.group(1))
    lines = statement.split("\n")
    offset = start + sum(len(piece) + 1 for piece in lines[:line - 1])
    caret = text[where.end():].lstrip("\n").split("\n", 1)[0]
    shown_text = where.group(2)
    if "^" in caret and not shown_text.startswith("...") and line <= len(lines):
        column = caret.index("^") - len(f"LINE {line}: ")
        if 0 <= column <= len(lines[line - 1]):
            offset += column
    return message, offset


def _locate(mapped: SourceMap, offset: int) -> Location:
    return mapped.locate(min(offset, max(0, len(mapped.text) - 1)))
