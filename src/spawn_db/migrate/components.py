"""Component change tracking: which component edits no migration carries yet.

Components are edited in place; a migration deploys an edit only once it is
pinned after it. For each component file this says whether the working tree
differs from the newest pin, whether any pin holds it at all, which
migrations read it when they render (recorded by rendering each pinned
migration, as ``status`` does), and, with the database, whether a migration
that reads it is still waiting to be applied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from spawn_db.config import Config
from spawn_db.errors import SpawnError
from spawn_db.migrate.pins import lock_roots
from spawn_db.pin import inspect
from spawn_db.pin.store import PinStore, hash_bytes

Flag = Literal["changed", "new", "unapplied", "uncarried"]


@dataclass(frozen=True)
class ComponentState:
    """One component file. ``flags``: ``changed`` (the working tree differs from the newest
    pin), ``new`` (in no pin), ``uncarried`` (its current bytes are in no pin: no migration
    would deploy them), ``unapplied`` (a pinned migration that reads it is not applied)."""

    path: str
    flags: tuple[Flag, ...]
    used_by: tuple[str, ...] = ()
    unapplied_by: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(frozen=True)
class ComponentReport:
    components: tuple[ComponentState, ...]
    newest_pin: str | None
    newest_migration: str | None
    database: bool
    problems: tuple[str, ...] = field(default=())

    @property
    def uncarried(self) -> list[ComponentState]:
        return [c for c in self.components if "uncarried" in c.flags]


def component_status(config: Config, *, database: bool = True) -> ComponentReport:
    """Every component file of the working tree and of any pin, with its flags.

    ``database`` reads the target's history for ``unapplied`` (a control session;
    nothing is written).
    """
    store = PinStore(config.pinned_dir)
    roots, broken = lock_roots(config)
    snapshots = {root: inspect.files_of(store, root, context=f"pin {root}")
                 for root in set(roots.values())}
    worktree = _worktree_hashes(str(config.components_dir))
    newest_migration = max(roots, default=None)
    newest = snapshots.get(roots[newest_migration], {}) if newest_migration else {}
    readers, problems = _readers(config, roots)
    pending = _pending(config, list(roots)) if database else set()
    states = []
    for path in sorted(set(worktree).union(*snapshots.values())):
        current = worktree.get(path)
        flags: list[Flag] = []
        in_any = [snap[path] for snap in snapshots.values() if path in snap]
        if current is not None and path in newest and newest[path] != current:
            flags.append("changed")
        if not in_any:
            flags.append("new")
        if current is not None and current not in in_any:
            flags.append("uncarried")
        used_by = tuple(sorted(readers.get(path, ())))
        waiting = tuple(m for m in used_by if m in pending)
        if waiting:
            flags.append("unapplied")
        states.append(ComponentState(path, tuple(flags), used_by, waiting, current is None))
    return ComponentReport(tuple(states), roots.get(newest_migration or ""), newest_migration,
                           database, (*broken.values(), *problems))


def _worktree_hashes(folder: str) -> dict[str, str]:
    """``components/`` hashed as the pinner would hash it."""
    result: dict[str, str] = {}
    if not os.path.isdir(folder):
        return result
    for dirpath, _dirs, names in os.walk(folder, followlinks=True):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as file:
                data = file.read()
            result[os.path.relpath(path, folder).replace(os.sep, "/")] = hash_bytes(data)
    return result


def _readers(config: Config, roots: Mapping[str, str]) -> tuple[dict[str, set[str]], list[str]]:
    """component path -> the pinned migrations whose render reads it."""
    from spawn_db.migrate.drift import probe

    readers: dict[str, set[str]] = {}
    problems = []
    for name in sorted(roots):
        try:
            found = probe(config, name, pinned=True, variables=None)
        except SpawnError as exc:
            problems.append(f"{name} could not be rendered, so what it reads is unknown: "
                            f"{exc.message}")
            continue
        for path in found.reads:
            readers.setdefault(path, set()).add(name)
    return readers, problems


def _pending(config: Config, names: list[str]) -> set[str]:
    from spawn_db.migrate.apply import is_done, read_history, state_of

    states = read_history(config)
    return {n for n in names if not is_done(state_of(states.get(n)))}
