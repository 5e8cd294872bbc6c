"""Every command has a reference page, and no page documents a flag that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from spawn_db.cli.main import cli

DOCS = Path(__file__).parent.parent / "docs"
COMMANDS = DOCS / "commands"
GLOBAL_FLAGS = {p for param in cli.params for p in getattr(param, "opts", [])} | {"--help"}
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found.extend(leaf_commands(command, path))
        else:
            found.append(path)
    return found


def command_for(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def page_for(path: tuple[str, ...]) -> Path:
    """``migration build`` → commands/migration-build.md; a group page covers its commands."""
    exact = COMMANDS / ("-".join(path) + ".md")
    return exact if exact.exists() else COMMANDS / (path[0] + ".md")


def flags_of(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]
            if opt.startswith("--")}


@pytest.mark.parametrize("path", leaf_commands(cli), ids=" ".join)
def test_every_command_has_a_page(path: tuple[str, ...]) -> None:
    page = page_for(path)
    assert page.is_file(), f"`spawn {' '.join(path)}` has no page in docs/commands/"
    assert f"spawn {' '.join(path)}" in page.read_text(), f"{page} never names the command"


@pytest.mark.parametrize("path", leaf_commands(cli), ids=" ".join)
def test_every_flag_is_documented(path: tuple[str, ...]) -> None:
    text = page_for(path).read_text()
    missing = sorted(flag for flag in flags_of(command_for(path)) if flag not in text)
    assert not missing, f"{page_for(path)} does not document {missing}"


@pytest.mark.parametrize("page", sorted(COMMANDS.glob("*.md")), ids=lambda p: p.name)
def test_pages_mention_only_existing_flags(page: Path) -> None:
    """A flag must belong to the page's command, or to the command named on its line or,
    for example output, the last line above it that named one (reset at each heading)."""
    commands = leaf_commands(cli)
    paths = [p for p in commands if page_for(p) == page]
    assert paths, f"{page.name} documents no existing command"
    known = GLOBAL_FLAGS.union(*(flags_of(command_for(p)) for p in paths))
    unknown = set()
    context: list[tuple[str, ...]] = []
    for line in _without_foreign_command_lines(page.read_text()).splitlines():
        named = [p for p in commands if " ".join(p) in line]
        if named or line.startswith("#"):
            context = named
        allowed = known.union(*(flags_of(command_for(p)) for p in context))
        unknown |= {flag for flag in FLAG.findall(line) if flag not in allowed}
    assert not unknown, f"{page.name} mentions flags that `spawn` does not have: {sorted(unknown)}"


def _without_foreign_command_lines(text: str) -> str:
    """Drop lines that show other programs' flags (psql, pip, initdb, docker...)."""
    foreign = re.compile(r"\b(psql|pip|initdb|pg_ctl|docker|apt-get|brew|git|pytest)\b")
    return "\n".join(line for line in text.splitlines() if not foreign.search(line))


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text()
    pages = [p for p in DOCS.rglob("*.md") if p.name != "index.md"]
    unlinked = sorted(str(p.relative_to(DOCS)) for p in pages
                      if str(p.relative_to(DOCS)) not in index)
    assert not unlinked, f"docs/index.md does not link {unlinked}"
