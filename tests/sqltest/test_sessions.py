"""Concurrent sessions in one test (``bg``, ``step``, ``wait``), against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

LOCK_TEST = """\
\\set VERBOSITY terse
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t VALUES (1, 'main');
BEGIN;
UPDATE t SET v = 'main-locked' WHERE id = 1;
{{ bg("s2", "scripts/update.sql") }}
\\echo main commits
COMMIT;
{{ wait("s2") }}
SELECT * FROM t ORDER BY id;
"""
UPDATE_SCRIPT = """\
UPDATE t SET v = 's2' WHERE id = 1 RETURNING v;
"""


def test_smoke(db_project: Any) -> None:
    path = db_project.add_test("locks", LOCK_TEST)
    (path.parent / "scripts").mkdir()
    (path.parent / "scripts" / "update.sql").write_text(UPDATE_SCRIPT)
    result = db_project.run("test", "run", "locks")
    print(result)
    assert result.exit_code == 0
    assert result.stdout == ""
