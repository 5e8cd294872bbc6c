"""Copies made ahead (``FreshDatabases``' pool): a test takes a copy made while the one
before it ran, renamed after it; drops happen off the tests' path. Against the real
PostgreSQL and the real `spawn`."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from tests.helpers import start_spawn
from tests.sqltest.test_fresh import (  # noqa: F401 (the fixture drops spawn's databases)
    _drop_spawn_databases,
    fresh_project,
    spawn_databases,
)

if TYPE_CHECKING:
    from spawn_db.sqltest.fresh import FreshDatabases

READY = "SELECT count(*) FROM pg_database WHERE datname LIKE 'spawn\\_testdb\\_%\\_ready'"


def copies(project: Any) -> list[str]:
    return [d.split()[0] for d in spawn_databases(project) if d.startswith("spawn_testdb_")]


def pool(db_project: Any, **options: int) -> tuple[Any, FreshDatabases]:
    """``fresh_project(db_project)`` and a ``FreshDatabases`` on its target (``options``:
    ``ahead``, ``makers``); the caller closes it."""
    from spawn_db.config import Overrides, load_config
    from spawn_db.db.engine import engine_for
    from spawn_db.sqltest.fresh import FreshDatabases

    project = fresh_project(db_project)
    config = load_config(Overrides(config_file=str(project.config_path)))
    return project, FreshDatabases(config, engine_for(config), **options)


def test_copies_are_made_ahead_no_more_than_announced_and_named_after_their_test(
    db_project: Any,
) -> None:
    project, fresh = pool(db_project, ahead=2)
    try:
        template = fresh.template()
        fresh.expect_copies(template, 3)
        project.database.wait_until(f"SELECT ({READY}) = 2")  # ahead=2 of the 3 announced
        first = fresh.copy(template, "first")
        assert first.startswith("spawn_testdb_") and first.endswith("_first")
        # The one taken is replaced: two still to come, two made ahead.
        project.database.wait_until(f"SELECT ({READY}) = 2")
        second = fresh.copy(template, "second")
        third = fresh.copy(template, "third")
        assert (second.endswith("_second"), third.endswith("_third")) == (True, True)
        # Nothing more was announced, so nothing more is made.
        assert project.database.query(READY) == "0"
        assert project.database.query("SELECT owner FROM accounts", dbname=second) == "ann"
        fresh.drop(first)
        fresh.drop(third)
    finally:
        fresh.close()
    # close waited for the drops; the copy not dropped (a failed test's) is kept.
    assert copies(project) == [second]
    assert project.database.query(READY) == "0"


def test_unused_copies_made_ahead_are_dropped_at_close(db_project: Any) -> None:
    project, fresh = pool(db_project)
    try:
        fresh.expect_copies(fresh.template(), 5)
        project.database.wait_until(f"SELECT ({READY}) = 2")
    finally:
        fresh.close()
    assert copies(project) == []


def test_a_parallel_run_leaves_only_the_failed_tests_copy(db_project: Any) -> None:
    project = fresh_project(db_project)
    for n in range(4):
        project.add_test(f"t{n}", f"INSERT INTO accounts VALUES ({n + 10}, 't{n}');\n"
                         "SELECT count(*) FROM accounts;\n")
    assert project.run("test", "expect", "--yes", "-j", "2").exit_code == 0
    assert copies(project) == []
    (project.spawn_dir / "tests" / "t3" / "expected").write_text("other\n")
    result = project.run("test", "compare", "-j", "2")
    assert result.exit_code == 1
    kept = [line.split()[2] for line in result.stdout.splitlines()
            if line.startswith("note: database ")]
    assert len(kept) == 1 and kept[0].endswith("_t3"), result.stdout
    assert copies(project) == kept
    assert project.database.query("SELECT string_agg(owner, ',' ORDER BY id) FROM accounts",
                                   dbname=kept[0]) == "ann,t3"


def test_a_killed_runs_copies_made_ahead_are_found_by_clean(db_project: Any) -> None:
    """A run killed while a test sleeps leaves that test's copy and the copies made
    ahead for the next tests; `spawn test clean` finds them all by their prefix."""
    project = fresh_project(db_project)
    project.add_test("a_sleeps", "SELECT pg_sleep(30);\n")
    for name in ("b", "c", "d"):
        project.add_test(name, "SELECT 1 AS one;\n")
    run = start_spawn("test", "compare", "-j", "1", cwd=project.root)
    try:
        project.database.wait_until(
            f"SELECT ({READY}) = 2 AND EXISTS (SELECT FROM pg_stat_activity WHERE datname LIKE "
            "'spawn\\_testdb\\_%\\_a\\_sleeps' AND query LIKE '%pg_sleep(30)%')")
    finally:
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=30)
    left = copies(project)
    assert len(left) == 3 and sum(name.endswith("_ready") for name in left) == 2, left
    cleaned = project.run("test", "clean")
    assert cleaned.exit_code == 0
    dropped = [line.split()[-1] for line in cleaned.stdout.splitlines()
               if line.startswith("Dropped test database ")]
    assert dropped == left
    assert spawn_databases(project) == []


def test_copy_without_announcing_makes_one_on_the_spot(db_project: Any) -> None:
    """The pytest plugin's path: no expect_copies, so no thread and no copy made ahead."""
    project, fresh = pool(db_project)
    try:
        name = fresh.copy(fresh.template(), "alone")
        assert copies(project) == [name]
        fresh.drop(name)
    finally:
        fresh.close()
    assert copies(project) == []
