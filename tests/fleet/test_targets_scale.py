"""Issue 18's scale test at suite size: 8 databases as 8 targets, 3 migrations each,
``--jobs 4``; then a second run with nothing to do (bench/fleet_targets.py is the large one:
50 databases, timed against one psql session per database)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_fanout_cli import fleets, three_migrations
from tests.conftest import PgServer

COUNT = 8


def test_eight_databases_as_eight_targets_with_four_jobs(pg_server: PgServer,
                                                         tmp_path: Path) -> None:
    with fleets(pg_server, tmp_path) as make:
        fleet = make(COUNT)
        names = three_migrations(fleet)
        first = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--jobs", "4",
                          "--format", "json")
        assert first.exit_code == 0, first.stderr
        report = json.loads(first.stdout)
        assert [(r["name"], r["state"], r["summary"]) for r in report["results"]] == [
            (f"shard-{n}", "ok", "3 applied") for n in range(1, COUNT + 1)]
        history = "SELECT count(*) FROM _spawn.migration_history"
        for number in range(1, COUNT + 1):
            assert fleet.applied(number) == sorted(names)
        rows = [fleet.db(n).query(history) for n in range(1, COUNT + 1)]
        second = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--jobs",
                           "4", "--format", "json")
        assert second.exit_code == 0, second.stderr
        assert {r["summary"] for r in json.loads(second.stdout)["results"]} == {
            "up to date (3 applied)"}
        assert [fleet.db(n).query(history) for n in range(1, COUNT + 1)] == rows  # none new
