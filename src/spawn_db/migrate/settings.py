"""``migrations/<m>/migration.toml``: a migration's optional lifecycle settings.

The file is new with this tool; the Rust tool ignores files it does not know
in a migration folder, so a project that uses it still deploys with both
tools (the Rust tool simply applies everything in name order). Every key is
optional and a missing file means the defaults.

Settings are read from the working tree, never from the pin: they say how a
migration is planned, not what it renders.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spawn_db.config import Config, closest_key, toml_error_location
from spawn_db.errors import DependencyCycle, MigrationSettingsError

if TYPE_CHECKING:
    from spawn_db.migrate.steps import Step

SETTINGS_FILE = "migration.toml"
KEYS = ("description", "requires", "conflicts", "draft", "out_of_order", "steps", "baseline")


@dataclass(frozen=True)
class MigrationSettings:
    """What ``migration.toml`` says; the defaults when there is none."""

    description: str = ""
    requires: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    draft: bool = False
    out_of_order: bool = False
    warnings: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    # A baseline (``spawn schema flatten``) replaces every migration older than it (plan.py).
    baseline: bool = False


DEFAULT = MigrationSettings()


def settings_path(config: Config, name: str) -> Path:
    return config.migrations_dir / name / SETTINGS_FILE


def load_settings(config: Config, name: str) -> MigrationSettings:
    """One migration's settings, checked for types; references are checked by ``load_all``."""
    return _load(os.path.join(config.migrations_dir, name, SETTINGS_FILE))


def load_settings_file(path: Path) -> MigrationSettings:
    """The settings in ``path`` (a ``migration.toml``); the defaults when it is missing."""
    return _load(str(path))


def _load(where: str) -> MigrationSettings:
    """Plain string paths and ``open``: planning reads ten thousand of these (pathlib's
    object per path costs more than the read)."""
    try:
        with open(where, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return DEFAULT
    except OSError as exc:
        raise MigrationSettingsError(
            f"{where}: cannot be read ({exc.strerror}); fix its permissions") from None
    path = where
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MigrationSettingsError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8"
                                     ) from None
    except tomllib.TOMLDecodeError as exc:
        raise MigrationSettingsError(
            f"{toml_error_location(Path(path), exc)}: invalid TOML: {exc}; fix the syntax"
        ) from None
    settings = parse_settings(raw, path)
    if settings.steps and os.path.isfile(os.path.join(os.path.dirname(where), "up.sql")):
        raise MigrationSettingsError(
            f"{path}: [[steps]] and an up.sql in one migration; a scripted migration has no "
            "up.sql: move its SQL into a step (steps/NN.sql) or drop the [[steps]]")
    return settings


def parse_settings(raw: Mapping[str, Any], path: Path | str) -> MigrationSettings:
    warnings = tuple(
        f"warning: unknown key `{key}` in {path} (ignored; the closest known key is "
        f"`{closest_key(key, KEYS)}`)"
        for key in raw if key not in KEYS
    )
    return MigrationSettings(
        description=_string(raw, "description", path),
        requires=_names(raw, "requires", path),
        conflicts=_names(raw, "conflicts", path),
        draft=_flag(raw, "draft", path),
        out_of_order=_flag(raw, "out_of_order", path),
        warnings=warnings,
        steps=_steps(raw, path),
        baseline=_flag(raw, "baseline", path),
    )


def _steps(raw: Mapping[str, Any], path: Path | str) -> tuple[Step, ...]:
    """``[[steps]]``: a scripted migration's steps (``steps.py``)."""
    if "steps" not in raw:
        return ()
    from spawn_db.migrate.steps import parse_steps

    return parse_steps(raw["steps"], path)


def _string(raw: Mapping[str, Any], key: str, path: Path | str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise MigrationSettingsError(
            f"{path}: `{key}` must be a string, not {_shown(value)}; write {key} = \"...\"")
    return value


def _flag(raw: Mapping[str, Any], key: str, path: Path | str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise MigrationSettingsError(
            f"{path}: `{key}` must be true or false, not {_shown(value)}")
    return value


def _names(raw: Mapping[str, Any], key: str, path: Path | str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise MigrationSettingsError(
            f"{path}: `{key}` must be a list of migration names, not {_shown(value)}; "
            f"write {key} = [\"20260101090000-create-customers\"]")
    return tuple(dict.fromkeys(v.rstrip("/") for v in value))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_all(config: Config, names: Sequence[str]) -> dict[str, MigrationSettings]:
    """The settings of every migration in ``names``, with references and cycles checked.

    An unknown name in ``requires``/``conflicts``, a migration requiring itself
    or a cycle is a ``MigrationSettingsError``/``DependencyCycle`` (exit 2):
    no plan that depends on these files can be trusted.
    """
    folder = str(config.migrations_dir)
    settings = {name: _load(os.path.join(folder, name, SETTINGS_FILE)) for name in names}
    known = set(names)
    for name, found in settings.items():
        _check_references(config, name, found, known)
    cycle = find_cycle({n: s.requires for n, s in settings.items()})
    if cycle:
        raise DependencyCycle(
            f"migrations require each other in a cycle: {' -> '.join(cycle)}; remove one of "
            f"these `requires` entries (in {SETTINGS_FILE} of the migrations named)")
    return settings


def _check_references(config: Config, name: str, found: MigrationSettings,
                      known: set[str]) -> None:
    for key, refs in (("requires", found.requires), ("conflicts", found.conflicts)):
        for ref in refs:
            if ref == name:
                raise MigrationSettingsError(
                    f"{settings_path(config, name)}: `{key}` names the migration itself; "
                    "remove it")
            if ref not in known:
                raise MigrationSettingsError(
                    f"{settings_path(config, name)}: `{key}` names {ref!r}, which is not a "
                    f"migration in {config.migrations_dir}{_did_you_mean(ref, known)}; use the "
                    "full folder name of an existing migration")


def _did_you_mean(ref: str, known: Iterable[str]) -> str:
    import difflib

    by_suffix = sorted(n for n in known if n.endswith("-" + ref) or n.endswith("_" + ref))
    close = by_suffix or difflib.get_close_matches(ref, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle in the ``requires`` graph as ``[a, b, ..., a]``, or None.

    Iterative depth-first search, so ten thousand migrations in a chain do not
    hit Python's recursion limit.
    """
    state: dict[str, int] = {}
    for root in sorted(edges):
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        state[root] = 1
        while stack:
            node, index = stack[-1]
            nexts = edges.get(node, ())
            if index == len(nexts):
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            stack[-1] = (node, index + 1)
            child = nexts[index]
            if state.get(child) == 1:
                return [*path[path.index(child):], child]
            if not state.get(child) and child in edges:
                state[child] = 1
                stack.append((child, 0))
                path.append(child)
    return None
