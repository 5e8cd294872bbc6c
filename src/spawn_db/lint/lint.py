"""``spawn lint`` as a library function: render, split, parse and check migrations.

Each migration is rendered exactly as ``apply`` would render it: from its pin
when it has a ``lock.toml``, else from the working tree's ``components/``. This
module reads the migration folder itself rather than through ``migrate`` (which
imports ``lint`` for ``check --lint``): the few lines that find the template and
its component source are the same as ``migrate.migration.migration_source``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from spawn_db.config import Config
from spawn_db.errors import ConfigError, SpawnError, TemplateError
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


def lint_migrations(config: Config, names: list[str] | None = None, *,
                    variables: Any = None, database: bool = False) -> LintReport:
    """Lint ``names`` (every migration when None or empty), in apply order; with
    ``database``, then apply them to a scratch database (``database.check_on_database``),
    unless a migration does not parse or render: the server would only repeat that."""
    project = Project(config)
    disabled = _checked_ids(config.lint_disable, f"{config.path} [lint] disable")
    if names:
        chosen = [project.find_migration(name).name for name in names]
    else:
        # A scripted migration (``[[steps]]``, no up.sql) has no one script to lint.
        chosen = [n for n in project.migration_names()
                  if not is_scripted(project.migration_dir(n))]
    findings: list[Finding] = []
    for name in chosen:
        findings += lint_migration(config, name, variables=variables, disabled=disabled)
    if not database:
        return LintReport(tuple(chosen), tuple(findings))
    if any(f.rule in (SYNTAX_RULE, RENDER_RULE) for f in findings):
        return LintReport(tuple(chosen), tuple(findings), "skipped")
    from spawn_db.lint.database import check_on_database

    failure = check_on_database(config, chosen, variables=variables)
    if failure is None:
        return LintReport(tuple(chosen), tuple(findings), "ok")
    return LintReport(tuple(chosen), (*findings, failure), "failed")


def lint_migration(config: Config, name: str, *, variables: Any = None,
                   disabled: frozenset[str] = frozenset()) -> list[Finding]:
    """The findings of one migration's ``up.sql``, sorted by place in the rendered text."""
    display = _display(config, name)
    try:
        template_text, mapped = render_for_lint(config, name, variables)
    except TemplateError as exc:
        where = Location(exc.template or display, exc.line or 1, 1)
        return [Finding(RENDER_RULE, "error", exc.message, name, shown(config, where))]
    except SpawnError as exc:
        return [Finding(RENDER_RULE, "error", exc.message, name, Location(display, 1, 1))]
    off = disabled | _comment_disables(template_text, display)
    parsed = parse_script(mapped.text)
    found = [(p.offset, SYNTAX_RULE, f"syntax error: {p.message}") for p in parsed.problems]
    found += [(h.offset, h.rule, h.message) for h in check_statements(parsed.statements)
              if h.rule not in off]
    found.sort(key=lambda item: (item[0], item[1]))
    return [Finding(rule, RULES[rule].severity, message, name,
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
