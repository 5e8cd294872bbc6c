"""Golden-file tests (SPEC §7): create and render ``tests/<name>/test.sql``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from spawn_db.config import Config
from spawn_db.errors import UsageError
from spawn_db.fsutil import atomic_write_text
from spawn_db.project import Project, validate_name
from spawn_db.template import WorkingTreeSource

STARTER_TEST = """\
-- Test {name}: psql runs this script; its output (stdout and stderr, merged)
-- is compared with the `expected` file next to it.
-- Write assertions as queries, always with ORDER BY, and avoid printing
-- timestamps or generated ids. Run `spawn test expect {name}` to record the
-- output, then `spawn test compare {name}` to check it.
\\set VERBOSITY terse

SELECT 1 AS answer;
"""


def new_test(config: Config, name: str) -> str:
    """Create ``tests/<name>/test.sql`` with a starter script; return its folder name."""
    validate_name(name, "test")
    folder = config.tests_dir / name
    if folder.exists():
        raise UsageError(f"{folder} already exists; choose another name")
    folder.mkdir(parents=True)
    atomic_write_text(folder / "test.sql", STARTER_TEST.format(name=name))
    return name


def build_test(config: Config, name: str, *, variables: Any = None) -> Iterator[str]:
    """Chunks of the rendered ``test.sql`` (components from the working tree)."""
    from spawn_db.migrations import template_context
    from spawn_db.template import compile_template

    project = Project(config)
    path = project.find_test(name) / "test.sql"
    renderer = compile_template(
        path.read_text(encoding="utf-8"),
        project.display(path),
        WorkingTreeSource(config.components_dir),
    )
    return renderer.generate(template_context(config, variables or {}))
