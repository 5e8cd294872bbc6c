"""The pytest plugin with ``[[sources]]`` (issue 18): ``spawn_db``'s template holds every
source's migrations, ``spawn_db_at`` and ``db.apply`` take ``audit:<m>``. The example
application (tests/e2e/example_app) with a path source beside it, run by ``python -m
pytest`` on the suite's server."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.test_pytest_plugin import app, on_suite, run_pytest, summary
from tests.helpers import run_spawn

__all__ = ["app", "on_suite"]

LOG = "20260102120000-create-log"
CHECKS = '''
def test_spawn_db_has_the_source_migration(spawn_db):
    assert spawn_db.psql("SELECT what FROM audit_log") == "created"


def test_spawn_db_at_a_source_migration(spawn_db_at):
    db = spawn_db_at("audit:create-log")
    assert db.psql("SELECT to_regclass('audit_log') IS NOT NULL, "
                   "to_regclass('orders') IS NULL") == "t|t"


def test_db_apply_runs_a_source_migration(spawn_db_at):
    db = spawn_db_at("split-names")
    assert db.psql("SELECT to_regclass('audit_log') IS NULL") == "t"
    db.apply("audit:create-log")
    assert db.psql("SELECT what FROM audit_log") == "created"
'''


def test_the_plugins_databases_take_a_sources_migrations(on_suite: Path) -> None:
    audit = on_suite.parent / "audit"
    (audit / "migrations" / LOG).mkdir(parents=True)
    (audit / "components").mkdir()
    (audit / "pinned").mkdir()
    (audit / "migrations" / LOG / "up.sql").write_text(
        "CREATE TABLE audit_log (what text);\nINSERT INTO audit_log VALUES ('created');\n")
    with (on_suite / "spawn.toml").open("a", encoding="utf-8") as config:
        config.write('\n[[sources]]\nname = "audit"\npath = "../audit"\n')
    assert run_spawn("migration", "pin", "audit:create-log", cwd=on_suite).exit_code == 0
    (on_suite / "check_audit.py").write_text(CHECKS)

    done = run_pytest(on_suite, "--spawn-target", "suite", "-p", "no:cacheprovider",
                      "check_audit.py")

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"3 passed in [\d.]+s( \(\d+:\d\d:\d\d\))?", summary(done)), done.stdout
