"""The one place the CLI writes to the terminal: text, warnings, JSON, streams."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import click


def info(message: str) -> None:
    click.echo(message)


def warn(message: str) -> None:
    click.echo(message if message.startswith("warning:") else f"warning: {message}", err=True)


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def stream(chunks: Iterable[str], *, trailer: str = "") -> None:
    """Write chunks to stdout as they come, so large renders never sit in memory."""
    out = sys.stdout
    for chunk in chunks:
        out.write(chunk)
    out.write(trailer)
    out.flush()


def use_color(stream_is_err: bool = False) -> bool:
    target = sys.stderr if stream_is_err else sys.stdout
    return target.isatty()
