"""An example spawn plugin: template functions, a command, a secret provider and hooks."""

from __future__ import annotations

import json
import os
import random
from types import SimpleNamespace

import click

from spawn_db.plugins import deterministic


@deterministic
def shout(value: str) -> str:
    """A filter: the same input always gives the same output, so pinned migrations may
    use it."""
    return str(value).upper() + "!"


@deterministic
def quarter_table(year: int, quarter: int) -> str:
    """A function returning a name, for {{ quarter_table(2026, 1) | escape_identifier }}."""
    return f"sales_{year}_q{quarter}"


def lucky_number() -> int:
    """Not deterministic: usable in tests and unpinned renders, refused in pinned ones."""
    return random.randint(1, 100)


def is_even(value: int) -> bool:
    return value % 2 == 0


template = SimpleNamespace(
    filters={"shout": shout},
    functions={"quarter_table": quarter_table, "lucky_number": lucky_number},
    tests={"even": is_even},
)


@click.command()
@click.argument("name", default="world")
def hello(name: str) -> None:
    """Say hello (a command from the example plugin)."""
    click.echo(f"hello, {name}")


def reversed_secret(value: str) -> str:
    """A secret provider: [secrets.x] reversed = "drowssap" gives "password"."""
    return value[::-1]


def record_event(event: str, info: dict[str, str]) -> None:
    """A hook: append the event and what spawn said about it to the file that
    SPAWN_EXAMPLE_HOOK_LOG names (one JSON object per line)."""
    with open(os.environ["SPAWN_EXAMPLE_HOOK_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"event": event, **info}, sort_keys=True) + "\n")


def boom(event: str, info: dict[str, str]) -> None:
    raise RuntimeError(f"refusing {event}")
