"""The one place the CLI writes to the terminal: text, warnings, JSON, rendered SQL."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import click


def info(message: str) -> None:
    """A result: stdout, what ``spawn ... > file`` keeps (see docs/index.md, "Output")."""
    click.echo(message)


def note(message: str) -> None:
    """Progress, a summary, a hint or a listing before a question: stderr, never a result."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    click.echo(message if message.startswith("warning:") else f"warning: {message}", err=True)


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
    target = sys.stderr if stream_is_err else sys.stdout
    return target.isatty()
