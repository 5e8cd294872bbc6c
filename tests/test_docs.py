"""Every command has a reference page, and no page documents a flag that does not exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from spawn_db.cli.main import cli
from tests.conftest import DbProject

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


# -- the console examples of init.md and migration-apply.md, run as shown -------------------

MASKS = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b\d{14}-"), "<stamp>-"),
    (re.compile(r"\b\d+ ms\b"), "<n> ms"),
    (re.compile(r"^[0-9a-f]{32}$", re.M), "<hash>"),
)


def console_blocks(page: Path) -> list[list[tuple[str, str]]]:
    """Each ```console block as (command, expected output) pairs."""
    blocks = re.findall(r"```console\n(.*?)```", page.read_text(), re.S)
    parsed = []
    for block in blocks:
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        parsed.append([(command, "\n".join(out)) for command, out in steps])
    return parsed


def run_console(steps: list[tuple[str, str]], cwd: Path, tmp: Path,
                before: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """Run the commands in one shell (``cd`` carries over): (command, expected, actual).

    ``/tmp/`` in the page stands for ``tmp``; ``before`` maps a command to shell
    lines that run first, unseen (the edit a page describes in a comment).
    """
    script = ["set +e"]
    for number, (command, _) in enumerate(steps):
        script.append(before.get(command, "") if before else "")
        script.append(f"echo '@@{number}'")
        script.append(command.replace("/tmp/", f"{tmp}/") + " 2>&1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPAWN_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    outputs = re.split(r"^@@\d+\n", done.stdout, flags=re.M)[1:]
    assert len(outputs) == len(steps), done.stdout + done.stderr
    return [(command, expected, actual.replace(str(tmp), "/tmp"))
            for (command, expected), actual in zip(steps, outputs, strict=True)]


def masked(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text.rstrip("\n")


def assert_outputs_match(ran: list[tuple[str, str, str]],
                         keep: Callable[[list[str]], list[str]] = list) -> None:
    for command, expected, actual in ran:
        want = keep(masked(expected).splitlines())
        got = keep(masked(actual).splitlines())
        assert got == want, f"`{command}` printed:\n{actual}"


INIT_BLOCKS = ("newproj", "dk2", "dk3", "cf", "ex")


@pytest.mark.parametrize(("index", "folder"), list(enumerate(INIT_BLOCKS)), ids=INIT_BLOCKS)
def test_init_page_examples_run_as_shown(tmp_path: Path, index: int, folder: str) -> None:
    blocks = console_blocks(COMMANDS / "init.md")
    assert len(blocks) == len(INIT_BLOCKS)
    (tmp_path / folder).mkdir()

    ran = run_console(blocks[index], tmp_path / folder, tmp_path)

    assert_outputs_match(ran)


def without_passthrough(lines: list[str]) -> list[str]:
    """What spawn prints, without psql's own messages passed on as they happen."""
    return [line for number, line in enumerate(lines)
            if not line.startswith("ERROR:") or lines[number - 1].endswith("psql said:")]


def write_migration(project: DbProject, folder: str, sql: str, *, pin: bool) -> None:
    path = project.spawn_dir / "migrations" / folder
    path.mkdir(parents=True)
    (path / "up.sql").write_text(sql, encoding="utf-8")
    if pin:
        assert project.run("migration", "pin", folder).exit_code == 0


def test_apply_page_first_example_runs_as_shown(db_project: DbProject, tmp_path: Path) -> None:
    write_migration(db_project, "20261124142517-add-orders",
                    "CREATE TABLE orders (id int PRIMARY KEY);\n", pin=True)
    write_migration(db_project, "20261124142518-index-order-lines",
                    "CREATE TABLE order_lines (order_id int);\n"
                    "CREATE INDEX ON order_lines (order_id);\n", pin=True)
    write_migration(db_project, "20261124142519-add-discount", "SELECT 1/0;\n", pin=True)
    steps = console_blocks(COMMANDS / "migration-apply.md")[0]
    fix = ("echo 'CREATE TABLE discounts (id int);' > "
           "spawn/migrations/20261124142519-add-discount/up.sql")

    ran = run_console(steps, db_project.root, tmp_path, before={steps[2][0]: fix})

    assert "after fixing up.sql" in steps[2][0]
    assert_outputs_match(ran, without_passthrough)


def test_apply_page_pin_example_runs_as_shown(db_project: DbProject, tmp_path: Path) -> None:
    write_migration(db_project, "20261124142542-add-users",
                    "CREATE TABLE users (id int PRIMARY KEY);\n", pin=True)
    write_migration(db_project, "20261124142543-backfill",
                    "INSERT INTO users SELECT generate_series(1, 3);\n", pin=False)
    write_migration(db_project, "20261124142544-add-audit", "CREATE TABLE audit (id int);\n",
                    pin=False)

    ran = run_console(console_blocks(COMMANDS / "migration-apply.md")[1], db_project.root,
                      tmp_path)

    assert_outputs_match(ran)
