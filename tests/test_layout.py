"""The package layout: imports point one way, and docs/architecture.md names every part.

``ALLOWED`` is the contract from docs/architecture.md: for each top-level part
of ``spawn_db`` (a subpackage or a module beside them), the parts it may
import. Every import counts, lazy ones inside functions and ``TYPE_CHECKING``
ones included, because a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "spawn_db"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

FOUNDATION = frozenset({"errors", "config", "escape", "fsutil", "project", "secret",
                        "plugins"})
LOWER = frozenset({"render", "pin", "db"})
ALLOWED: dict[str, frozenset[str]] = {
    # The lazy re-export of the public API (``spawn_db.Project``, ``spawn_db.SpawnError``).
    "__init__": frozenset({"api", "errors"}),
    "__main__": frozenset({"cli"}),
    "errors": frozenset(),
    "fsutil": frozenset(),
    "escape": frozenset({"errors"}),
    "config": frozenset({"errors"}),
    "project": frozenset({"errors", "config", "fsutil"}),
    "plugins": frozenset(),
    "remote": frozenset({"errors", "fsutil"}),
    "secret": frozenset({"errors", "config", "plugins"}),
    "render": frozenset({"errors", "config", "escape", "fsutil", "secret", "plugins"}),
    "pin": frozenset({"errors", "config", "fsutil"}),
    "db": frozenset({"errors", "config", "escape", "fsutil", "secret"}),
    "lint": FOUNDATION | {"render", "pin", "db"},
    "migrate": FOUNDATION | LOWER | {"lint"},
    "sqltest": FOUNDATION | {"render", "db", "migrate"},
    "example": FOUNDATION | {"migrate"},
    "lsp": FOUNDATION | LOWER | {"__init__", "lint", "migrate"},
    "watch": FOUNDATION | LOWER | {"migrate", "sqltest"},
    "data": frozenset({"errors", "config", "fsutil"}),
    "fleet": FOUNDATION | LOWER | {"migrate"},
    "cli": FOUNDATION | LOWER | {"__init__", "migrate", "sqltest", "example", "lint", "lsp",
                                 "watch", "remote", "data", "fleet", "api"},
    # The public facade may use everything but the CLI; the pytest plugin builds on it.
    "api": FOUNDATION | LOWER | {"__init__", "migrate", "sqltest", "example", "lint",
                                 "remote", "data", "fleet"},
    "pytest_plugin": FOUNDATION | LOWER | {"__init__", "api", "migrate", "sqltest"},
}
# The only parts that may import the facade: the package's re-export, the CLI built on it,
# and the pytest plugin. Library code below must not depend on its public surface.
API_USERS = frozenset({"__init__", "cli", "pytest_plugin"})


def part_of(module: str) -> str:
    """``spawn_db.migrate.apply`` -> ``migrate``; ``spawn_db`` itself -> ``__init__``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every ``spawn_db`` import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("spawn_db")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "spawn_db":
                found += [(node.lineno, f"spawn_db.{a.name}" if is_submodule(a.name)
                           else "spawn_db") for a in node.names]
            elif node.module.startswith("spawn_db."):
                found.append((node.lineno, node.module))
    return found


def wrong_way_imports(edges: list[tuple[str, int, str]]) -> list[str]:
    """Each (importing file, line, imported module) that the contract does not allow."""
    problems = []
    for source, line, target in edges:
        source_part = part_of(source)
        target_part = part_of(target)
        if source_part == target_part:
            continue
        if target_part not in ALLOWED.get(source_part, frozenset()):
            problems.append(f"{source}:{line} imports {target} ({source_part} -> {target_part})")
    return problems


def package_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "example/project" not in p.as_posix()]


def all_edges() -> list[tuple[str, int, str]]:
    return [(module_name(p), line, target)
            for p in package_files() for line, target in imported_modules(p)]


def top_level_parts() -> set[str]:
    parts = {p.stem for p in PACKAGE.glob("*.py")}
    parts |= {d.name for d in PACKAGE.iterdir() if (d / "__init__.py").is_file()}
    return parts


def test_imports_point_one_way() -> None:
    assert wrong_way_imports(all_edges()) == []


def test_the_check_catches_a_wrong_way_import() -> None:
    edges = [("spawn_db.pin.store", 3, "spawn_db.cli.output"),
             ("spawn_db.migrate.apply", 7, "spawn_db.sqltest.suite"),
             ("spawn_db.render.template", 9, "spawn_db.db"),
             ("spawn_db.cli.apply", 1, "spawn_db.migrate.apply")]
    assert wrong_way_imports(edges) == [
        "spawn_db.pin.store:3 imports spawn_db.cli.output (pin -> cli)",
        "spawn_db.migrate.apply:7 imports spawn_db.sqltest.suite (migrate -> sqltest)",
        "spawn_db.render.template:9 imports spawn_db.db (render -> db)",
    ]


def test_no_part_imports_the_cli() -> None:
    offenders = [f"{s}:{n}" for s, n, t in all_edges()
                 if part_of(t) == "cli" and part_of(s) not in ("cli", "__main__")]
    assert offenders == []


def test_only_the_cli_and_the_plugin_import_the_api() -> None:
    offenders = [f"{s}:{n}" for s, n, t in all_edges()
                 if part_of(t) == "api" and part_of(s) not in API_USERS | {"api"}]
    assert offenders == []


def test_every_part_of_the_package_is_in_the_contract() -> None:
    assert top_level_parts() == set(ALLOWED)


@pytest.mark.parametrize("part", sorted(set(ALLOWED) - {"__init__", "__main__"}))
def test_architecture_page_describes_each_part(part: str) -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    is_folder = (PACKAGE / part).is_dir()
    heading = f"### `{part}/`" if is_folder else f"### `{part}.py`"
    assert heading in text, f"docs/architecture.md has no section {heading}"


def test_architecture_page_lists_every_module() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [p.relative_to(PACKAGE).as_posix() for p in package_files()
               if p.name != "__init__.py" and p.parent != PACKAGE
               and f"`{p.name}`" not in text]
    assert missing == []
