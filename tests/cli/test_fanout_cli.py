"""``migration apply | status | revert | drift`` on several targets (issue 18, "Many
databases"): each target a database of the suite's server, the real ``spawn``, the real
tracking tables. Several names, globs and ``[target_groups]`` select them; each target
keeps its own history and lock; a failing target, ``--continue-on-error``, ``--canary``,
JSON; and the single-target commands refuse several."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from spawn_db.config import toml_string
from tests.conftest import DbProject, PgServer, TestDatabase, _ident
from tests.helpers import Result, run_on_terminal

_numbers = itertools.count(1)


@dataclass
class Fleet:
    """A project whose targets ``shard-1`` … ``shard-N`` are N databases of the server."""

    project: DbProject
    databases: list[TestDatabase]

    @property
    def root(self) -> Path:
        return self.project.root

    def run(self, *args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        return self.project.run(*args, input=input, env=env)

    def db(self, number: int) -> TestDatabase:
        return self.databases[number - 1]

    def applied(self, number: int) -> list[str]:
        """The migrations shard-N's own tracking table says are applied (latest rows)."""
        rows = self.db(number).query(
            "SELECT DISTINCT ON (m.name) m.name || ':' || h.activity_id_activity || ':' || "
            "h.status_id_status FROM _spawn.migration m JOIN _spawn.migration_history h ON "
            "h.migration_id_migration = m.migration_id WHERE m.namespace = 'default' "
            "ORDER BY m.name, h.migration_history_id DESC")
        return [r.split(":")[0] for r in rows.splitlines() if r.endswith(":APPLY:SUCCESS")]

    def has_tracking(self, number: int) -> bool:
        return self.db(number).query(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '_spawn'") == "1"


MakeFleet = Callable[..., Fleet]


def fleet_config(databases: list[TestDatabase], extra: str = "") -> str:
    lines = ['spawn_folder = "spawn"', 'target = "shard-1"', ""]
    for number, database in enumerate(databases, 1):
        direct = ", ".join(toml_string(a) for a in database.psql_argv())
        lines += [f"[targets.shard-{number}]", 'engine = "postgres-psql"',
                  'environment = "dev"',
                  f'command = {{ kind = "direct", direct = [{direct}] }}', ""]
    return "\n".join(lines) + extra


@contextmanager
def fleets(pg_server: PgServer, tmp_path: Path) -> Iterator[MakeFleet]:
    """``make(count, extra_toml)`` gives a Fleet; its databases are dropped afterwards."""
    created: list[str] = []

    def make(count: int, extra: str = "") -> Fleet:
        from spawn_db.project import init_project

        databases = []
        for _ in range(count):
            name = f"spawn_fan_{os.getpid()}_{next(_numbers)}"
            pg_server.query(f"CREATE DATABASE {_ident(name)} TEMPLATE "
                            f"{_ident(pg_server.template)}")
            created.append(name)
            databases.append(TestDatabase(name=name, server=pg_server))
        root = tmp_path / f"fleet{len(created)}"
        init = init_project(root)
        init.config_path.write_text(fleet_config(databases, extra), encoding="utf-8")
        project = DbProject(root=root, database=databases[0], config_path=init.config_path,
                            spawn_dir=root / "spawn")
        return Fleet(project, databases)

    try:
        yield make
    finally:
        for name in created:
            pg_server.query(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")


@pytest.fixture
def make_fleet(pg_server: PgServer, tmp_path: Path) -> Iterator[MakeFleet]:
    with fleets(pg_server, tmp_path) as make:
        yield make


def three_migrations(fleet: Fleet) -> list[str]:
    return [fleet.project.add_migration("users", "CREATE TABLE users (id int);\n"),
            fleet.project.add_migration("orders", "CREATE TABLE orders (id int);\n"),
            fleet.project.add_migration("items", "CREATE TABLE items (id int);\n")]


# -- selecting targets -------------------------------------------------------------------


def test_a_glob_applies_every_matching_target_each_with_its_own_history(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(3)
    names = three_migrations(fleet)
    result = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--jobs", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "3 targets: 3 ok, 0 failed, 0 skipped; slowest " + \
        result.stdout.split("slowest ")[1]
    for number in (1, 2, 3):
        assert fleet.applied(number) == sorted(names)
    lines = sorted(line.split("] ", 1)[1].rsplit(" (", 1)[0]
                   for line in result.stderr.splitlines() if line.startswith("["))
    assert lines == [f"\u2713 target shard-{n}: 3 applied" for n in (1, 2, 3)]
    again = fleet.run("--target", "shard-*", "migration", "apply", "--yes")
    assert again.exit_code == 0, again.stderr
    assert sorted(line.split("] ", 1)[1].rsplit(" (", 1)[0]
                  for line in again.stderr.splitlines() if line.startswith("[")) == [
        f"\u2713 target shard-{n}: up to date (3 applied)" for n in (1, 2, 3)]


def test_repeated_and_comma_separated_targets_and_groups_select_exactly(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(4, '[target_groups]\nodd = ["shard-1", "shard-3"]\n'
                          'some = ["odd", "shard-[24]"]\n')
    three_migrations(fleet)
    result = fleet.run("--target", "shard-2,shard-4", "migration", "apply", "--yes")
    assert result.exit_code == 0, result.stderr
    assert [fleet.has_tracking(n) for n in (1, 2, 3, 4)] == [False, True, False, True]
    result = fleet.run("--target", "odd", "migration", "apply", "--yes")
    assert result.exit_code == 0, result.stderr
    assert all(fleet.has_tracking(n) for n in (1, 2, 3, 4))
    status = fleet.run("--target", "some", "migration", "status", "--format", "json")
    assert status.exit_code == 0, status.stderr
    report = json.loads(status.stdout)
    # The group's order (odd: 1, 3; then the pattern in spawn.toml's order: 2, 4), each once.
    assert [r["name"] for r in report["results"]] == ["shard-1", "shard-3", "shard-2",
                                                     "shard-4"]
    repeated = fleet.run("--target", "shard-3", "--target", "shard-1,shard-3", "migration",
                         "status", "--format", "json")
    assert [r["name"] for r in json.loads(repeated.stdout)["results"]] == ["shard-3",
                                                                          "shard-1"]


def test_spawn_target_takes_the_same_selection(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(2)
    three_migrations(fleet)
    result = fleet.run("migration", "apply", "--yes", env={"SPAWN_TARGET": "shard-*"})
    assert result.exit_code == 0, result.stderr
    assert fleet.applied(2) == fleet.applied(1) != []


@pytest.mark.parametrize(("selection", "message"), [
    ("shard-9", "error: {path}: target 'shard-9' is not defined (did you mean `shard-2`?); "
                "add a [targets.shard-9] table or pick one of: shard-1, shard-2\n"),
    ("shard-1,shardz", "error: --target (or SPAWN_TARGET): 'shardz' is neither a target nor "
                       "a target group in {path} (did you mean `shards`?); the targets are: "
                       "shard-1, shard-2; the groups: shards\n"),
    ("db-*", "error: --target (or SPAWN_TARGET): the pattern 'db-*' matches no target in "
             "{path}; the targets are: shard-1, shard-2\n"),
    ("shard-1,,shard-2", "error: --target (or SPAWN_TARGET): 'shard-1,,shard-2' has an empty "
                         "name between commas; write the names as `a,b` (or repeat "
                         "--target)\n"),
])
def test_a_name_or_pattern_that_selects_nothing_is_refused_naming_it(
        make_fleet: MakeFleet, selection: str, message: str) -> None:
    fleet = make_fleet(2, '[target_groups]\nshards = ["shard-*"]\n')
    result = fleet.run("--target", selection, "migration", "status")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == message.format(path=fleet.project.config_path)


def test_a_group_member_that_names_nothing_is_refused_naming_the_group(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(2, '[target_groups]\nshards = ["shard-1", "shard-3"]\n'
                          'loop = ["shard-1", "loop2"]\nloop2 = ["loop"]\n')
    result = fleet.run("--target", "shards", "migration", "status")
    assert (result.exit_code, result.stderr) == (
        2, f"error: [target_groups] `shards`: 'shard-3' is neither a target nor a target "
           f"group in {fleet.project.config_path} (did you mean `shard-2`?); the targets "
           "are: shard-1, shard-2; the groups: shards, loop, loop2\n")
    result = fleet.run("--target", "loop", "migration", "status")
    assert (result.exit_code, result.stderr) == (
        2, f"error: {fleet.project.config_path}: [target_groups] contain each other (loop "
           "-> loop2 -> loop); a group may name other groups, but not itself through them\n")


def test_a_group_cannot_take_a_target_name(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(1, '[target_groups]\nshard-1 = ["shard-1"]\n')
    result = fleet.run("migration", "status")
    assert (result.exit_code, result.stderr) == (
        2, f"error: {fleet.project.config_path}: [target_groups] `shard-1` has the name of a "
           "target; a group and a target cannot share a name, so rename the group\n")


def test_single_target_commands_refuse_several_and_accept_a_selection_of_one(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(2, '[target_groups]\nfirst = ["shard-1"]\n')
    name = three_migrations(fleet)[0]
    result = fleet.run("--target", "shard-*", "migration", "build", name)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: the target selection names 2 targets (shard-1, shard-2), and this command "
        "works on one target at a time; pass one target name with --target (only "
        "`migration apply`, `status`, `revert` and `drift` run on several targets)\n")
    one = fleet.run("--target", "first", "migration", "apply", "--yes")
    assert (one.exit_code, one.stdout) == (0, "")
    assert one.stderr.splitlines()[-1].startswith("Applied 3 migrations in ")  # as today
    again = fleet.run("--target", "shard-1,shard-1", "migration", "apply", "--yes")
    assert (again.exit_code, again.stderr) == (
        0, "Nothing to apply: every migration is applied (3 in total).\n")
    pattern = fleet.run("--target", "shard-1*", "migration", "status")
    assert pattern.stdout == fleet.run("--target", "shard-1", "migration", "status").stdout
    assert pattern.stdout.startswith("Migration ")
    assert not fleet.has_tracking(2)


def test_changing_several_targets_needs_yes_without_a_terminal(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(2)
    three_migrations(fleet)
    result = fleet.run("--target", "shard-*", "migration", "apply")
    assert (result.exit_code, result.stderr) == (
        2, "error: Apply on 2 targets (shard-1, shard-2) needs confirmation, and spawn cannot "
           "ask because standard input is not a terminal; pass --yes to go ahead\n")
    assert not fleet.has_tracking(1) and not fleet.has_tracking(2)


# -- failures, --continue-on-error, --canary ---------------------------------------------


def broken_second(fleet: Fleet) -> None:
    """shard-2 already has a table ``orders``, so its second migration fails."""
    fleet.db(2).query("CREATE TABLE orders (x int)")


def test_a_failing_target_stops_the_targets_not_yet_started(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(4)
    three_migrations(fleet)
    broken_second(fleet)
    result = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--jobs", "1")
    assert result.exit_code == 1
    assert result.stdout.startswith("\u2717 target shard-2: migration 20240101000001-orders "
                                    "failed (1 of 3 applied before it)")
    assert 'relation "orders" already exists' in result.stdout
    lines = result.stdout.split("\n- ", 1)[1].splitlines()
    lines[0] = "- " + lines[0]
    assert lines[0:2] == [
        "- target shard-3: skipped (an earlier failure stopped the run)",
        "- target shard-4: skipped (an earlier failure stopped the run)"]
    assert lines[2].startswith("4 targets: 1 ok, 1 failed, 2 skipped; slowest ")
    assert fleet.applied(1) == sorted(fleet.applied(1)) and len(fleet.applied(1)) == 3
    assert len(fleet.applied(2)) == 1
    assert not fleet.has_tracking(3) and not fleet.has_tracking(4)


def test_continue_on_error_applies_every_other_target(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(4)
    three_migrations(fleet)
    broken_second(fleet)
    result = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--jobs", "2",
                       "--continue-on-error", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    states = {r["name"]: r["state"] for r in report["results"]}
    assert states == {"shard-1": "ok", "shard-2": "failed", "shard-3": "ok", "shard-4": "ok"}
    first = report["results"][0]
    assert [m["name"] for m in first["data"]["applied"]] == sorted(fleet.applied(1))
    assert first["summary"] == "3 applied" and first["error"] is None
    assert 'relation "orders" already exists' in report["results"][1]["error"]
    assert [len(fleet.applied(n)) for n in (1, 2, 3, 4)] == [3, 1, 3, 3]


def test_a_failing_canary_keeps_the_rest_untouched(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(4)
    three_migrations(fleet)
    broken_second(fleet)
    result = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--canary",
                       "2", "--jobs", "4", "--continue-on-error")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1].startswith(
        "4 targets: 1 ok, 1 failed, 2 skipped")
    assert not fleet.has_tracking(3) and not fleet.has_tracking(4)
    fleet.db(2).query("DROP TABLE orders")
    retried = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--retry",
                        "--canary", "2", "--jobs", "4")
    assert retried.exit_code == 0, retried.stdout + retried.stderr
    assert [len(fleet.applied(n)) for n in (1, 2, 3, 4)] == [3, 3, 3, 3]


# -- status, revert, drift ---------------------------------------------------------------


def test_status_reports_each_target(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(2)
    three_migrations(fleet)
    fleet.run("--target", "shard-1", "migration", "apply", "--yes")
    result = fleet.run("--target", "shard-1,shard-2", "migration", "status")
    assert result.exit_code == 0, result.stderr
    two = fleet.db(2).name
    alone = [fleet.run("--target", f"shard-{n}", "migration", "status").stdout for n in (1, 2)]
    assert "\u2713 Applied" in alone[0] and "\u25cb Pending" in alone[1]
    assert result.stdout == (
        f"== target shard-1 ==\n{alone[0]}\n== target shard-2 ==\n{alone[1]}\n"
        "2 targets: 2 ok, 0 failed, 0 skipped; slowest " + result.stdout.split("slowest ")[1])
    as_json = json.loads(fleet.run("--target", "shard-*", "migration", "status", "--format",
                                   "json").stdout)
    second = as_json["results"][1]
    assert second["summary"] == f"3 pending (database {two}, schema _spawn)"
    assert second["data"]["database"] == two
    assert [m["status"] for m in second["data"]["migrations"]] == ["pending"] * 3


def test_revert_runs_on_every_target(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(3)
    names = three_migrations(fleet)
    (fleet.project.spawn_dir / "migrations" / names[2] / "down.sql").write_text(
        "DROP TABLE items;\n")
    from spawn_db.config import Overrides, load_config
    from spawn_db.migrate.migration import pin_migration

    pin_migration(load_config(Overrides(config_file=str(fleet.project.config_path))),
                  names[2])
    assert fleet.run("--target", "shard-*", "migration", "apply", "--yes").exit_code == 0
    result = fleet.run("--target", "shard-*", "migration", "revert", "--yes", "--format",
                       "json", "--jobs", "3")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(r["name"], r["summary"], [m["name"] for m in r["data"]["reverted"]])
            for r in report["results"]] == [
        (f"shard-{n}", "1 reverted", [names[2]]) for n in (1, 2, 3)]
    for number in (1, 2, 3):
        assert fleet.applied(number) == sorted(names[:2])
        assert fleet.db(number).query("SELECT to_regclass('items') IS NULL") == "t"


def test_drift_compares_each_target_and_fails_the_drifted_one(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(3)
    three_migrations(fleet)
    assert fleet.run("--target", "shard-*", "migration", "apply", "--yes").exit_code == 0
    fleet.db(3).query("CREATE TABLE extra (id int)")
    result = fleet.run("--target", "shard-*", "migration", "drift", "--continue-on-error",
                       "--jobs", "2")
    assert result.exit_code == 1
    assert result.stdout == (
        f"\u2717 target shard-3: database {fleet.db(3).name} has drifted from the 3 applied "
        "migrations in 1 object (+ table public.extra); bring the schema back in line, or "
        "write a migration that does\n3 targets: 2 ok, 1 failed, 0 skipped; slowest "
        + result.stdout.split("slowest ")[1])
    ok = fleet.run("--target", "shard-1,shard-2", "migration", "drift", "--format", "json")
    assert ok.exit_code == 0, ok.stderr
    assert [(r["name"], r["summary"], r["data"]["drift"])
            for r in json.loads(ok.stdout)["results"]] == [
        ("shard-1", "no drift (the 3 applied migrations)", False),
        ("shard-2", "no drift (the 3 applied migrations)", False)]
    refused = fleet.run("--target", "shard-*", "migration", "apply", "--yes",
                        "--check-drift", "--continue-on-error")
    assert refused.exit_code == 1
    assert "+ table public.extra), so nothing was applied" in refused.stdout


def test_each_target_uses_its_own_variables_and_environment(
        make_fleet: MakeFleet) -> None:
    fleet = make_fleet(2)
    (fleet.root / "one.yaml").write_text("region: eu\n")
    (fleet.root / "two.yaml").write_text("region: us\n")
    text = fleet.project.config_path.read_text()
    text = text.replace('[targets.shard-1]\n', '[targets.shard-1]\nvariables = "one.yaml"\n')
    text = text.replace('[targets.shard-2]\nengine = "postgres-psql"\nenvironment = "dev"',
                        '[targets.shard-2]\nengine = "postgres-psql"\nenvironment = "qa"\n'
                        'variables = "two.yaml"')
    fleet.project.config_path.write_text(text)
    fleet.project.add_migration(
        "where", "CREATE TABLE place AS SELECT {{ variables.region }}::text AS region, "
                 "{{ env }}::text AS env;\n", pin=False)
    result = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--no-pin")
    assert result.exit_code == 0, result.stderr
    assert fleet.db(1).query("SELECT region || ' ' || env FROM place") == "eu dev"
    assert fleet.db(2).query("SELECT region || ' ' || env FROM place") == "us qa"


def test_on_a_terminal_the_fleet_is_confirmed_once(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(2)
    three_migrations(fleet)
    args = ["--target", "shard-*", "migration", "apply"]
    said_no = run_on_terminal(fleet.root, args, answer="n\n")
    assert said_no.endswith("2 targets: shard-1, shard-2\nApply on these 2 targets? [y/N]: "
                            "Cancelled; nothing was applied.\n")  # the typed n echoes first
    assert not fleet.has_tracking(1) and not fleet.has_tracking(2)
    said_yes = run_on_terminal(fleet.root, args, answer="y\n")
    assert said_yes.count("[y/N]") == 1
    assert len(fleet.applied(1)) == len(fleet.applied(2)) == 3
