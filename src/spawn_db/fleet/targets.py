"""Several targets at once: expand a ``--target`` selection, run one command per target.

A selection is what ``--target`` (repeated, or comma-separated), ``SPAWN_TARGET`` or the
top-level ``target`` says: target names, ``[target_groups]`` names and glob patterns
(``shard-*``), expanded in the order given, each target once. ``spawn.toml``'s own order
decides the order of the targets one pattern matches. Something that names no target is a
configuration error (exit 2) with a did-you-mean, never an empty fleet.

Each target then gets the ``Config`` a single-target run would have (``for_target``), so
its tracking schema, lock, environment, variables file, pins and secrets are its own, and
``run_on_targets`` drives one unit of ``fleet.runner`` per target.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase

from spawn_db.config import TARGET_PATTERN_CHARS, Config
from spawn_db.errors import ConfigError
from spawn_db.fleet.runner import Done, FleetProgress, FleetReport, run_fleet


def resolve_selection(config: Config) -> Config:
    """``config`` with its selection resolved: one target (as if named alone) or several
    (``several_targets``, which single-target commands refuse)."""
    if config.target_selection is None:
        return config
    names = expand(config.target_selection, config, origin=_origin(config))
    if len(names) == 1:
        return dataclasses.replace(config, target_override=names[0], target_selection=None)
    return dataclasses.replace(config, target_override=None, target_selection=None,
                               several_targets=names)


def _origin(config: Config) -> str:
    if config.target_override is not None:
        return "--target (or SPAWN_TARGET)"
    return f"`target` in {config.path}"


def expand(selection: str, config: Config, *, origin: str = "--target") -> tuple[str, ...]:
    """The target names ``selection`` stands for, in order, without repeats."""
    found: dict[str, None] = {}
    for word in _words(selection, config, origin):
        for name in _expand_word(word, config, origin, ()):
            found.setdefault(name, None)
    return tuple(found)


def _words(selection: str, config: Config, origin: str) -> list[str]:
    """A whole value that is a target's or group's name stays one word (even with a
    comma in it); otherwise it is split at commas."""
    if selection in config.targets or selection in config.target_groups:
        return [selection]
    words = [w.strip() for w in selection.split(",")]
    if not all(words):
        raise ConfigError(f"{origin}: {selection!r} has an empty name between commas; "
                          "write the names as `a,b` (or repeat --target)")
    return words


def _expand_word(word: str, config: Config, origin: str,
                 groups_seen: tuple[str, ...]) -> list[str]:
    if word in config.targets:
        return [word]
    if word in config.target_groups:
        return _expand_group(word, config, groups_seen)
    if TARGET_PATTERN_CHARS & set(word):
        matched = [name for name in config.targets if fnmatchcase(name, word)]
        if matched:
            return matched
        raise ConfigError(
            f"{_where(origin, groups_seen)}: the pattern {word!r} matches no target in "
            f"{config.path}; the targets are: {_listing(config.targets)}")
    raise ConfigError(
        f"{_where(origin, groups_seen)}: {word!r} is neither a target nor a target group in "
        f"{config.path}{_did_you_mean(word, config)}; the targets are: "
        f"{_listing(config.targets)}; the groups: {_listing(config.target_groups)}")


def _expand_group(group: str, config: Config, groups_seen: tuple[str, ...]) -> list[str]:
    if group in groups_seen:
        cycle = " -> ".join((*groups_seen[groups_seen.index(group):], group))
        raise ConfigError(f"{config.path}: [target_groups] contain each other ({cycle}); "
                          "a group may name other groups, but not itself through them")
    names: list[str] = []
    for member in config.target_groups[group]:
        names.extend(_expand_word(member, config, "", (*groups_seen, group)))
    return names


def _where(origin: str, groups_seen: tuple[str, ...]) -> str:
    if groups_seen:
        return f"[target_groups] `{groups_seen[-1]}`"
    return origin


def _did_you_mean(word: str, config: Config) -> str:
    close = difflib.get_close_matches(word, [*config.targets, *config.target_groups], n=1,
                                      cutoff=0.5)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _listing(names: Mapping[str, object]) -> str:
    return ", ".join(names) or "(none defined)"


def for_target(config: Config, name: str) -> Config:
    """The config a run with ``--target NAME`` alone would have."""
    return dataclasses.replace(config, target_override=name, target_selection=None,
                               several_targets=())


def run_on_targets(
    config: Config,
    work: Callable[[Config], Done],
    *,
    jobs: int = 1,
    canary: int = 0,
    continue_on_error: bool = False,
    progress: FleetProgress | None = None,
    names: Sequence[str] | None = None,
) -> FleetReport:
    """``work`` once per selected target (``names``, else ``several_targets``), each with
    that target's own config, under ``run_fleet``'s rules."""
    chosen = tuple(names if names is not None else config.several_targets)
    return run_fleet(chosen, lambda name: work(for_target(config, name)), jobs=jobs,
                     canary=canary, continue_on_error=continue_on_error, progress=progress)
