"""The one place the CLI writes to the terminal: text, warnings, JSON, rendered SQL."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
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
    click.echo(message, color=True if SETTINGS.color == "always" else None)


def note(message: str) -> None:
    """Progress, a summary, a hint or a listing before a question: stderr, never a result.

    ``--quiet`` drops these: only results, warnings and errors remain.
    """
    if not SETTINGS.quiet:
        click.echo(message, err=True)


def detail(message: str) -> None:
    """What only ``--verbose`` shows (the commands spawn starts): stderr."""
    if SETTINGS.verbose:
        click.echo(message, err=True)


def warn(message: str) -> None:
    click.echo(message if message.startswith("warning:") else f"warning: {message}", err=True)


def finding(message: str) -> None:
    """One failure a checking command found (it goes on, then exits 1): ``error: ...``
    on stderr, never dropped by ``--quiet``."""
    click.echo(f"error: {message}", err=True)


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


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


def use_color(stream_is_err: bool = False) -> bool:
    """The one colour rule: ``never`` and ``always`` are obeyed; ``auto`` colours only a
    terminal, and not when ``NO_COLOR`` is set (https://no-color.org) or ``TERM=dumb``."""
    if SETTINGS.color != "auto":
        return SETTINGS.color == "always"
    target = sys.stderr if stream_is_err else sys.stdout
    if not target.isatty():
        return False
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


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
