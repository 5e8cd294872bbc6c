"""Long-lived psql processes driven through pipes, one selector loop each.

Starting psql costs ~15-20 ms and a reconnect (``\\c``) ~8 ms, while a small
migration runs in ~3 ms, so spawn keeps its psql processes open and talks to
them by writing SQL to stdin and reading markers back from stdout:

* a marker written with ``\\echo`` proves only that psql read that far;
* a marker returned by a statement (``... AS spawn_mark \\gset`` then
  ``\\echo :spawn_mark``) proves that the statement ran and succeeded, because
  psql runs with ``ON_ERROR_STOP`` and exits at the first error.

Markers carry a random nonce and are written as ``'nonce''tag'`` so that the
text psql prints (``nonce'tag``) never appears in the input it may echo.

Every psql is started in its own process group (a Ctrl-C in the terminal is
spawn's to handle, not psql's) and, on Linux, with a parent-death signal, so
psql stops as soon as spawn dies instead of running whatever SQL is still
queued in its pipe.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from spawn_db.db.target import (
    SESSION_PIN,
    display_command,
    mask_secrets,
    session_env,
)
from spawn_db.errors import CommandUnavailable, ControlError, DatabaseError
from spawn_db.escape import escape_literal

PIPE_CHUNK = 64 * 1024
STDERR_TAIL = 256 * 1024
# Server settings that could end the control session, and with it the migration lock,
# while a long migration runs; set to 0 (off) where the server has them.
CONTROL_TIMEOUTS = ("('idle_session_timeout', 'idle_in_transaction_session_timeout', "
                    "'statement_timeout', 'lock_timeout')")


def new_nonce() -> str:
    return "spawn-" + secrets.token_hex(8)


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGINT the child when spawn dies; None elsewhere.

    SIGINT, not SIGTERM: psql answers it by sending the server a cancel request for
    the statement running, then exits (it reads a script, not a terminal). Killed
    with SIGTERM it would just vanish, and a server without
    ``client_connection_check_interval`` (PostgreSQL 13) would finish and commit the
    statement of a dead spawn, which ``--retry`` would then run a second time.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGINT, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


STOPS_WITH_SPAWN = sys.platform.startswith("linux")


@dataclass
class Exit:
    code: int
    stderr: str


@dataclass
class PsqlProcess:
    """One psql (or psql-like command) with non-blocking pipes.

    Writes are queued and flushed while reading, so neither side can block
    the other however much SQL goes in or output comes out. ``env`` defaults to
    :func:`~spawn_db.db.target.session_env` (UTF-8, standard-conforming strings).
    """

    argv: list[str]
    nonce: str = field(default_factory=new_nonce)
    env: dict[str, str] | None = None
    on_output: Callable[[str], None] | None = None
    on_stderr: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, bufsize=0, env=session_env(self.env),
                start_new_session=True,
                preexec_fn=_parent_death_hook(),
            )
        except OSError as exc:
            raise CommandUnavailable.starting(mask_secrets(repr(self.argv[0])), exc) from None
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self._in = self.proc.stdin.fileno()
        self._fds = {self.proc.stdout.fileno(): "out", self.proc.stderr.fileno(): "err"}
        for fd in (self._in, *self._fds):
            os.set_blocking(fd, False)
        self._sel = selectors.DefaultSelector()
        for fd in self._fds:
            self._sel.register(fd, selectors.EVENT_READ)
        self._writing = False
        self._queue: deque[memoryview | IO[bytes]] = deque()
        self._input_closed = False
        self._close_when_drained = False
        self._partial = bytearray()
        self.lines: deque[str] = deque()
        self.stderr_tail = bytearray()
        self._err_partial = bytearray()
        self.exit: Exit | None = None
        self._marker = re.compile(re.escape(self.nonce) + r"'([a-z])(\d*)(?: ([0-9.eE+-]+))?")

    # -- writing ---------------------------------------------------------------------------

    def write(self, text: str) -> None:
        self._queue.append(memoryview(text.encode("utf-8")))

    def write_stream(self, stream: IO[bytes]) -> None:
        """Queue a whole file (a rendered migration), read in chunks as psql takes it."""
        stream.seek(0)
        self._queue.append(stream)

    def echo_marker(self, tag: str) -> None:
        self.write(f"\\echo {marker_literal(self.nonce, tag)}\n")

    def statement_marker(self, statement: str) -> None:
        """Queue ``statement`` (returning one ``spawn_mark`` column) so its marker proves it ran."""
        self.write(f"{statement} \\gset\n\\echo :spawn_mark\n")

    def close_input(self) -> None:
        """Send end of input once everything queued has been written."""
        self._close_when_drained = True
        self._flush()

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def _flush(self) -> None:
        while self._queue and not self._input_closed:
            head = self._queue[0]
            if not isinstance(head, memoryview):
                chunk = head.read(PIPE_CHUNK)
                if not chunk:
                    self._queue.popleft()
                    continue
                self._queue[0] = memoryview(chunk)
                self._queue.insert(1, head)
                head = self._queue[0]
                assert isinstance(head, memoryview)
            try:
                written = os.write(self._in, head)
            except BlockingIOError:
                break
            except (BrokenPipeError, ConnectionResetError):
                self._queue.clear()
                self._close_stdin()
                break
            if written == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[written:]
        if not self._queue and self._close_when_drained and not self._input_closed:
            self._close_stdin()
        self._want_write(bool(self._queue) and not self._input_closed)

    def _want_write(self, want: bool) -> None:
        if want == self._writing:
            return
        if want:
            self._sel.register(self._in, selectors.EVENT_WRITE)
        else:
            self._sel.unregister(self._in)
        self._writing = want

    # -- reading ---------------------------------------------------------------------------

    def pump(self, timeout: float | None) -> None:
        """Write what is queued and read what is available, waiting at most ``timeout``."""
        if self.exit is not None:
            return
        self._flush()
        for key, _ in self._sel.select(timeout):
            fd = key.fd
            if fd == self._in:
                self._flush()
                continue
            try:
                data = os.read(fd, PIPE_CHUNK)
            except BlockingIOError:
                continue
            if self._fds[fd] == "out":
                self._stdout(data)
            else:
                self._stderr(data)
            if not data:
                self._sel.unregister(fd)
                del self._fds[fd]
        if not self._fds:
            self._reap()

    def _stdout(self, data: bytes) -> None:
        if not data:
            if self._partial:
                self._line(bytes(self._partial))
                self._partial.clear()
            return
        self._partial += data
        end = self._partial.rfind(b"\n")
        if end < 0:
            return
        complete = bytes(self._partial[: end + 1])
        del self._partial[: end + 1]
        output: list[str] = []
        for raw in complete.splitlines(keepends=True):
            line = raw.decode("utf-8", "replace")
            if self.nonce in line:
                self.lines.append(line)
            else:
                output.append(line)
        if output and self.on_output is not None:
            self.on_output("".join(output))

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace")
        if self.nonce in line:
            self.lines.append(line)
        elif self.on_output is not None:
            self.on_output(line)

    def _stderr(self, data: bytes) -> None:
        """Keep the tail for error messages; pass complete lines on as they come."""
        self.stderr_tail += data
        if len(self.stderr_tail) > STDERR_TAIL:
            del self.stderr_tail[: len(self.stderr_tail) - STDERR_TAIL]
        self._err_partial += data
        end = len(self._err_partial) if not data else self._err_partial.rfind(b"\n") + 1
        if end > 0:
            text = bytes(self._err_partial[:end]).decode("utf-8", "replace")
            del self._err_partial[:end]
            if self.on_stderr is not None:
                self.on_stderr(text)

    def _close_stdin(self) -> None:
        self._input_closed = True
        if self._writing:
            self._want_write(False)
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()

    def _reap(self) -> None:
        code = self.proc.wait()
        if not self._input_closed:
            self._close_stdin()
        self._sel.close()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.exit = Exit(code, bytes(self.stderr_tail).decode("utf-8", "replace"))

    def markers(self) -> Iterator[tuple[str, int, float | None]]:
        """Markers read so far, as ``(kind, number, seconds)``, each returned once."""
        while self.lines:
            found = self._marker.search(self.lines.popleft())
            if found:
                seconds = float(found.group(3)) if found.group(3) else None
                yield found.group(1), int(found.group(2) or -1), seconds

    def wait_exit(self, timeout: float | None = None) -> Exit:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.exit is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.kill()
            self.pump(None if left is None else max(left, 0.05))
        return self.exit

    def interrupt(self) -> None:
        """Ask psql to cancel the running statement, as Ctrl-C in a terminal would."""
        if self.exit is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        if self.exit is None and self.proc.poll() is None:
            self.proc.kill()

    def stop(self, *, grace: float = 0.0) -> None:
        """End psql and collect it (pipes closed, no zombie): end of input first, and a
        kill if it is still running after ``grace`` seconds."""
        if self.exit is None:
            if grace:
                self._queue.clear()
                self.close_input()
            self.wait_exit(timeout=grace)


def marker_literal(nonce: str, tag: str) -> str:
    """``'nonce''tag'``: psql prints ``nonce'tag``, which its echoed input never contains."""
    return escape_literal(f"{nonce}'{tag}")


class ControlSession:
    """psql in request/response mode for spawn's own SQL: lock, tracking reads and writes.

    ``ON_ERROR_STOP`` is off here so that a failed statement does not end the
    session (and with it the migration lock); errors are read from psql's
    ``ERROR`` variable after each request. The session is always in
    autocommit mode between requests: never idle inside a transaction.
    """

    def __init__(self, argv: list[str], *, database: str | None = None) -> None:
        self.argv = argv
        self.process = PsqlProcess(argv)
        self._seq = 0
        self.process.write(
            "\\set QUIET on\n\\pset pager off\n\\set ON_ERROR_STOP off\n"
            "\\pset format unaligned\n\\pset tuples_only on\n\\pset footer off\n"
            "\\set VERBOSITY default\n\\set SHOW_CONTEXT never\n"
        )
        if database is not None:
            from spawn_db.escape import escape_identifier

            self.process.write(f"\\connect {escape_identifier(database)}\n")
        self.process.write(SESSION_PIN)
        try:
            info = self.query(
                "SET client_min_messages = warning; SET application_name = 'spawn'; "
                "SELECT json_build_object('database', current_database(), 'user', current_user, "
                "'pid', pg_backend_pid(), 'server_version_num', "
                "current_setting('server_version_num')::int, 'timeouts_off', "
                f"(SELECT count(set_config(name, '0', false)) FROM pg_catalog.pg_settings "
                f"WHERE name IN {CONTROL_TIMEOUTS}))",
                what="connect",
            )
        except DatabaseError:
            self.process.stop()
            if database is None:
                raise
            exit = self.process.exit
            detail = exit.stderr if exit else bytes(self.process.stderr_tail).decode(
                "utf-8", "replace")
            raise DatabaseError(
                f"cannot connect to spawn_database {database!r} with {_command(argv)}: "
                f"{mask_secrets(_last_lines(detail)) or 'psql reported no error'}; create "
                "that database or "
                "fix `spawn_database` in the target"
            ) from None
        import json

        self.info: dict[str, object] = json.loads(info)
        self.database = str(self.info["database"])

    def query(self, sql: str, *, what: str = "query") -> str:
        """Run ``sql``; return what it printed (unaligned, tuples only), or raise ControlError."""
        self._seq += 1
        seq = self._seq
        self.process.stderr_tail.clear()
        end = "" if sql.rstrip().endswith(";") else ";"
        self.process.write(
            f"{sql}{end}\n\\echo {marker_literal(self.process.nonce, 'q')}{seq} :ERROR\n")
        out: list[str] = []
        saved = self.process.on_output
        self.process.on_output = out.append
        try:
            while True:
                for line in list(self.process.lines):
                    self.process.lines.popleft()
                    if f"'q{seq} " in line:
                        failed = line.rstrip("\n").endswith(" true")
                        return self._result(out, failed, what)
                if self.process.exit is not None:
                    raise DatabaseError(self._died(what))
                self.process.pump(None)
        finally:
            self.process.on_output = saved

    def _result(self, out: list[str], failed: bool, what: str) -> str:
        if failed:
            self.process.pump(0)
            detail = bytes(self.process.stderr_tail).decode("utf-8", "replace").strip()
            raise ControlError(f"{what} failed: {detail or 'psql reported an error'}")
        return "".join(out).rstrip("\n")

    def _died(self, what: str) -> str:
        exit = self.process.exit
        assert exit is not None
        return (
            f"psql ({_command(self.argv)}) exited with code {exit.code} during {what}: "
            f"{mask_secrets(_last_lines(exit.stderr)) or '(no error output)'}"
        )

    def close(self) -> None:
        if self.process.exit is None:
            self.process.write("\\q\n")
            self.process.close_input()
            self.process.wait_exit(timeout=10)


def _command(argv: list[str]) -> str:
    return display_command(argv)


def _last_lines(text: str, count: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


@dataclass(frozen=True)
class PsqlEngine:
    """The ``postgres-psql`` engine: every session is the target's psql command."""

    argv: list[str]

    def control_session(self, database: str | None) -> ControlSession:
        return ControlSession(self.argv, database=database)

    def script_session(self, application_name: str | None = None,
                       options: Sequence[tuple[str, str]] = ()) -> PsqlProcess:
        """A psql for scripts; ``application_name`` reaches every connection it makes,
        ``\\connect`` included (through ``PGAPPNAME``), where psql itself is started, and
        so do ``options`` (``-c name=value`` in ``PGOPTIONS``) when ``carries_options``."""
        env = None
        if application_name is not None:
            env = dict(os.environ, PGAPPNAME=application_name)
        if options and self.carries_options:
            env = dict(os.environ) if env is None else env
            given = env.get("PGOPTIONS", "").strip()
            ours = " ".join(f"-c {name}={value}" for name, value in options)
            env["PGOPTIONS"] = f"{given} {ours}" if given else ours
        return PsqlProcess(self.argv, env=env)

    @property
    def carries_options(self) -> bool:
        """psql started directly gets spawn's environment, ``PGOPTIONS`` included; a
        wrapper (``docker exec``, ``ssh``) may not pass it on to the psql it runs."""
        import os.path

        return os.path.basename(self.argv[0]).startswith("psql")

    @property
    def stops_with_spawn(self) -> bool:
        """psql itself dies with spawn (Linux parent-death signal); a wrapper such as
        ``docker exec`` or ``ssh`` may leave the real psql running, so it does not count."""
        import os.path

        return STOPS_WITH_SPAWN and os.path.basename(self.argv[0]).startswith("psql")
