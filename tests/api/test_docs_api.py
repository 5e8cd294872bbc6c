"""docs/python-api.md: its examples run as shown, and its reference part is the public
docstrings, rendered.

``python -m tests.api.test_docs_api`` rewrites the reference part from the docstrings;
``test_reference_is_generated_from_the_docstrings`` fails while the page is stale.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DbProject

PAGE = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"
START = "<!-- reference: generated"
END = "<!-- reference:end -->"
EXAMPLE = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```\n", re.DOTALL)


# -- the examples -----------------------------------------------------------------------------


def test_examples_run_as_shown(db_project: DbProject, monkeypatch: pytest.MonkeyPatch) -> None:
    db_project.add_migration("users", "CREATE TABLE users (id int PRIMARY KEY);\n")
    orders = db_project.add_migration(
        "orders", "CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users);\n")
    (db_project.spawn_dir / "migrations" / orders / "down.sql").write_text(
        "DROP TABLE orders;\n")
    db_project.add_test("count", "SELECT count(*) FROM orders;\n")
    (db_project.spawn_dir / "tests" / "count" / "expected").write_text(
        " count \n-------\n     0\n(1 row)\n\n")
    monkeypatch.chdir(db_project.spawn_dir / "migrations")  # found from a sub-folder
    examples = EXAMPLE.findall(PAGE.read_text(encoding="utf-8"))
    assert len(examples) == 5
    namespace: dict[str, Any] = {}
    for code, shown in examples:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(PAGE), "exec"), namespace)
        assert printed.getvalue() == shown, code


# -- the reference ----------------------------------------------------------------------------


def _public_types() -> list[type]:
    from spawn_db.api import ExpectReport, RevertDryRun, TenantOptions, TestReport
    from spawn_db.migrate.apply import (
        AdoptResult,
        ApplyResult,
        DryRun,
        MigrationStatus,
        PlannedMigration,
        StatusReport,
    )
    from spawn_db.migrate.migration import MigrationEntry, PinBatch
    from spawn_db.migrate.plan import ApplyPlan
    from spawn_db.migrate.revert import PlannedRevert, RevertPlan, RevertResult
    from spawn_db.migrate.runner import MigrationOutcome
    from spawn_db.migrate.schema_drift import Difference, DriftReport
    from spawn_db.migrate.tracking import HistoryRow
    from spawn_db.sqltest.suite import ExpectResult, TestOutcome, TestRun

    return [MigrationEntry, PinBatch, StatusReport, MigrationStatus, HistoryRow, ApplyResult,
            ApplyPlan, MigrationOutcome, DryRun, PlannedMigration, TenantOptions, AdoptResult,
            RevertResult, RevertPlan, RevertDryRun, PlannedRevert, DriftReport, Difference,
            TestRun, TestReport, TestOutcome, ExpectReport, ExpectResult]


def _doc(obj: Any) -> str:
    return inspect.getdoc(obj) or ""


def render_reference() -> str:
    """The reference part of the page: ``Project``'s methods with their signatures and
    docstrings, then each result type with its docstring and fields."""
    from spawn_db.api import Project

    out = ["### `spawn_db.Project`", "", _doc(Project), ""]
    for name, member in inspect.getmembers(Project):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            out += [f"#### `Project.{name}` (property)", "", _doc(member), ""]
        elif callable(member):
            signature = _unquoted(str(inspect.signature(member)))
            out += [f"#### `Project.{name}{signature}`", "", _doc(member), ""]
    out += ["### Result types", ""]
    for kind in _public_types():
        out += [f"#### `{kind.__name__}` (`{kind.__module__}`)", "", _doc(kind), "",
                "| field | type |", "|---|---|"]
        out += [f"| `{f.name}` | `{_cell(str(f.type))}` |" for f in dataclasses.fields(kind)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _unquoted(signature: str) -> str:
    """``(self, name: 'str') -> 'str'`` as ``(name: str) -> str``: the annotations are
    strings (``from __future__ import annotations``), shown as written."""
    signature = signature.replace("(self, ", "(").replace("(self)", "()")
    return re.sub(r"(: |-> )'([^']*)'", r"\1\2", signature)


def _cell(text: str) -> str:
    """A type in a table cell: its ``|`` escaped, so the row keeps its columns."""
    return text.replace("|", "\\|")


def page_with_reference(page: str) -> str:
    start = page.index("-->", page.index(START)) + len("-->\n")
    return page[:start] + "\n" + render_reference() + "\n" + page[page.index(END):]


def test_reference_is_generated_from_the_docstrings() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert page == page_with_reference(page), (
        "docs/python-api.md's reference part is stale: run `python -m tests.api.test_docs_api`")


def test_every_public_method_and_result_field_is_documented() -> None:
    from spawn_db.api import Project

    undocumented = [name for name, member in inspect.getmembers(Project)
                    if not name.startswith("_") and (callable(member)
                                                     or isinstance(member, property))
                    and not _doc(member)]
    fields = [f.name for f in dataclasses.fields(Project)]
    assert all(f"``{name}``" in _doc(Project) for name in fields), fields
    assert undocumented == []
    assert [k.__name__ for k in _public_types() if not _doc(k)
            or _doc(k).startswith(k.__name__ + "(")] == []
    assert all(k.__dataclass_params__.frozen for k in _public_types())  # type: ignore[attr-defined]


if __name__ == "__main__":
    PAGE.write_text(page_with_reference(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
