"""The CLI is built on the facade (issue 20): the commands that ``spawn_db.api.Project``
covers (``migration apply|adopt|revert|build|pin|list|status``, ``test run|compare|expect``)
reach the library through it, so the two cannot drift apart.

The check reads the CLI modules of those commands (every import counts, lazy ones
inside functions and ``TYPE_CHECKING`` ones included) and refuses an import of a
library function the facade wraps. The one exception is the work a command does on
each target when ``--target`` selects several (``Target*`` classes, run by
``cli/fanout.py``), which is another piece of work and still calls the library.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "spawn_db"

# The CLI modules of the commands the facade covers.
CLI_MODULES = ("cli/apply.py", "cli/revert.py", "cli/migration.py", "cli/sqltest.py")

# What the facade wraps: the CLI must call ``spawn_db.api`` instead.
WRAPPED: dict[str, frozenset[str]] = {
    "spawn_db.migrate.apply": frozenset({"apply", "plan_apply", "adopt", "status"}),
    "spawn_db.migrate.revert": frozenset({"revert", "plan_revert"}),
    "spawn_db.migrate.migration": frozenset({"build_migration", "build_working_tree",
                                             "pin_migration", "pin_many",
                                             "list_migrations"}),
    "spawn_db.migrate.sources": frozenset({"locate"}),
    "spawn_db.migrate.schema_drift": frozenset({"schema_drift"}),
    "spawn_db.fleet.tenants": frozenset({"build_tenant_part"}),
    "spawn_db.fleet.tenant_ops": frozenset({"tenant_phase", "revert_phase",
                                            "after_shared_phase", "before_shared_phase"}),
    "spawn_db.sqltest.suite": frozenset({"TestRunner", "run_ordered", "compare_tests",
                                         "expect_tests", "select_tests"}),
}

# ``--target`` with several targets: each target's work, not through the facade yet.
FAN_OUT = frozenset({"TargetApply", "TargetRevert", "TargetStatus"})


def bypasses(source: str, filename: str) -> list[str]:
    """``file:line: import`` for each import of something the facade wraps, outside the
    fan-out's per-target classes: a named function, or its whole module (``import
    spawn_db.migrate.apply``, ``from spawn_db.migrate import apply``)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and child.name in FAN_OUT:
                continue
            for name in _wrapped_imports(child):
                found.append(f"{filename}:{getattr(child, 'lineno', 0)}: {name}")
            visit(child)

    visit(ast.parse(source, filename))
    return found


def _wrapped_imports(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in WRAPPED]
    if not isinstance(node, ast.ImportFrom) or node.module is None:
        return []
    wrapped = WRAPPED.get(node.module, frozenset())
    return [f"{node.module}.{alias.name}" for alias in node.names
            if alias.name in wrapped or f"{node.module}.{alias.name}" in WRAPPED]


def test_the_cli_reaches_what_the_facade_wraps_only_through_it() -> None:
    found = [hit for module in CLI_MODULES
             for hit in bypasses((PACKAGE / module).read_text(encoding="utf-8"), module)]
    assert found == [], ("these CLI imports bypass spawn_db.api; call the Project method "
                         "that wraps them (or add one):\n" + "\n".join(found))


def test_the_commands_call_the_facade() -> None:
    for module in CLI_MODULES:
        text = (PACKAGE / module).read_text(encoding="utf-8")
        assert "from spawn_db.api import" in text, module


def test_the_check_catches_a_bypass() -> None:
    source = '''
from spawn_db.migrate.migration import pin_many

def apply_command():
    from spawn_db.migrate.apply import apply as run_apply, ApplyPlan
    return run_apply

def compare_command():
    import spawn_db.sqltest.suite
    from spawn_db.migrate import revert
    from spawn_db.sqltest.suite import run_ordered, decode

class TargetApply:
    def __call__(self):
        from spawn_db.migrate.apply import apply
'''
    assert bypasses(source, "cli/x.py") == [
        "cli/x.py:2: spawn_db.migrate.migration.pin_many",
        "cli/x.py:5: spawn_db.migrate.apply.apply",
        "cli/x.py:9: spawn_db.sqltest.suite",
        "cli/x.py:10: spawn_db.migrate.revert",
        "cli/x.py:11: spawn_db.sqltest.suite.run_ordered",
    ]


def test_the_real_modules_fail_the_check_with_one_bypass_added() -> None:
    apply_source = (PACKAGE / "cli/apply.py").read_text(encoding="utf-8")
    broken = apply_source + "\n\ndef sneaky() -> None:\n" \
        "    from spawn_db.migrate.apply import plan_apply  # noqa\n"
    assert len(bypasses(broken, "cli/apply.py")) == 1
