"""Concurrent sessions in one test: ``bg``, ``step`` and ``wait`` (docs/testing.md).

A test may drive sessions besides its own, the way PostgreSQL's isolation
tester does. The template functions run nothing while the test renders: each
records a control point and leaves a random marker in the output, and the
rendered test is cut at the markers into segments for the main session.

The main psql gets one segment at a time, followed by ``\\echo`` of a random
sentinel. psql waits for each statement's result before it reads on, so when
the sentinel comes back every statement before it has finished on the server
and the main session is idle: only then does the next control point run.

After a step is sent to a session, spawn waits until the step either finishes
or is blocked by another session of the test. A control session polls
``pg_isolation_test_session_is_blocked`` (``pg_blocking_pids`` restricted to
the test's own backends, plus serializable safe-snapshot waits), as the
isolation tester does. A blocked step prints ``-- s2: <waiting ...>`` at that
point of the output; at each later control point a waiting session that is no
longer blocked is waited for, and ``-- s2: <... completed>`` is printed.
Everything is decided at control points, where the main session is idle, so
the output is the same on every run. A session's own output is kept until
``wait`` prints it.

Sentinels are ``'nonce''tag'``: psql prints ``nonce'tag``, which never occurs in
the input it may echo (``\\set ECHO all``); both forms are removed from the
output, so a test's output has no trace of them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spawn_db.errors import CommandUnavailable, SessionFailed, TemplateError
from spawn_db.fsutil import is_inside
from spawn_db.render.sqlvalue import SqlMarkup
from spawn_db.sqltest.runner import ScriptRun

SESSION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,30}")
BLOCK_POLL = 0.01
STALL_CHECK = 0.25
SELECT_SECONDS = 0.2
PIPE_CHUNK = 64 * 1024
CLOSE_SECONDS = 10.0
MAIN = "the main session"

Kind = Literal["bg", "step", "wait"]
OutputSink = Callable[[bytes], None]


@dataclass(frozen=True)
class ControlPoint:
    """One call of ``bg``, ``step`` or ``wait``; ``sql`` is a step's SQL or a bg script."""

    kind: Kind
    session: str
    sql: str
    where: str

    def describe(self) -> str:
        return f'{self.kind}("{self.session}")'


class SessionPlan:
    """The control points a test's render calls, and the functions that record them.

    ``bg`` scripts resolve against the test's folder first, then ``components/``;
    they render with the test's variables (``context``) but without the session
    functions, so a script cannot start sessions itself. With ``preview`` set
    (``spawn test build``) the functions print what they would do as comments.
    """

    def __init__(self, *, preview: bool = False) -> None:
        self.preview = preview
        self.token = "spawn-cp-" + secrets.token_hex(8)
        self.points: list[ControlPoint] = []
        self.closed = False
        self._marker = re.compile(re.escape(self.token) + r"#(\d+)#")
        self.test_dir = Path()
        self.display: Callable[[Path], str] = str
        self.components: Any = None
        self.context: Mapping[str, Any] = {}

    def attach(self, test_dir: Path, display: Callable[[Path], str], components: Any,
               context: Mapping[str, Any]) -> None:
        """Where ``bg`` scripts come from and the values they render with (the test's)."""
        self.test_dir, self.display = test_dir, display
        self.components, self.context = components, context

    @property
    def used(self) -> bool:
        return bool(self.points)

    def functions(self) -> dict[str, Callable[..., SqlMarkup]]:
        return {"bg": self.bg, "step": self.step, "wait": self.wait}

    def bg(self, session: str, path: str) -> SqlMarkup:
        """``bg("s2", "scripts/lock_row.sql")``: start session ``s2`` running that script."""
        where = _template_line()
        _check_session(session, "bg", where)
        script = self._render_script(path, where)
        _check_sql_ends(script, f"bg script {path!r}", where)
        return self._record(ControlPoint("bg", session, script, where),
                            f'-- bg("{session}", "{path}"){_commented(script)}')

    def step(self, session: str, sql: str) -> SqlMarkup:
        """``step("s2", "UPDATE …;")``: send more SQL to session ``s2``."""
        where = _template_line()
        _check_session(session, "step", where)
        if not isinstance(sql, str) or not sql.strip():
            raise _template_error(f'{where}: step("{session}", …) needs the SQL to send as its '
                                "second argument, a non-empty string", where)
        _check_sql_ends(sql, f'the SQL of step("{session}")', where)
        return self._record(ControlPoint("step", session, str(sql), where),
                            f'-- step("{session}"){_commented(str(sql))}')

    def wait(self, session: str) -> SqlMarkup:
        """``wait("s2")``: wait until ``s2`` finishes its steps, then print its output."""
        where = _template_line()
        _check_session(session, "wait", where)
        return self._record(ControlPoint("wait", session, "", where), f'-- wait("{session}")')

    def _record(self, point: ControlPoint, preview: str) -> SqlMarkup:
        if self.closed:
            raise _template_error(
                f"{point.where}: {point.describe()} comes after the first 1 MiB of the test's "
                "output, which already went to psql; move it earlier or make the test smaller",
                point.where)
        if self.preview:
            return SqlMarkup(preview)
        self.points.append(point)
        return SqlMarkup(f"{self.token}#{len(self.points) - 1}#")

    def _render_script(self, path: str, where: str) -> str:
        from spawn_db.render.template import compile_template

        data, display = self._read_script(path, where)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _template_error(f"{where}: bg script {display} is not UTF-8 text",
                                where) from None
        renderer = compile_template(text, display, self.components)
        return renderer.render(self.context)

    def _read_script(self, path: str, where: str) -> tuple[bytes, str]:
        """The script at ``path`` in the test's folder, else in ``components/``."""
        if not isinstance(path, str) or not path or path.startswith("/") or os.path.isabs(path):
            raise _template_error(
                f"{where}: bg script path {path!r} refused: give a path relative to the "
                "test's folder or to components/", where)
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts or not parts:
            raise _template_error(
                f"{where}: bg script path {path!r} refused: it must stay inside the test's "
                "folder or components/ (remove the `..`)", where)
        local = self.test_dir.joinpath(*parts)
        if local.is_file():
            if not is_inside(os.path.realpath(local), os.path.realpath(self.test_dir)):
                raise _template_error(
                    f"{where}: bg script {self.display(local)} is a symbolic link leaving the "
                    "test's folder; copy the file into it", where)
            return local.read_bytes(), self.display(local)
        data = self.components.read(parts)
        if data is None:
            raise _template_error(
                f"{where}: bg script {path!r} not found in {self.display(self.test_dir)}/ "
                "nor in components/; check the path (it is relative to the test's folder, "
                "or to components/)", where)
        return data, "components/" + "/".join(parts)

    def split(self, text: str) -> list[str | ControlPoint]:
        """The rendered test as main-session segments and control points, in output order,
        after checking the order makes sense (a session is started before it is used,
        once) and no control point sits inside an unfinished statement."""
        items: list[str | ControlPoint] = []
        started: set[str] = set()
        seen: set[int] = set()
        pos = 0
        for match in self._marker.finditer(text):
            index = int(match.group(1))
            point = self.points[index]
            if index in seen:
                raise _template_error(
                    f"{point.where}: {point.describe()} is output twice (a variable holding "
                    "it printed again?); call it once for each control point",
                    point.where)
            seen.add(index)
            segment = text[pos:match.start()]
            _check_statement_ends(segment, point)
            _check_order(point, started)
            items.extend((segment, point))
            pos = match.end()
        items.append(text[pos:])
        return items


def _check_session(session: Any, kind: str, where: str) -> None:
    if not isinstance(session, str) or not SESSION_NAME.fullmatch(session):
        raise _template_error(
            f"{where}: {kind}({session!r}, …): a session name is a letter or `_` followed by "
            "up to 30 letters, digits or `_`, e.g. \"s2\"", where)


def _check_order(point: ControlPoint, started: set[str]) -> None:
    name = point.session
    if point.kind == "bg":
        if name in started:
            raise _template_error(
                f'{point.where}: bg("{name}", …) starts session {name} a second time; use '
                f'step("{name}", …) to send it more SQL, or another name', point.where)
        started.add(name)
    elif name not in started:
        raise _template_error(
            f'{point.where}: {point.describe()} names session {name}, which is not started; '
            f'start it first with bg("{name}", "script.sql")', point.where)


# A line holding a psql meta-command (which ends at the end of its line).
_META_LINE = re.compile(r"^[ \t]*\\[^\n]*(?:\n|\Z)", re.M)


def _check_statement_ends(segment: str, point: ControlPoint) -> None:
    """Refuse a control point inside an unfinished statement of the main session, where
    the sentinel's ``\\echo`` would run before the statement does."""
    reason = _unfinished(segment)
    if reason:
        raise _template_error(
            f"{point.where}: {point.describe()} is inside an unfinished statement of the main "
            f"session ({reason}); put it after the statement's `;`", point.where)


def _check_sql_ends(sql: str, what: str, where: str) -> None:
    """Refuse a step or bg script whose last statement is unfinished: psql would wait
    for its end, and the session's next step would be taken for it."""
    reason = _unfinished(sql)
    if reason:
        raise _template_error(f"{where}: {what} ends inside an unfinished statement ({reason}); "
                            "end it with `;`", where)


def _unfinished(text: str) -> str:
    """Why psql would still be inside a statement at the end of ``text``, or "".

    Best effort: judged from the text after the last meta-command line, because
    ``db.psqlscan`` cannot see past a meta-command (which ends at its line's end).
    """
    from spawn_db.db.psqlscan import INCOMPLETE, UNTERMINATED, analyze

    tail = text
    for meta in _META_LINE.finditer(text):
        tail = text[meta.end():]
    reason = analyze(tail.encode("utf-8")).reason
    return reason if reason in (INCOMPLETE, UNTERMINATED) else ""


def _template_error(message: str, where: str) -> TemplateError:
    """A ``TemplateError`` at ``where`` (``file:line``), so an editor can point at the line."""
    file, _, line = where.rpartition(":")
    if file and line.isdigit():
        return TemplateError(message, template=file, line=int(line))
    return TemplateError(message, template=where)


def _commented(sql: str) -> str:
    return "".join(f"\n--   {line}" for line in sql.splitlines())


def _template_line() -> str:
    """``file:line`` of the template that is calling, from the frame Jinja compiled for it.

    Jinja's generated code carries ``debug_info``, pairs of template line and code line;
    the template line is the one of the last pair at or before the frame's line.
    """
    frame = sys._getframe(2)
    while frame is not None:
        debug = frame.f_globals.get("debug_info")
        if isinstance(debug, str) and "__file__" in frame.f_globals:
            line = 0
            for pair in filter(None, debug.split("&")):
                template_line, code_line = (int(x) for x in pair.split("="))
                if code_line <= frame.f_lineno:
                    line = template_line
            name = frame.f_globals["__file__"] or frame.f_globals.get("name") or "?"
            return f"{name}:{line}" if line else str(name)
        frame = frame.f_back  # type: ignore[assignment]
    return "the test"


# -- running -------------------------------------------------------------------------------


class _Stopped(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class SentinelFilter:
    """Takes spawn's sentinels out of one psql's output and records their tags.

    psql prints a sentinel as a line of its own, ``nonce'tag[ argument]``, after any
    partial line the script printed (``\\echo -n``); with ``\\set ECHO all`` it also
    echoes the ``\\echo 'nonce''tag'`` line that asked for it. Both end with a newline,
    so output is judged a whole line at a time and the rest waits for more data.
    """

    def __init__(self, nonce: str) -> None:
        quoted = re.escape(nonce.encode("ascii"))
        echoed = rb"\\echo '" + quoted + rb"''[a-z0-9]+'[^\n]*\n"
        printed = quoted + rb"'([a-z0-9]+)(?: (\S*))?\n"
        self._sentinels = re.compile(echoed + b"|" + printed)
        self._partial = bytearray()
        self.tags: dict[str, str] = {}

    def feed(self, data: bytes) -> bytes:
        """The output in ``data`` that is not spawn's, up to its last complete line."""
        self._partial += data
        cut = self._partial.rfind(b"\n") + 1
        if not cut:
            return b""
        block = bytes(self._partial[:cut])
        del self._partial[:cut]
        return self._clean(block)

    def end(self) -> bytes:
        """What is left when psql's output ended (a last line without a newline)."""
        block = bytes(self._partial)
        self._partial.clear()
        return self._clean(block)

    def _clean(self, block: bytes) -> bytes:
        for match in self._sentinels.finditer(block):
            if match.group(1) is not None:
                self.tags[match.group(1).decode("ascii")] = (match.group(2) or b"").decode()
        return self._sentinels.sub(b"", block)


@dataclass(eq=False)
class _Psql:
    """One psql with stdout and stderr on one pipe; sentinels are taken out of its output."""

    argv: list[str]
    app_name: str
    nonce: str
    on_text: OutputSink | None = None
    text: bytearray = field(default_factory=bytearray)
    ended: bool = False

    def __post_init__(self) -> None:
        from spawn_db.db.target import mask_secrets, session_env

        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=session_env(PGAPPNAME=self.app_name),
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandUnavailable.starting(mask_secrets(repr(self.argv[0])), exc) from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin_fd: int | None = self.proc.stdin.fileno()
        self.stdout_fd = self.proc.stdout.fileno()
        os.set_blocking(self.stdin_fd, False)
        self.pending = bytearray()
        self.line_start = True
        self.close_when_drained = False
        self.filter = SentinelFilter(self.nonce)
        self.tags = self.filter.tags

    def send(self, data: bytes) -> None:
        if data:
            self.pending += data
            self.line_start = data.endswith(b"\n")

    def sentinel(self, tag: str, extra: str = "") -> None:
        """Ask psql to print ``tag`` once it has done everything sent before; on a line
        of its own, as a meta-command must be to end where spawn means it to."""
        lead = b"" if self.line_start else b"\n"
        self.send(lead + f"\\echo '{self.nonce}''{tag}'{extra}\n".encode("ascii"))

    def close(self) -> None:
        """Close psql's input once everything queued is written (psql then exits)."""
        self.close_when_drained = True
        if not self.pending:
            self._close_stdin()

    def write(self) -> None:
        if self.stdin_fd is None:
            return
        if self.pending:
            try:
                written = os.write(self.stdin_fd, self.pending[:PIPE_CHUNK])
            except BlockingIOError:
                return
            except (BrokenPipeError, ConnectionResetError):
                self.pending.clear()
                self._close_stdin()
                return
            del self.pending[:written]
        if not self.pending and self.close_when_drained:
            self._close_stdin()

    def read(self) -> None:
        data = os.read(self.stdout_fd, PIPE_CHUNK)
        if not data:
            self.ended = True
        clean = self.filter.feed(data) if data else self.filter.end()
        if not clean:
            return
        if self.on_text is not None:
            self.on_text(clean)
        else:
            self.text += clean

    def _close_stdin(self) -> None:
        if self.stdin_fd is not None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            self.stdin_fd = None

    def kill(self) -> None:
        from spawn_db.sqltest.runner import _close_pipes, _kill

        if self.proc.poll() is None:
            _kill(self.proc)
        else:
            _close_pipes(self.proc)


@dataclass(eq=False)
class _Session:
    name: str
    psql: _Psql
    pid: int
    app_name: str
    state: Literal["idle", "busy", "waiting"] = "idle"
    tag: str = ""
    since: str = ""

    @property
    def done(self) -> bool:
        return self.tag in self.psql.tags or self.psql.ended


class SessionRun:
    """Runs a test's segments and control points; one selector over all its psqls."""

    def __init__(self, argv: list[str], items: list[str | ControlPoint], *, opening: str,
                 app_name: str, deadline: float | None, cancel: threading.Event | None,
                 sink: OutputSink | None) -> None:
        self.argv = argv
        self.items = items
        self.opening = opening
        self.app_name = app_name
        self.prefix = session_prefix(app_name)
        self.deadline = deadline
        self.cancel = cancel
        self.sink = sink
        self.nonce = "spawn-" + secrets.token_hex(8)
        self.out = bytearray()
        self.sessions: dict[str, _Session] = {}
        self.procs: list[_Psql] = []
        self.selector = selectors.DefaultSelector()
        self._control: _Psql | None = None
        self._writing: dict[int, _Psql] = {}
        self._seq = 0
        self.main = self._start(app_name, self._main_text)

    # -- the plan ------------------------------------------------------------------------

    def run(self) -> None:
        self.main.send(self.opening.encode("utf-8"))
        after = "the start of the test"
        for item in self.items:
            if isinstance(item, str):
                if not self._segment(item, after):
                    self._main_ended_early()
                    return
            elif item.kind == "bg":
                self._bg(item)
            elif item.kind == "step":
                self._step(self.sessions[item.session], item.sql, item.where)
            else:
                self._wait(self.sessions[item.session], item.where)
            if not isinstance(item, str):
                after = item.where
            self._checkpoint()
        for session in self.sessions.values():
            self._wait(session, None)
        self._finish()

    def _segment(self, text: str, after: str) -> bool:
        """Send ``text`` to the main session; True when it finished, False when psql ended.

        While it runs, spawn checks now and then that the main session is not waiting
        for a lock of a session with no step running, which nothing would release.
        """
        if text:
            self.main.send(text.encode("utf-8"))
        tag = self._tag("m")
        self.main.sentinel(tag)
        while not self.pump(lambda: tag in self.main.tags or self.main.ended, limit=STALL_CHECK):
            self._check_main_stalled(after)
        return tag in self.main.tags

    def _bg(self, point: ControlPoint) -> None:
        from spawn_db.escape import escape_literal

        app = f"{self.prefix}{point.session}:{self.app_name[len(self.prefix):]}"[:63]
        psql = self._start(app)
        psql.send(
            f"{self.opening}\\set ON_ERROR_STOP off\nSET application_name = "
            f"{escape_literal(app)};\nSELECT pg_catalog.pg_backend_pid() AS spawn_session_pid "
            "\\gset\n".encode())
        psql.sentinel("p", " :spawn_session_pid")
        psql.send(b"\\unset spawn_session_pid\n")
        self.pump(lambda: "p" in psql.tags or psql.ended)
        if "p" not in psql.tags:
            said = _last_line(psql.text) or "psql printed nothing"
            raise SessionFailed(f"{point.where}: session {point.session} could not start: {said}")
        session = _Session(point.session, psql, int(psql.tags["p"]), app)
        self.sessions[point.session] = session
        self._step(session, point.sql, point.where)

    def _step(self, session: _Session, sql: str, where: str) -> None:
        if session.state == "waiting":
            raise SessionFailed(
                f'{where}: step("{session.name}") was sent while {session.name} is waiting '
                f"for a lock (its step at {session.since} is blocked), which cannot work; "
                f'release the lock first (e.g. COMMIT in the session holding it), or move the '
                "step after that")
        if session.psql.ended:
            raise SessionFailed(self._ended(session, where))
        session.tag, session.since, session.state = self._tag("s"), where, "busy"
        session.psql.send(sql.encode("utf-8"))
        session.psql.sentinel(session.tag)
        if self._settle(session) == "waiting":
            self._print(f"-- {session.name}: <waiting ...>\n")

    def _wait(self, session: _Session, where: str | None) -> None:
        """``wait`` at ``where``, or (``None``) the implicit wait at the end of the test."""
        if session.state == "waiting":
            holder = self._stuck_behind(session)
            if holder is not None:
                raise SessionFailed(self._waits_forever(session, where, holder))
            self.pump(lambda: session.done)
            session.state = "idle"
            self._print(f"-- {session.name}: <... completed>\n")
        self._print_session(session)

    def _checkpoint(self) -> None:
        """At a control point: report the waiting sessions that have finished meanwhile."""
        for session in self.sessions.values():
            if session.state != "waiting":
                continue
            if not session.done and not self._blocked(session):
                self._settle(session)
            if session.done:
                session.state = "idle"
                self._print(f"-- {session.name}: <... completed>\n")

    def _settle(self, session: _Session) -> str:
        """Wait until the session's step has finished (idle) or is blocked (waiting)."""
        while True:
            if self.pump(lambda: session.done, limit=BLOCK_POLL):
                session.state = "idle"
                return session.state
            if self._blocked(session):
                session.state = "waiting"
                return session.state

    def _main_ended_early(self) -> None:
        """psql of the main session ended before the end of the test (an error with
        ``ON_ERROR_STOP``, ``\\q``): idle sessions are waited for, a waiting one fails."""
        for session in self.sessions.values():
            if session.state == "waiting":
                code = self.main.proc.wait()
                raise SessionFailed(self._still_running(
                    session, f"when the main session ended early (psql exited with code {code}"
                    f" after: {_last_line(self.out) or 'no output'})"))
        for session in self.sessions.values():
            self._print_session(session)
        self._finish()

    def _finish(self) -> None:
        for psql in self.procs:
            psql.close()
        self.pump(lambda: all(p.ended for p in self.procs), limit=CLOSE_SECONDS)
        for psql in self.procs:
            if not psql.ended:
                psql.kill()

    # -- output ---------------------------------------------------------------------------

    def _main_text(self, data: bytes) -> None:
        self.out += data
        if self.sink is not None:
            self.sink(data)

    def _print(self, text: str) -> None:
        self._main_text(text.encode("utf-8"))

    def _print_session(self, session: _Session) -> None:
        text = bytes(session.psql.text)
        session.psql.text.clear()
        if text:
            self._main_text(text)

    def _still_running(self, session: _Session, when: str) -> str:
        return (
            f"session {session.name} was still running {when}: its step at {session.since} "
            "waits for a lock; release the lock (e.g. COMMIT in the main session) and "
            f'wait("{session.name}") before the end; its backend was terminated')

    def _waits_forever(self, session: _Session, where: str | None, holder: str) -> str:
        name = session.name
        if where is None:
            return (
                f"session {name} was still running at the end of the test: its step at "
                f"{session.since} waits for a lock {holder} holds; release the lock (e.g. "
                f'COMMIT in {holder}) and wait("{name}") before the end; its backend was '
                "terminated")
        return (
            f'{where}: wait("{name}") would wait forever: {name} waits for a lock {holder} '
            f"holds (its step at {session.since}), and nothing runs while the test waits; "
            f"release the lock first (e.g. COMMIT in {holder}), then wait")

    def _check_main_stalled(self, after: str) -> None:
        from spawn_db.escape import escape_literal

        idle = [s for s in self.sessions.values() if s.state == "idle" and not s.psql.ended]
        if not idle:
            return
        holders = self._holders(f"application_name = {escape_literal(self.app_name)}")
        stuck = [s.name for s in idle if s.app_name in holders]
        if stuck:
            raise SessionFailed(
                f"the main session, in its statements after {after}, waits for a lock that "
                f"session {stuck[0]} holds, and {stuck[0]} has no step running to release it; "
                f'send it the statement that does first (e.g. step("{stuck[0]}", "COMMIT;"))')

    def _ended(self, session: _Session, where: str) -> str:
        code = session.psql.proc.wait()
        return (f'{where}: session {session.name} has ended (psql exited with code {code}'
                f" after: {_last_line(session.psql.text) or 'no output'}); start a new "
                "session with bg() instead")

    # -- the control session --------------------------------------------------------------

    def _blocked(self, session: _Session) -> bool:
        """Whether ``session`` waits for a lock held by a backend of this test (all of
        them are named with its prefix), as PostgreSQL's isolation tester asks."""
        from spawn_db.escape import escape_literal

        answer = self._query(
            f"SELECT pg_catalog.pg_isolation_test_session_is_blocked({session.pid}, "
            "ARRAY(SELECT pid FROM pg_catalog.pg_stat_activity WHERE "
            f"left(application_name, {len(self.prefix)}) = {escape_literal(self.prefix)} "
            f"AND pid <> {session.pid}))")
        if answer not in ("t", "f"):
            raise SessionFailed(f"checking whether session {session.name} waits for a lock "
                                f"failed: {answer or 'no answer'}")
        return answer == "t"

    def _stuck_behind(self, session: _Session) -> str | None:
        """Who holds the lock a waiting ``session`` needs, when nothing can release it:
        the main session (idle at a control point) or a session with no step running."""
        holders = self._holders(f"pid = {session.pid}")
        if self.app_name in holders:
            return MAIN
        for other in self.sessions.values():
            if other.state == "idle" and other.app_name in holders:
                return f"session {other.name}"
        return None

    def _holders(self, waiter: str) -> set[str]:
        """The application_names of this test's backends that block the backend(s)
        matching ``waiter`` (a condition on ``pg_stat_activity``)."""
        from spawn_db.escape import escape_literal

        answer = self._query(
            "SELECT a.application_name FROM pg_catalog.pg_stat_activity a WHERE a.pid IN "
            "(SELECT pg_catalog.unnest(pg_catalog.pg_blocking_pids(w.pid)) "
            f"FROM pg_catalog.pg_stat_activity w WHERE w.{waiter}) "
            f"AND left(a.application_name, {len(self.prefix)}) = {escape_literal(self.prefix)}")
        return set(answer.splitlines())

    def _query(self, sql: str) -> str:
        control = self._control_session()
        tag = self._tag("c")
        control.text.clear()
        control.send(f"{sql};\n".encode())
        control.sentinel(tag)
        self.pump(lambda: tag in control.tags or control.ended)
        return control.text.decode("utf-8", "replace").strip()

    def _control_session(self) -> _Psql:
        from spawn_db.db.target import SESSION_PIN
        from spawn_db.escape import escape_literal

        if self._control is None or self._control.ended:
            app = f"{self.prefix}~control"
            self._control = self._start(app)
            self._control.send(
                "\\set QUIET on\n\\pset pager off\n\\set ON_ERROR_STOP off\n"
                "\\pset format unaligned\n\\pset tuples_only on\n\\set VERBOSITY terse\n"
                f"{SESSION_PIN}SET application_name = {escape_literal(app)};\n".encode())
        return self._control

    # -- processes ------------------------------------------------------------------------

    def _start(self, app_name: str, on_text: OutputSink | None = None) -> _Psql:
        psql = _Psql(self.argv, app_name, self.nonce, on_text)
        self.procs.append(psql)
        self.selector.register(psql.stdout_fd, selectors.EVENT_READ, psql)
        return psql

    def _tag(self, kind: str) -> str:
        self._seq += 1
        return f"{kind}{self._seq}"

    def pump(self, until: Callable[[], bool], *, limit: float | None = None) -> bool:
        """Write and read every psql until ``until()``; False when ``limit`` seconds pass.

        Raises ``_Stopped`` at the test's deadline or when the run is cancelled.
        """
        end = None if limit is None else time.monotonic() + limit
        while not until():
            now = time.monotonic()
            if self.cancel is not None and self.cancel.is_set():
                raise _Stopped("cancel")
            if self.deadline is not None and now >= self.deadline:
                raise _Stopped("timeout")
            if end is not None and now >= end:
                return False
            wait = SELECT_SECONDS
            for bound in (self.deadline, end):
                if bound is not None:
                    wait = min(wait, max(bound - now, 0.0))
            self._select(wait)
        return True

    def _select(self, wait: float) -> None:
        for psql in self.procs:
            fd = psql.stdin_fd
            if psql.pending and fd is not None and fd not in self._writing:
                self.selector.register(fd, selectors.EVENT_WRITE, psql)
                self._writing[fd] = psql
        for key, events in self.selector.select(wait):
            psql = key.data
            if events & selectors.EVENT_READ and key.fd == psql.stdout_fd:
                psql.read()
                if psql.ended:
                    self.selector.unregister(psql.stdout_fd)
            elif events & selectors.EVENT_WRITE:
                psql.write()
        for fd, psql in list(self._writing.items()):
            if psql.stdin_fd != fd or not psql.pending:
                self.selector.unregister(fd)
                del self._writing[fd]

    def kill_all(self) -> None:
        self.selector.close()
        for psql in self.procs:
            psql.kill()


def session_prefix(app_name: str) -> str:
    """``spawn-test-<random>-``: the start of every application_name one test run uses."""
    return app_name[: len("spawn-test-") + 13]


def run_sessions(
    argv: list[str], items: list[str | ControlPoint], *, opening: str, app_name: str,
    timeout: float | None, cancel: threading.Event | None, sink: OutputSink | None,
    reaper: Callable[[str], None],
) -> ScriptRun:
    """Run a test that uses sessions; like ``runner.run_script``, its merged output.

    A failure (``SessionFailed``), the deadline or a cancel stops every psql of the
    test, and ``reaper(prefix)`` terminates the backends whose application_name starts
    with the test's prefix, so no session outlives its test.
    """
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    run = SessionRun(argv, items, opening=opening, app_name=app_name, deadline=deadline,
                     cancel=cancel, sink=sink)
    try:
        run.run()
    except _Stopped as stop:
        run.kill_all()
        reaper(run.prefix)
        return ScriptRun(bytes(run.out), None, time.monotonic() - start,
                         timed_out=stop.why == "timeout", cancelled=stop.why == "cancel")
    except BaseException:
        run.kill_all()
        reaper(run.prefix)
        raise
    code = run.main.proc.wait()
    run.kill_all()
    return ScriptRun(bytes(run.out), code, time.monotonic() - start)


def _last_line(text: bytes | bytearray) -> str:
    lines = bytes(text).decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else ""
