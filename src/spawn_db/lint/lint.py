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
from spawn_db.project import Project

_DISABLE_COMMENT = re.compile(r"--\s*spawn-lint:\s*disable=([A-Za-z0-9_, ]+)")


def lint_migrations(config: Config, names: list[str] | None = None, *,
                    variables: Any = None) -> LintReport:
    """Lint ``names`` (every migration when None or empty), in apply order."""
    project = Project(config)
    disabled = _checked_ids(config.lint_disable, f"{config.path} [lint] disable")
    if names:
        chosen = [project.find_migration(name).name for name in names]
    else:
        chosen = project.migration_names()
    findings: list[Finding] = []
    for name in chosen:
        findings += lint_migration(config, name, variables=variables, disabled=disabled)
    return LintReport(tuple(chosen), tuple(findings))


def lint_migration(config: Config, name: str, *, variables: Any = None,
                   disabled: frozenset[str] = frozenset()) -> list[Finding]:
    """The findings of one migration's ``up.sql``, sorted by place in the rendered text."""
    project = Project(config)
    folder = project.migration_dir(name)
    display = project.display(folder / "up.sql")
    try:
        template_text, mapped = _render(config, folder, display, variables)
    except TemplateError as exc:
        where = Location(exc.template or display, exc.line or 1, 1)
        return [Finding(RENDER_RULE, "error", exc.message, name, _shown(config, where))]
    except SpawnError as exc:
        return [Finding(RENDER_RULE, "error", exc.message, name, Location(display, 1, 1))]
    off = disabled | _comment_disables(template_text, display)
    parsed = parse_script(mapped.text)
    found = [(p.offset, SYNTAX_RULE, f"syntax error: {p.message}") for p in parsed.problems]
    found += [(h.offset, h.rule, h.message) for h in check_statements(parsed.statements)
              if h.rule not in off]
    found.sort(key=lambda item: (item[0], item[1]))
    return [Finding(rule, RULES[rule].severity, message, name,
                    _shown(config, mapped.locate(offset)))
            for offset, rule, message in found]


def _shown(config: Config, location: Location) -> Location:
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


def _render(config: Config, folder: Path, display: str,
            variables: Any) -> tuple[str, SourceMap]:
    """The template text and the rendered output with its source map, from the pin when
    the migration has a ``lock.toml`` (as apply renders it)."""
    from spawn_db.lint.source_map import render_mapped
    from spawn_db.pin.store import PinnedTree, PinStore, read_lock
    from spawn_db.render.plaintext import plain_output
    from spawn_db.render.template import (
        ComponentSource,
        PinnedSource,
        WorkingTreeSource,
        template_context,
    )

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
