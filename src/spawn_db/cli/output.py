"""The one place the CLI writes to the terminal: text, warnings, JSON, rendered SQL."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import click

ColorMode = Literal["auto", "always", "never"]


@dataclass
class Settings:
    """The global output options (``--color``, ``-q``, ``-v``), set once by the ``cli`` group.

    Module state rather than a parameter because every command prints through the
    functions below, and threading the ``App`` into each of them would change every call.
    """

    color: ColorMode = "auto"
    quiet: bool = False
    verbose: bool = False


SETTINGS = Settings()


def configure(*, color: ColorMode, quiet: bool, verbose: bool) -> None:
    SETTINGS.color = color
    SETTINGS.quiet = quiet
    SETTINGS.verbose = verbose


def info(message: str) -> None:
    """A result: stdout, what ``spawn ... > file`` keeps (see docs/index.md, "Output").

    With ``--color always`` click must not strip the colour codes from a pipe.
    """
    echo(message, color=True if SETTINGS.color == "always" else None)


def note(message: str) -> None:
    """Progress, a summary, a hint or a listing before a question: stderr, never a result.

    ``--quiet`` drops these: only results, warnings and errors remain.
    """
    if not SETTINGS.quiet:
        echo(message, err=True)


def detail(message: str) -> None:
    """What only ``--verbose`` shows (the commands spawn starts): stderr."""
    if SETTINGS.verbose:
        echo(message, err=True)


def warn(message: str) -> None:
    echo(message if message.startswith("warning:") else f"warning: {message}", err=True)


def finding(message: str) -> None:
    """One failure a checking command found (it goes on, then exits 1): ``error: ...``
    on stderr, never dropped by ``--quiet``."""
    click.echo(f"error: {message}", err=True)


def emit_json(payload: Any) -> None:
    echo(json.dumps(payload, indent=2, ensure_ascii=False))


def echo(message: str, *, err: bool = False, color: bool | None = None) -> None:
    """Write one line; while a live bar is drawn on the same terminal, above the bar.

    Every line the CLI prints comes through here (or through ``LiveBar.write``), under
    the lock the bar takes to appear, so a line is never half-written when the bar is
    drawn, and never written where the bar will redraw itself over it. Without a bar
    (piped, ``-q``, a short run) this is ``click.echo``, byte for byte.
    """
    with _LOCK:
        bar = _ACTIVE
        if bar is not None and (err or sys.stdout.isatty()):
            bar.write_line(message)
            return
        click.echo(message, err=err, color=color)


SPOOL_IN_MEMORY = 8 * 1024 * 1024


def stream_complete(chunks: Iterable[str], *, trailer: str = "") -> None:
    """Write the output only once all of it rendered, so an error never leaves half.

    The render spools to memory, then to a temporary file past 8 MB, which keeps
    memory bounded for huge outputs while ``build > file.sql`` or ``build | psql``
    never sees a truncated script.
    """
    import shutil
    import tempfile

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+b") as spool:
        for chunk in chunks:
            spool.write(chunk.encode("utf-8"))
        spool.write(trailer.encode("utf-8"))
        spool.seek(0)
        sys.stdout.flush()
        shutil.copyfileobj(spool, sys.stdout.buffer, 1024 * 1024)
        sys.stdout.buffer.flush()


def write_sql(data: bytes) -> None:
    """A rendered script on stdout, as rendered (bytes, not re-encoded), ending with a
    newline so that the next script or header starts on a line of its own."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data if data.endswith(b"\n") or not data else data + b"\n")
    sys.stdout.buffer.flush()


def use_color(stream_is_err: bool = False) -> bool:
    """The one colour rule: ``never`` and ``always`` are obeyed; ``auto`` colours only a
    terminal, and not when ``NO_COLOR`` is set (https://no-color.org) or ``TERM=dumb``."""
    if SETTINGS.color != "auto":
        return SETTINGS.color == "always"
    target = sys.stderr if stream_is_err else sys.stdout
    if not target.isatty():
        return False
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, style: str) -> str:
    """``text`` in a rich style (``"bold red"``) as ANSI codes, for output whose colour
    the caller already decided with ``use_color``. Only the codes are added: the text
    itself is never wrapped, padded or stripped, so coloured output has the same
    characters as plain output. rich is imported here, never on the plain path."""
    if not text:
        return text
    from rich.color import ColorSystem
    from rich.style import Style

    return Style.parse(style).render(text, color_system=ColorSystem.STANDARD)


def show_commands() -> None:
    """With ``--verbose``: print each command line spawn starts (psql, pg_ctl, a provider)
    on stderr, passwords masked.

    An audit hook sees every ``subprocess.Popen``, wherever in the library it is called,
    so no lower layer needs to know about the CLI's verbosity. Hooks cannot be removed,
    which suits a process that runs one command.
    """
    from spawn_db.db.target import display_command

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "subprocess.Popen" or not SETTINGS.verbose:
            return
        argv = args[1]
        words = [os.fsdecode(argv)] if isinstance(argv, (str, bytes)) else [
            os.fsdecode(word) for word in argv]
        detail(f"+ {display_command(words)}")

    sys.addaudithook(hook)


# -- live progress --------------------------------------------------------------------------

PROGRESS_DELAY_VARIABLE = "SPAWN_PROGRESS_DELAY"
DEFAULT_PROGRESS_DELAY = 1.0
REDRAW_EVERY = 0.1

_LOCK = threading.RLock()
_ACTIVE: LiveBar | None = None


def live_progress_allowed() -> bool:
    """A live bar needs stderr to be a terminal that can move its cursor (not
    ``TERM=dumb``), and progress to be wanted (not ``--quiet``). Colour is decided apart,
    by ``use_color``: ``--color never`` gives a bar without colours."""
    if SETTINGS.quiet or os.environ.get("TERM") == "dumb":
        return False
    return sys.stderr.isatty()


def progress_delay() -> float:
    """Seconds a run must last before its bar appears (``SPAWN_PROGRESS_DELAY``, default 1):
    a bar that flashes for a fraction of a second is noise, and 0 shows it at once."""
    raw = os.environ.get(PROGRESS_DELAY_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_DELAY
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        # A warning, not an error: a cosmetic setting must not stop a deployment midway.
        warn(f"{PROGRESS_DELAY_VARIABLE}={raw!r} is not a number of seconds, so progress "
             f"bars appear after {DEFAULT_PROGRESS_DELAY:g} s; set it to 0 (at once) or more")
        return DEFAULT_PROGRESS_DELAY
    return value


class LineBuffer:
    """Whole lines out of a byte stream that arrives in arbitrary pieces (psql's output
    through a pipe), decoded as UTF-8 the way a terminal shows it (``U+FFFD`` for a
    byte that is not UTF-8), for printing above a live bar, which would be drawn over
    half a line. A character split between two pieces is decoded whole."""

    def __init__(self) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completed, without their newlines."""
        lines = (self._pending + self._decoder.decode(data)).split("\n")
        self._pending = lines.pop()
        return lines

    def end(self) -> list[str]:
        """The last line when the stream did not end with a newline."""
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [rest] if rest else []


def clock(seconds: float | None) -> str:
    """``H:MM:SS``, as rich shows elapsed time (past a day, hours go on counting rather
    than rich's ``1 day, …``); ``-:--:--`` when not known yet."""
    if seconds is None:
        return "-:--:--"
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class LiveBar:
    """The one live progress bar of apply, pin and the test commands, on stderr.

    Count, the item(s) running now, elapsed time and an ETA (elapsed per finished
    item times the items left, so with ``-j`` the parallel speed counts). It appears
    only on a terminal (``live_progress_allowed``) and only once the run has lasted
    ``progress_delay()`` seconds, drawn by rich, which is imported then and not
    before; it is transient, so what stays on screen is exactly what a pipe gets.
    Without a terminal every method does nothing and costs nothing.

    Use as a context manager, or call ``close`` in a ``finally``: a bar left running
    would draw over the error that stopped the command.
    """

    def __init__(self, total: int | None, verb: str) -> None:
        self.total = total
        self.verb = verb
        self.completed = 0
        self.running: list[str] = []
        self.phase = ""
        self.note = ""
        self.started = time.monotonic()
        self.enabled = live_progress_allowed()
        self._progress: Any = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        self._closed = False
        self._drawn = 0.0
        if self.enabled:
            self._arm(progress_delay())

    def __enter__(self) -> LiveBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def begin(self, name: str) -> None:
        """``name`` started (with ``-j``, several may run at once)."""
        with _LOCK:
            self.running.append(name)
            self._update()
            now = time.monotonic()
            if self._progress is not None and now - self._drawn >= REDRAW_EVERY:
                # A new item is drawn at once (rich redraws ten times a second), but not
                # more often: a thousand short migrations must not mean a thousand redraws.
                self._drawn = now
                self._progress.refresh()

    def end(self, name: str) -> None:
        """``name`` finished, whatever its outcome."""
        with _LOCK:
            if name in self.running:
                self.running.remove(name)
            self.completed += 1
            self._update()

    def set_phase(self, text: str, total: int | None = None) -> None:
        """What is going on between items (``snapshotting components/``), and from now on
        how many items there are when that was not known at the start."""
        with _LOCK:
            self.phase = text
            if total is not None:
                self.total = total
                self.completed = 0
            self._update()
            if self._progress is not None:
                # Drawn now: a phase may end before rich's next timed redraw.
                self._progress.refresh()

    def write_line(self, text: str) -> None:
        """Print ``text`` (one or more lines, ANSI colours kept) above the bar; the caller
        holds ``_LOCK`` (``echo`` does)."""
        from rich.text import Text

        self._progress.console.print(Text.from_ansi(text.removesuffix("\n")), soft_wrap=True,
                                     highlight=False)

    def write(self, text: str) -> None:
        """Write progress text to stderr: above the bar when it is shown, else as is."""
        with _LOCK:
            if self._progress is not None:
                self.write_line(text)
                return
            sys.stderr.write(text)
            sys.stderr.flush()

    def close(self) -> None:
        """Remove the bar (it is transient) and stop the timer that would show it."""
        global _ACTIVE
        with _LOCK:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
                if _ACTIVE is self:
                    _ACTIVE = None

    def set_note(self, text: str) -> None:
        """A remark drawn after what is running (a fleet's slowest unit so far)."""
        with _LOCK:
            self.note = text
            self._update()

    def description(self) -> str:
        if not self.running:
            doing = self.phase
        else:
            shown = ", ".join(self.running[:3])
            more = f" and {len(self.running) - 3} more" if len(self.running) > 3 else ""
            doing = f"{self.verb} {shown}{more}"
        return f"{doing} · {self.note}" if self.note and doing else doing or self.note

    def eta(self) -> float | None:
        """Seconds left: the average time per finished item so far, times the items left."""
        if not self.total or not self.completed:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.completed * max(0, self.total - self.completed)

    def _arm(self, delay: float) -> None:
        if delay <= 0:
            self._show()
            return
        self._timer = threading.Timer(delay, self._show)
        self._timer.daemon = True
        self._timer.start()

    def _show(self) -> None:
        global _ACTIVE
        with _LOCK:
            if self._closed or self._progress is not None:
                return
            self._progress = _rich_progress(self)
            self._task = self._progress.add_task(self.description(), total=self.total,
                                                 completed=self.completed)
            self._progress.start()
            _ACTIVE = self

    def _update(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=self.total, completed=self.completed,
                                  description=self.description())


BAR_WIDTH = 20
CLOCK_WIDTH = len("0:00:00 ETA 0:00:00")


def _rich_progress(bar: LiveBar) -> Any:
    """rich's ``Progress`` with spawn's columns: spinner, ``n/total``, bar, elapsed
    (since the run started, not since the bar appeared), ETA, what is running.

    The bar stays on one line: what is running is cut (with an ellipsis) to the width
    the other columns leave, since rich would rather squeeze the count and the clock.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task
    from rich.text import Text

    console = Console(stderr=True, no_color=not use_color(stream_is_err=True),
                      highlight=False)

    class Count(ProgressColumn):
        def render(self, task: Task) -> Text:
            total = "?" if task.total is None else str(int(task.total))
            return Text(f"{int(task.completed):>{len(total)}}/{total}", style="progress.download")

    class Clock(ProgressColumn):
        def render(self, task: Task) -> Text:
            elapsed = clock(time.monotonic() - bar.started)
            return Text(f"{elapsed} ETA {clock(bar.eta())}", style="progress.elapsed")

    class Doing(ProgressColumn):
        def render(self, task: Task) -> Text:
            count = 2 * len("?" if task.total is None else str(int(task.total))) + 1
            used = 2 + count + 1 + BAR_WIDTH + 1 + CLOCK_WIDTH + 1
            text = Text(task.description, no_wrap=True)
            text.truncate(max(8, console.width - used - 1), overflow="ellipsis")
            return text

    return Progress(SpinnerColumn(), Count(), BarColumn(bar_width=BAR_WIDTH), Clock(), Doing(),
                    console=console, transient=True, redirect_stdout=False,
                    redirect_stderr=False)
