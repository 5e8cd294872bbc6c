"""``spawn lint`` as a library function: render, split, parse and check migrations.

Each migration is rendered exactly as ``apply`` would render it: from its pin
when it has a ``lock.toml``, else from the working tree's ``components/``. This
module reads the migration folder itself rather than through ``migrate`` (which
imports ``lint`` for ``check --lint``): the few lines that find the template and
its component source are the same as ``migrate.migration.migration_source``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spawn_db.config import Config
from spawn_db.errors import ConfigError, SpawnError, TemplateError
from spawn_db.lint.deps import RECREATE_RULE, Change, RecreateTracker
from spawn_db.lint.parse import parse_script
from spawn_db.lint.report import Finding, LintReport
from spawn_db.lint.rules import (
    DISABLEABLE,
    RENDER_RULE,
    RULES,
    SYNTAX_RULE,
    check_statements,
)
from spawn_db.lint.source_map import Location, SourceMap
from spawn_db.project import Project, is_scripted

_DISABLE_COMMENT = re.compile(r"--\s*spawn-lint:\s*disable=([A-Za-z0-9_, ]+)")
# Every migration by the name people type (``audit:<m>`` for a ``[[sources]]`` folder's),
# in apply order: the config of its folder and its folder name. ``migrate`` builds it
# (``sources.Sources.folders``); lint cannot import ``migrate``.
Folders = Mapping[str, tuple[Config, str]]


def lint_migrations(config: Config, names: list[str] | None = None, *,
                    variables: Any = None, database: bool = False,
                    only: frozenset[str] | None = None,
                    folders: Folders | None = None) -> LintReport:
    """Lint ``names`` (every migration when None or empty), in apply order; with
    ``database``, then apply them to a scratch database (``database.check_on_database``),
    unless a migration does not parse or render: the server would only repeat that.
    ``only`` keeps the findings of those rules alone (``spawn check`` asks for SP020).
    ``folders``: the migrations of every ``[[sources]]`` folder too (names as keys)."""
    project = Project(config)
    disabled = _checked_ids(config.lint_disable, f"{config.path} [lint] disable")
    folders = folders if folders is not None else own_folders(config)
    # A scripted migration (``[[steps]]``, no up.sql) has no one script to lint.
    lintable = [n for n, (c, bare) in folders.items()
                if not is_scripted(c.migrations_dir / bare)]
    if names:
        chosen = [n if n in folders else project.find_migration(n).name for n in names]
    else:
        chosen = lintable
    by_name, changed = _lint_in_order(folders, lintable, set(chosen), variables, disabled)
    findings = [f for name in chosen for f in by_name.get(name, [])
                if only is None or f.rule in only]
    if not database:
        return LintReport(tuple(chosen), tuple(findings))
    if any(f.rule in (SYNTAX_RULE, RENDER_RULE) for f in findings):
        return LintReport(tuple(chosen), tuple(findings), "skipped")
    from spawn_db.lint.database import check_on_database

    confirm = _Confirm(folders, changed)
    failure = check_on_database(config, chosen, variables=variables, before=confirm,
                                folders=folders)
    findings = confirm.replace(chosen, findings)
    if failure is None:
        return LintReport(tuple(chosen), tuple(findings), "ok")
    return LintReport(tuple(chosen), (*findings, failure), "failed")


class _Confirm:
    """``--db`` for the recreate rule: just before a migration with changes runs on the
    scratch database, ``pg_depend`` says what depends on each changed object; those
    findings replace the static ones of every migration the database reached."""

    def __init__(self, folders: Folders,
                 changed: dict[str, tuple[tuple[Change, ...], frozenset[tuple[str, str]]]]
                 ) -> None:
        self.folders, self.changed = folders, changed
        self.reached: set[str] = set()
        self.found: dict[str, list[Finding]] = {}

    def __call__(self, name: str, mapped: SourceMap, session: Any) -> None:
        from spawn_db.lint.deps import confirmed_message, dependents_sql, described_key

        self.reached.add(name)
        changes, created = self.changed.get(name, ((), frozenset()))
        for change in changes:
            rows = session.query(dependents_sql(change.old),
                                 what=f"read pg_depend before migration {name}")
            listed = [row for row in rows.splitlines()
                      if row.strip() and described_key(row) not in created]
            if listed:
                where = shown(self.folders[name][0], mapped.locate(change.offset))
                self.found.setdefault(name, []).append(Finding(
                    RECREATE_RULE, RULES[RECREATE_RULE].severity,
                    confirmed_message(change, listed), name, where))

    def replace(self, chosen: list[str], findings: list[Finding]) -> list[Finding]:
        result: list[Finding] = []
        for name in chosen:
            result += [f for f in findings if f.migration == name and not (
                f.rule == RECREATE_RULE and name in self.reached)]
            result += self.found.get(name, [])
        return result


def own_folders(config: Config) -> dict[str, tuple[Config, str]]:
    """The project's own migrations as ``Folders`` (no ``[[sources]]``)."""
    return {name: (config, name) for name in Project(config).migration_names()}


def _lint_in_order(folders: Folders, order: list[str], chosen: set[str], variables: Any,
                   disabled: frozenset[str]
                   ) -> tuple[dict[str, list[Finding]],
                              dict[str, tuple[tuple[Change, ...], frozenset[tuple[str, str]]]]]:
    """The findings of the ``chosen`` migrations, walking every migration before them in
    apply order so that the recreate rule (``deps``) knows what the database has; and
    the changes the rule saw in each (with what the migration creates), for ``--db``."""
    tracker = RecreateTracker()
    found: dict[str, list[Finding]] = {}
    changed: dict[str, tuple[tuple[Change, ...], frozenset[tuple[str, str]]]] = {}
    for name in order:
        if not chosen - set(found):
            break
        config, bare = folders[name]
        if name in chosen:
            tracker.last_changes = ()
            found[name] = lint_migration(config, bare, variables=variables, disabled=disabled,
                                         tracker=tracker, label=name)
            if tracker.last_changes:
                changed[name] = (tracker.last_changes, tracker.created())
        else:
            _observe(config, bare, variables, tracker)
    return found, changed


def _observe(config: Config, name: str, variables: Any, tracker: RecreateTracker) -> None:
    """Feed a migration that is not linted to the recreate tracker (unrenderable: skipped)."""
    try:
        _text, mapped = render_for_lint(config, name, variables)
    except SpawnError:
        return
    tracker.migration(parse_script(mapped.text).statements, mapped.locate)


def lint_migration(config: Config, name: str, *, variables: Any = None,
                   disabled: frozenset[str] = frozenset(),
                   tracker: RecreateTracker | None = None,
                   label: str | None = None) -> list[Finding]:
    """The findings of one migration's ``up.sql``, sorted by place in the rendered text;
    with ``tracker`` (the migrations before it fed in order), also the recreate rule's.
    ``label`` names the migration in the findings (``audit:<m>``; default ``name``)."""
    display = _display(config, name)
    label = label or name
    try:
        template_text, mapped = render_for_lint(config, name, variables)
    except TemplateError as exc:
        where = Location(exc.template or display, exc.line or 1, 1)
        return [Finding(RENDER_RULE, "error", exc.message, label, shown(config, where))]
    except SpawnError as exc:
        return [Finding(RENDER_RULE, "error", exc.message, label, Location(display, 1, 1))]
    off = disabled | _comment_disables(template_text, display)
    parsed = parse_script(mapped.text)
    found = [(p.offset, SYNTAX_RULE, f"syntax error: {p.message}") for p in parsed.problems]
    found += [(h.offset, h.rule, h.message) for h in check_statements(parsed.statements)
              if h.rule not in off]
    if tracker is not None:
        hits = tracker.migration(parsed.statements, mapped.locate)
        if RECREATE_RULE in off:
            tracker.last_changes = ()
        else:
            found += [(h.change.offset, RECREATE_RULE, h.message) for h in hits]
    found.sort(key=lambda item: (item[0], item[1]))
    return [Finding(rule, RULES[rule].severity, message, label,
                    shown(config, mapped.locate(offset)))
            for offset, rule, message in found]


def shown(config: Config, location: Location) -> Location:
    """``location`` with its files relative to the current folder (where CI annotations and
    editors resolve them) when they are inside it, else to the project folder."""
    from dataclasses import replace

    chain = tuple((_path(config, file), line) for file, line in location.chain)
    return replace(location, file=_path(config, location.file), chain=chain)


def _path(config: Config, file: str) -> str:
    """A template name (``spawn/migrations/...`` from the project folder, or
    ``components/...`` as the renderer names components) as a path for the user."""
    import os

    if file.startswith("components/"):
        absolute = config.components_dir / file[len("components/"):]
    else:
        absolute = config.project_dir / file
    relative = os.path.relpath(absolute)
    return file if relative.startswith("..") else relative


def _display(config: Config, name: str) -> str:
    project = Project(config)
    return project.display(project.migration_dir(name) / "up.sql")


def render_for_lint(config: Config, name: str, variables: Any) -> tuple[str, SourceMap]:
    """The template text of ``name``'s ``up.sql`` and its rendered output with the source
    map, from the pin when the migration has a ``lock.toml`` (as apply renders it)."""
    from spawn_db.lint.source_map import render_mapped
    from spawn_db.pin.store import PinnedTree, PinStore, read_lock
    from spawn_db.render.plaintext import plain_output
    from spawn_db.render.template import (
        ComponentSource,
        PinnedSource,
        WorkingTreeSource,
        template_context,
    )

    folder = Project(config).migration_dir(name)
    display = _display(config, name)
    text = _read_template(folder / "up.sql")
    plain = plain_output(text)
    pin = read_lock(folder)
    if plain is not None:
        return text, SourceMap.identity(plain, display)
    components: ComponentSource
    if pin is not None:
        tree = PinnedTree(PinStore(config.pinned_dir), pin, context=f"migration {folder.name}")
        components = PinnedSource(tree, f"the pin {pin} of migration {folder.name}")
    else:
        components = WorkingTreeSource(config.components_dir)
    context = template_context(config, variables or {})
    return text, render_mapped(text, display, components, context)


def _read_template(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TemplateError(f"{path} does not exist; a migration folder needs an up.sql",
                            template=str(path)) from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8",
                            template=str(path)) from None


def _comment_disables(template_text: str, display: str) -> frozenset[str]:
    """The IDs named by ``-- spawn-lint: disable=SP003,SP005`` comments of the migration."""
    ids: list[str] = []
    for match in _DISABLE_COMMENT.finditer(template_text):
        ids += [i.strip().upper() for i in match.group(1).split(",") if i.strip()]
    return _checked_ids(tuple(ids), f"{display} (-- spawn-lint: disable=...)")


def _checked_ids(ids: tuple[str, ...], where: str) -> frozenset[str]:
    unknown = [i for i in ids if i not in DISABLEABLE]
    if unknown:
        raise ConfigError(
            f"{where}: {', '.join(unknown)} is not a rule that can be disabled; use the IDs "
            f"of docs/lint.md ({', '.join(sorted(DISABLEABLE))})")
    return frozenset(ids)
