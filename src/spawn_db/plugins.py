"""Plugins: installed Python packages that extend spawn through entry points.

Groups: ``spawn.template`` (an object with ``filters``, ``functions`` and ``tests``
mappings), ``spawn.commands`` (a click command added under ``spawn``), ``spawn.secrets``
(a callable ``fetch(value) -> str``, used as ``[secrets.<name>] <plugin> = value``),
``spawn.hooks`` (hook callables) and ``spawn.sources`` (a package's spawn folder, as a
path or a callable returning one, for ``[[sources]] package = ...``: migrate/sources.py).

Entry points are looked up only when something asks for them (a template that names a
filter spawn does not have, a command name spawn does not know, a secret provider), since
scanning the installed distributions costs tens of milliseconds. A plugin that fails to
load is reported through ``on_warning`` and left out; ``SPAWN_NO_PLUGINS=1`` (or the
global ``--no-plugins``) turns them all off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

GROUPS = ("spawn.template", "spawn.commands", "spawn.secrets", "spawn.hooks", "spawn.sources")
DISABLE_VARIABLE = "SPAWN_NO_PLUGINS"
DETERMINISTIC_MARK = "spawn_deterministic"

# Where warnings go; the CLI points it at its warning printer. Until then they are kept.
on_warning: Callable[[str], None] | None = None
pending_warnings: list[str] = []


@dataclass(frozen=True)
class Plugin:
    """One installed entry point: what it names and which distribution ships it."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    location: str


def enabled() -> bool:
    return os.environ.get(DISABLE_VARIABLE, "").strip().lower() not in ("1", "true", "yes")


def disable() -> None:
    """Every later lookup finds nothing, in this process and in the ones it starts."""
    os.environ[DISABLE_VARIABLE] = "1"


def deterministic(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a template function or filter as returning the same output for the same
    arguments, forever: only such functions may be used in a pinned migration."""
    setattr(function, DETERMINISTIC_MARK, True)
    return function


def is_deterministic(function: Any) -> bool:
    return getattr(function, DETERMINISTIC_MARK, False) is True


def installed(group: str) -> tuple[Plugin, ...]:
    """The entry points of ``group``, whether plugins are enabled or not (for listing)."""
    return tuple(_describe(entry) for entry in _entry_points(group))


def load(group: str) -> dict[str, Any]:
    """``name -> loaded object`` for ``group``; nothing when plugins are off."""
    if not enabled():
        return {}
    return _load(group)


@cache
def _load(group: str) -> dict[str, Any]:
    loaded = {}
    for entry in _entry_points(group):
        try:
            loaded[entry.name] = entry.load()
        except Exception as exc:  # a broken plugin is the plugin's problem, not the run's
            warn(f"plugin {entry.name} ({group} = {entry.value}) failed to load: "
                 f"{type(exc).__name__}: {exc}; spawn goes on without it (--no-plugins or "
                 f"{DISABLE_VARIABLE}=1 turns plugins off)")
    return loaded


def try_load(plugin: Plugin) -> str | None:
    """None when ``plugin`` loads, else why not (for ``spawn plugins``)."""
    for entry in _entry_points(plugin.group):
        if entry.name == plugin.name and entry.value == plugin.value:
            try:
                entry.load()
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
    return None


def warn(message: str) -> None:
    if on_warning is not None:
        on_warning(message)
    else:
        pending_warnings.append(message)


def _entry_points(group: str) -> Any:
    from importlib.metadata import entry_points

    return entry_points(group=group)


def _describe(entry: Any) -> Plugin:
    dist = entry.dist
    name = dist.metadata["Name"] if dist is not None else "?"
    version = dist.version if dist is not None else "?"
    location = str(dist.locate_file("")) if dist is not None else "?"
    return Plugin(entry.group, entry.name, entry.value, name, version, location)
