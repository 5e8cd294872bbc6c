"""The pool's control session commits without waiting for the disk: its renames are on
each test's path, and on a durable server (``fsync = on``, the embedded server's
default) a synchronous commit waits for a WAL flush of several milliseconds. A rename
lost in a crash is harmless (the copy keeps its ``_ready`` name and ``spawn test
clean`` finds it by its prefix). Against the real PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.sqltest.test_fresh import (  # noqa: F401 (the fixture drops spawn's databases)
    _drop_spawn_databases,
)
from tests.sqltest.test_fresh_pool import pool


def test_renames_commit_asynchronously_and_the_copy_is_usable_at_once(
    db_project: Any,
) -> None:
    project, fresh = pool(db_project, ahead=1)
    try:
        template = fresh.template()
        fresh.expect_copies(template, 2)
        first = fresh.copy(template, "first")
        second = fresh.copy(template, "second")
        # Set by the session itself: the suite's server has it off already.
        assert fresh.query("SELECT setting || ' ' || source FROM pg_settings WHERE name = "
                           "'synchronous_commit'") == "off session"
        # Each copy is reachable under its new name the moment copy() returns, and holds
        # the template's rows: an asynchronous commit is visible at once.
        for name in (first, second):
            assert project.database.query("SELECT owner FROM accounts", dbname=name) == "ann"
        assert first != second
        fresh.drop(first)
        fresh.drop(second)
    finally:
        fresh.close()
    names = project.database.query(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'spawn\\_testdb\\_%'")
    assert names == "0"
