"""Running one SQL script through psql with its stdout and stderr merged, under a deadline.

psql gets one pipe for both streams, so its output keeps the order in which
psql wrote it. The script is written and the output read in one loop over
both pipes (no threads, no deadlock however much either side produces), and
the loop checks the deadline and a cancel event between reads.

A stopped test must not leave a backend behind: killing psql alone is not
enough, because a backend busy in ``pg_sleep`` or a long query only notices
its client is gone when the statement ends. Every run therefore sets its own
``application_name`` (``PGAPPNAME``), and a stopped run is followed by a short
second session that terminates every backend with that name and waits until
they are gone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from spawn_db.errors import CommandUnavailable, TestError

PIPE_CHUNK = 64 * 1024
POLL_SECONDS = 0.2
REAPER_TIMEOUT = 15.0
MAX_APPLICATION_NAME = 63

OutputSink = Callable[[bytes], None]


@dataclass(frozen=True)
class ScriptRun:
    """What psql did with a script: its merged output and how it ended."""

    output: bytes
    exit_code: int | None
    duration: float
    timed_out: bool = False
    cancelled: bool = False


class RenderFailed(Exception):
    """The script's generator raised after psql had started; ``error`` is the original."""

    def __init__(self, error: BaseException, run: ScriptRun) -> None:
        super().__init__(str(error))
        self.error = error
        self.run = run


def application_name(label: str) -> str:
    """A name unique to one run, recognisable in ``pg_stat_activity``, within 63 bytes."""
    return f"spawn-test-{secrets.token_hex(6)}-{label}"[:MAX_APPLICATION_NAME]


def run_script(
    argv: list[str],
    script: Iterable[bytes],
    *,
    app_name: str,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    sink: OutputSink | None = None,
    reaper: Callable[[str], None] | None = None,
) -> ScriptRun:
    """Stream ``script`` into ``argv`` (a psql command) and collect what it prints.

    When the deadline passes or ``cancel`` is set, the process group is killed
    and ``reaper(app_name)`` terminates the server side of the session.
    """
    from spawn_db.db.target import mask_secrets, session_env

    env = session_env(PGAPPNAME=app_name)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )
    except OSError as exc:
        raise CommandUnavailable.starting(mask_secrets(repr(argv[0])), exc) from None
    session = _Session(proc, iter(script), sink)
    deadline = None if timeout is None else start + timeout
    stopped = "ok"
    try:
        stopped = session.pump(deadline, cancel)
    except BaseException as exc:
        _kill(proc)
        if reaper is not None:
            reaper(app_name)
        if isinstance(exc, Exception) and session.render_error is exc:
            run = ScriptRun(bytes(session.output), proc.returncode, time.monotonic() - start)
            raise RenderFailed(exc, run) from exc
        raise
    if stopped != "ok":
        _kill(proc)
        if reaper is not None:
            reaper(app_name)
    exit_code = proc.wait()
    _close_pipes(proc)
    return ScriptRun(
        bytes(session.output),
        None if stopped != "ok" else exit_code,
        time.monotonic() - start,
        timed_out=stopped == "timeout",
        cancelled=stopped == "cancel",
    )


class _Session:
    """The two pipes of one psql process, pumped until its output ends."""

    def __init__(
        self, proc: subprocess.Popen[bytes], script: Iterator[bytes], sink: OutputSink | None
    ) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.script = script
        self.sink = sink
        self.output = bytearray()
        self.pending = memoryview(b"")
        self.render_error: BaseException | None = None
        self.stdin_fd = proc.stdin.fileno()
        self.stdout_fd = proc.stdout.fileno()
        os.set_blocking(self.stdin_fd, False)

    def pump(self, deadline: float | None, cancel: threading.Event | None) -> str:
        """Run until psql closes its output: ``ok``, ``timeout`` or ``cancel``."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.stdout_fd, selectors.EVENT_READ)
            selector.register(self.stdin_fd, selectors.EVENT_WRITE)
            writing = True
            while True:
                if writing and not self._refill():
                    selector.unregister(self.stdin_fd)
                    self._close_stdin()
                    writing = False
                wait = POLL_SECONDS
                if deadline is not None:
                    wait = min(wait, max(deadline - time.monotonic(), 0.0))
                for key, _events in selector.select(wait):
                    if key.fd == self.stdout_fd:
                        if not self._read():
                            return "ok"
                    elif not self._write():
                        selector.unregister(self.stdin_fd)
                        self._close_stdin()
                        writing = False
                if cancel is not None and cancel.is_set():
                    return "cancel"
                if deadline is not None and time.monotonic() >= deadline:
                    return "timeout"

    def _refill(self) -> bool:
        """Make sure bytes are pending for stdin; False when the script is exhausted."""
        if self.pending:
            return True
        parts: list[bytes] = []
        size = 0
        while size < PIPE_CHUNK:
            try:
                chunk = next(self.script)
            except StopIteration:
                break
            except Exception as exc:
                self.render_error = exc
                raise
            parts.append(chunk)
            size += len(chunk)
        self.pending = memoryview(b"".join(parts))
        return bool(self.pending)

    def _write(self) -> bool:
        """Write what stdin accepts; False when psql stopped reading (it exited)."""
        try:
            written = os.write(self.stdin_fd, self.pending)
        except BlockingIOError:
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.pending = memoryview(b"")
            return False
        self.pending = self.pending[written:]
        return True

    def _read(self) -> bool:
        data = os.read(self.stdout_fd, PIPE_CHUNK)
        if not data:
            return False
        self.output += data
        if self.sink is not None:
            self.sink(data)
        return True

    def _close_stdin(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.proc.stdin.close()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill psql and anything it started (a wrapper script, ssh, docker exec)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
    _close_pipes(proc)


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def reap_sql(app_name: str, *, prefix: bool = False) -> str:
    """SQL that terminates every backend named ``app_name`` (or, with ``prefix``, whose
    name starts with it: a test's sessions) and waits until none is left.

    ``pg_stat_clear_snapshot`` makes each loop see the current activity, not the
    snapshot taken at the first read in the transaction.
    """
    from spawn_db.escape import escape_literal

    name = escape_literal(app_name)
    which = (f"left(application_name, {len(app_name)}) = {name}" if prefix
             else f"application_name = {name}")
    return (
        "DO $spawn_reap$\n"
        "DECLARE\n"
        "  deadline timestamptz := clock_timestamp() + interval '10 seconds';\n"
        "BEGIN\n"
        "  LOOP\n"
        "    PERFORM pg_stat_clear_snapshot();\n"
        "    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity\n"
        f"      WHERE {which} AND pid <> pg_backend_pid();\n"
        "    EXIT WHEN NOT FOUND OR clock_timestamp() > deadline;\n"
        "    PERFORM pg_sleep(0.02);\n"
        "  END LOOP;\n"
        "END\n"
        "$spawn_reap$;\n"
    )


def make_reaper(argv: list[str], preamble: str, *, prefix: bool = False) -> Callable[[str], None]:
    """A reaper that connects with ``argv``; best effort, bounded by ``REAPER_TIMEOUT``.
    With ``prefix``, the name it is given is the start of the names to terminate."""

    def reap(app_name: str) -> None:
        script = [(preamble + reap_sql(app_name, prefix=prefix)).encode("utf-8")]
        with contextlib.suppress(TestError):
            run_script(argv, script, app_name=f"{app_name[:50]}-reaper",
                       timeout=REAPER_TIMEOUT)

    return reap
