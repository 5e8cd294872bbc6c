"""The pytest plugin as a user meets it: the example application in tests/e2e/example_app
(its own spawn project, its own tests using ``spawn_db`` through psycopg and psql) run by
``python -m pytest`` in a copy of its folder, with the plugin loaded from its entry point.

Most runs put the test databases on the suite's server (``--spawn-target suite``); one
run uses the default, the project's embedded server, which is stopped afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spawn_db.config import toml_string
from tests.conftest import PgServer, _stop_project_server
from tests.helpers import run_spawn, spawn_env

EXAMPLE = Path(__file__).parent / "example_app"
ORDERS = "20260103000000-orders"


def run_pytest(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS`` in ``root``, with none of this run's pytest or spawn
    variables (the inner run is a user's, not an xdist worker's)."""
    env = {k: v for k, v in spawn_env().items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=root,
                          capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture
def app() -> Iterator[Path]:
    """A copy of the example application in a folder the server user can enter; any
    embedded server it started is stopped and its files deleted afterwards."""
    base = Path(tempfile.mkdtemp(prefix="spawn-app-", dir="/tmp"))
    os.chmod(base, 0o755)
    root = base / "app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".spawn", "__pycache__"))
    try:
        yield root
    finally:
        _stop_project_server(root)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def on_suite(app: Path, pg_server: PgServer) -> Path:
    """The copy with a target ``suite``: the test suite's own server."""
    direct = ", ".join(toml_string(a) for a in pg_server.psql_argv())
    with (app / "spawn.toml").open("a", encoding="utf-8") as config:
        config.write("\n[targets.suite]\nengine = \"postgres-psql\"\nenvironment = \"dev\"\n"
                     f"command = {{ kind = \"direct\", direct = [{direct}] }}\n")
    return app


def summary(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout.strip().splitlines()[-1]


def test_the_example_app_passes_on_its_embedded_server(app: Path) -> None:
    done = run_pytest(app)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"6 passed in [\d.]+s( \(\d+:\d\d:\d\d\))?", summary(done)), done.stdout
    assert (app / ".spawn" / "postgres" / "PG_VERSION").is_file()


def test_keep_failed_keeps_the_failed_tests_database(on_suite: Path,
                                                     pg_server: PgServer) -> None:
    (on_suite / "check_fails.py").write_text(
        "def test_fails(spawn_db):\n"
        "    spawn_db.psql(\"INSERT INTO customers (first_name) VALUES ('Kept')\")\n"
        "    assert spawn_db.psql('SELECT count(*) FROM customers') == '2'\n")
    dropped = run_pytest(on_suite, "--spawn-target", "suite", "check_fails.py")
    assert dropped.returncode == 1
    assert "kept database" not in dropped.stdout
    kept_run = run_pytest(on_suite, "--spawn-target", "suite", "--spawn-keep-failed",
                          "check_fails.py")
    assert kept_run.returncode == 1
    kept = re.findall(r"^kept database (spawn_testdb_\w+_test_fails): psql '(.*)' "
                      r"\(`spawn test clean` drops it\)$", kept_run.stdout, re.MULTILINE)
    assert len(kept) == 2, kept_run.stdout  # in the test's report and in the summary
    (name, dsn), again = kept
    assert again == (name, dsn)
    assert f"dbname={name}" in dsn
    left = pg_server.query("SELECT string_agg(datname, ',') FROM pg_database "
                           "WHERE datname LIKE 'spawn\\_testdb\\_%\\_test\\_fails'")
    assert left == name  # the first run's database was dropped
    assert pg_server.query("SELECT first_name FROM customers", name) == "Kept"
    pg_server.query(f'DROP DATABASE "{name}"')


def test_spawn_checks_pass_then_catch_a_down_sql_that_does_not_undo(
        on_suite: Path) -> None:
    done = run_pytest(on_suite, "--spawn-target", "suite", "--spawn-checks", "-n", "2",
                      "-rA")
    assert done.returncode == 0, done.stdout + done.stderr
    passed = sorted(re.findall(r"^PASSED (spawn-checks::\S+)$", done.stdout, re.MULTILINE))
    assert passed == [
        "spawn-checks::applies[20260101000000-customers]",
        "spawn-checks::applies[20260102000000-split-names]",
        f"spawn-checks::applies[{ORDERS}]",
        "spawn-checks::compare",
        "spawn-checks::pinned",
        "spawn-checks::round-trip[20260101000000-customers]",
        f"spawn-checks::round-trip[{ORDERS}]",
        "spawn-checks::template-drift",
    ]
    assert re.fullmatch(r"14 passed in [\d.]+s( \(\d+:\d\d:\d\d\))?", summary(done)), done.stdout
    (on_suite / "spawn" / "migrations" / ORDERS / "down.sql").write_text(
        "DROP FUNCTION customer_total(integer);\n")
    broken = run_pytest(on_suite, "--spawn-target", "suite", "--spawn-checks",
                        "-k", "round-trip")
    assert broken.returncode == 1
    assert (
        f"migration {ORDERS}: its down.sql does not undo its up.sql; after up.sql then "
        "down.sql the schema differs from the one before up.sql (+ left behind by "
        "down.sql, - removed and not restored, ~ changed):\n"
        "+ table public.orders\n"
        "+ sequence public.orders_id_seq\n") in broken.stdout
    assert re.fullmatch(r"1 failed, 1 passed, 12 deselected in [\d.]+s",
                        summary(broken)), broken.stdout


def test_spawn_checks_name_a_migration_that_does_not_apply_and_an_unpinned_one(
        on_suite: Path) -> None:
    migrations = on_suite / "spawn" / "migrations"
    for name, sql in (("20260104000000-broken", "ALTER TABLE nowhere ADD COLUMN x int;\n"),
                      ("20260105000000-later", "SELECT 1;\n")):
        (migrations / name).mkdir()
        (migrations / name / "up.sql").write_text(sql)
    pinned = run_spawn("migration", "pin", "broken", cwd=on_suite)
    assert pinned.exit_code == 0, pinned.stderr
    done = run_pytest(on_suite, "--spawn-target", "suite", "--spawn-checks", "-k",
                      "applies or pinned")
    assert done.returncode == 1
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE)
    assert failed == ["spawn-checks::pinned", "spawn-checks::applies[20260104000000-broken]",
                      "spawn-checks::applies[20260105000000-later]"]
    assert ("\n1 migration(s) not pinned: 20260105000000-later; run `spawn migration pin "
            "--all` and commit the lock.toml files\n") in done.stdout
    assert ("migration 20260104000000-broken does not apply to a database holding the "
            "migrations before it: migration 20260104000000-broken failed on database "
            "spawn_testdb_") in done.stdout
    assert 'relation "nowhere" does not exist' in done.stdout
    assert ("\nmigration 20260105000000-later was not tried: migration "
            "20260104000000-broken, before it, failed (see its own check)\n") in done.stdout
    assert re.fullmatch(r"3 failed, 3 passed, 10 deselected in [\d.]+s",
                        summary(done)), done.stdout


def test_the_plugin_is_inert_without_its_fixtures_and_off_with_no_spawn(
        tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    done = run_pytest(tmp_path, "-p", "no:cacheprovider")
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout
    off = run_pytest(tmp_path, "-p", "no:cacheprovider", "-p", "no:spawn", "--spawn-checks")
    assert off.returncode == 4
    assert "unrecognized arguments: --spawn-checks" in off.stderr
