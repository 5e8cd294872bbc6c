"""Tenants over several targets (issue 18): per target the shared parts, then that
target's tenant parts; dry runs over several targets; a tenant-only migration reverted;
tenant parts reverted on ``--jobs`` sessions. Real databases of the suite's server as
targets, the real ``spawn``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_fanout_cli import Fleet, MakeFleet, fleets
from tests.conftest import PgServer
from tests.fleet.test_tenants import add, set_tenants, tables, tenant_list
from tests.migrate.history import history


@pytest.fixture
def make_fleet(pg_server: PgServer, tmp_path: Path) -> Iterator[MakeFleet]:
    with fleets(pg_server, tmp_path) as make:
        yield make


def tenant_fleet(make_fleet: MakeFleet, tenants: list[str]) -> tuple[Fleet, str, str]:
    """Two targets, ``tenants`` on each; a migration with a shared and a tenant part, and a
    tenant-only one (both reversible)."""
    fleet = make_fleet(2)
    set_tenants(fleet.project, tenant_list(tenants))
    first = add(fleet.project, "plans", up="CREATE TABLE public.plans (id int);\n",
                down="DROP TABLE public.plans;\n",
                tenant="CREATE TABLE users (id int DEFAULT {{ tenant | length }});\n",
                tenant_down="DROP TABLE users;\n")
    second = add(fleet.project, "orders", tenant=(
        "DO $$ BEGIN IF {{ tenant }} = current_setting('spawn_test.broken', true) THEN "
        "RAISE EXCEPTION 'tenant % is broken', {{ tenant }}; END IF; END $$;\n"
        "CREATE TABLE orders (id int);\n"),
        tenant_down="DROP TABLE orders;\n")
    return fleet, first, second


def break_tenant(fleet: Fleet, number: int, tenant: str) -> None:
    """Make ``tenant``'s part of the orders migration fail on shard-``number``."""
    db = fleet.db(number)
    db.query(f"ALTER DATABASE {db.name} SET spawn_test.broken = '{tenant}'")


def lines(text: str) -> list[str]:
    """The report's lines with the timings (`` (0.3 s)``) cut off."""
    return [line.split(" (")[0] if line.endswith(" s)") else line
            for line in text.splitlines()]


def test_two_targets_with_two_tenants_each_get_shared_and_tenant_parts(
        make_fleet: MakeFleet) -> None:
    fleet, first, second = tenant_fleet(make_fleet, ["acme", "globex"])

    result = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--jobs", "2")

    assert result.exit_code == 0, result.stdout + result.stderr
    assert lines(result.stdout) == [
        "== target shard-1 ==", "2 tenants: 2 ok, 0 failed, 0 skipped; slowest " +
        result.stdout.splitlines()[1].split("slowest ")[1].split(" ")[0],
        "== target shard-2 ==", "2 tenants: 2 ok, 0 failed, 0 skipped; slowest " +
        result.stdout.splitlines()[3].split("slowest ")[1].split(" ")[0],
        "2 targets: 2 ok, 0 failed, 0 skipped; slowest " +
        result.stdout.splitlines()[4].split("slowest ")[1].split(" ")[0]]
    assert sorted(line.split("] ", 1)[1].rsplit(" (", 1)[0]
                  for line in result.stderr.splitlines() if line.startswith("[")) == [
        f"\u2713 target shard-{n}: 1 applied; tenant parts applied in 2 of 2 tenants"
        for n in (1, 2)]
    for number in (1, 2):
        db = fleet.db(number)
        assert history(db) == [(first, "APPLY", "ATTEMPTED"), (first, "APPLY", "SUCCESS")]
        for name in ("acme", "globex"):
            assert tables(db, f"tenant_{name}") == ["orders", "users"]
            assert history(db, f"tenant:{name}") == [
                (first, "APPLY", "ATTEMPTED"), (first, "APPLY", "SUCCESS"),
                (second, "APPLY", "ATTEMPTED"), (second, "APPLY", "SUCCESS")]

    again = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--format",
                      "json")
    assert again.exit_code == 0, again.stderr
    report = json.loads(again.stdout)
    assert [(r["name"], r["state"], r["summary"]) for r in report["results"]] == [
        (f"shard-{n}", "ok", "up to date (1 applied); 2 tenants up to date")
        for n in (1, 2)]
    assert [[(t["name"], t["summary"]) for t in r["data"]["tenants"]["results"]]
            for r in report["results"]] == [[("acme", "up to date"),
                                             ("globex", "up to date")]] * 2

    status = fleet.run("--target", "shard-*", "migration", "status")
    assert status.exit_code == 0, status.stderr
    assert status.stdout.count(
        "Tenants: 2, 2 up to date, 0 with pending tenant parts, 0 failed (`spawn tenant "
        "list` for each).") == 2


def test_the_tenant_list_is_read_on_each_target(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(2)
    set_tenants(fleet.project, 'query = "SELECT slug FROM public.customers ORDER BY slug"')
    fleet.db(1).query("CREATE TABLE customers (slug text); INSERT INTO customers VALUES ('a')")
    fleet.db(2).query("CREATE TABLE customers (slug text); "
                      "INSERT INTO customers VALUES ('b'), ('c')")
    part = add(fleet.project, "notes", tenant="CREATE TABLE notes (body text);\n")

    result = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--jobs", "2",
                       "--format", "json")

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [[(t["name"], t["data"]) for t in r["data"]["tenants"]["results"]]
            for r in report["results"]] == [
        [("a", {"applied": [part]})], [("b", {"applied": [part]}), ("c", {"applied": [part]})]]
    assert tables(fleet.db(1), "tenant_a") == ["notes"]
    assert tables(fleet.db(1), "tenant_b") == [""]
    assert tables(fleet.db(2), "tenant_c") == ["notes"]


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_failing_tenant_on_one_target_fails_that_target(make_fleet: MakeFleet,
                                                          keep_going: bool) -> None:
    fleet, first, second = tenant_fleet(make_fleet, ["a1", "b2", "c3"])
    break_tenant(fleet, 1, "b2")
    flags = ["--continue-on-error"] if keep_going else []

    result = fleet.run("--target", "shard-*", "migration", "apply", "--yes", "--jobs", "1",
                       *flags)

    assert result.exit_code == 1
    db1, db2 = fleet.db(1), fleet.db(2)
    assert history(db1, "tenant:a1")[-1] == (second, "APPLY", "SUCCESS")
    assert history(db1, "tenant:b2") == [
        (first, "APPLY", "ATTEMPTED"), (first, "APPLY", "SUCCESS"),
        (second, "APPLY", "ATTEMPTED"), (second, "APPLY", "FAILURE")]
    failure = (f"\u2717 tenant b2: migration {second} failed (1 of 2 applied before it); "
               "recorded as FAILURE in namespace tenant:b2. psql said:\nERROR:  tenant b2 is "
               "broken")
    target_failure = (
        "\u2717 target shard-1: 1 of 3 tenants failed" + ("" if keep_going else
                                                           " and 1 was skipped")
        + " (b2" + ("" if keep_going else ",c3") + "); shared parts: 1 applied; its tenant "
        "report lists each failure; fix them, then run `spawn --target shard-1 migration "
        "apply --tenants b2" + ("" if keep_going else ",c3") + " --retry`")
    out = lines(result.stdout)
    assert out[0] == "== target shard-1 =="
    assert failure in result.stdout
    assert target_failure in out
    if keep_going:
        # c3 and the other target went on.
        assert history(db1, "tenant:c3")[-1] == (second, "APPLY", "SUCCESS")
        assert "3 tenants: 2 ok, 1 failed, 0 skipped" in result.stdout
        assert out[-1].startswith("2 targets: 1 ok, 1 failed, 0 skipped")
        for name in ("a1", "b2", "c3"):
            assert history(db2, f"tenant:{name}")[-1] == (second, "APPLY", "SUCCESS")
    else:
        # Nothing new starts after the failure: not c3, not the second target.
        assert history(db1, "tenant:c3") == []
        assert "3 tenants: 1 ok, 1 failed, 1 skipped" in result.stdout
        assert out[-2:] == ["- target shard-2: skipped (an earlier failure stopped the run)",
                            "2 targets: 0 ok, 1 failed, 1 skipped; slowest shard-1"]
        assert not fleet.has_tracking(2)

    report = json.loads(fleet.run("--target", "shard-*", "migration", "apply", "--yes",
                                  "--format", "json").stdout)
    shard1 = report["results"][0]
    assert shard1["state"] == "failed"
    assert {t["name"]: t["state"] for t in shard1["data"]["tenants"]["results"]}["b2"] == \
        "failed"


def history_everywhere(fleet: Fleet) -> list[str]:
    """Every history row of both targets, all namespaces (empty without a tracking
    schema)."""
    return [fleet.db(n).query(
        "SELECT string_agg(concat_ws('|', m.namespace, m.name, h.activity_id_activity, "
        "h.status_id_status), E'\\n' ORDER BY h.migration_history_id) FROM "
        "_spawn.migration_history h JOIN _spawn.migration m ON m.migration_id = "
        "h.migration_id_migration") if fleet.has_tracking(n) else "" for n in (1, 2)]


def test_dry_run_over_two_targets_prints_each_plan_and_touches_nothing(
        make_fleet: MakeFleet) -> None:
    fleet, first, second = tenant_fleet(make_fleet, ["acme", "globex"])
    assert fleet.run("--target", "shard-1", "migration", "apply", "--yes",
                     "--tenants", "acme").exit_code == 0
    before = history_everywhere(fleet)
    pin = next(line.split("pin ")[1].split()[0] for line in fleet.run(
        "--target", "shard-2", "migration", "apply", "--dry-run").stdout.splitlines()
        if line.startswith(first))
    checksum = next(line.split("checksum ")[1] for line in fleet.run(
        "--target", "shard-2", "migration", "apply", "--dry-run").stdout.splitlines()
        if line.startswith(first))

    result = fleet.run("--target", "shard-*", "migration", "apply", "--dry-run")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "== target shard-1 ==\n"
        f"tenant globex (tenant_globex): {first}, {second}\n"
        "== target shard-2 ==\n"
        f"{first}  pin {pin}  checksum {checksum}\n"
        f"tenant acme (tenant_acme): {first}, {second}\n"
        f"tenant globex (tenant_globex): {first}, {second}\n")
    assert result.stderr == (
        "Dry run: would apply 0 migrations (1 already applied); nothing was written.\n"
        "Then 2 tenant parts in 1 of 2 tenants.\n"
        "Dry run: would apply 1 migration (0 already applied); nothing was written.\n"
        "Then 4 tenant parts in 2 of 2 tenants.\n")
    assert history_everywhere(fleet) == before
    assert not fleet.has_tracking(2)

    as_json = fleet.run("--target", "shard-*", "migration", "apply", "--dry-run", "--sql",
                        "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert [(r["name"], r["state"]) for r in report["results"]] == [
        ("shard-1", "ok"), ("shard-2", "ok")]
    plans = [r["data"] for r in report["results"]]
    assert [[m["name"] for m in p["to_apply"]] for p in plans] == [[], [first]]
    assert plans[1]["to_apply"][0]["sql"] == "CREATE TABLE public.plans (id int);"
    assert [[(t["name"], t["to_run"]) for t in p["tenants"]] for p in plans] == [
        [("acme", []), ("globex", [first, second])],
        [("acme", [first, second]), ("globex", [first, second])]]

    reverts = fleet.run("--target", "shard-*", "migration", "revert", "--dry-run",
                        "--steps", "1")
    assert reverts.exit_code == 1
    assert [line.split(": pin")[0] for line in reverts.stdout.splitlines()] == [
        "== target shard-1 ==",
        f"-- spawn migration {first} (revert tenant acme, schema tenant_acme)",
        "DROP TABLE users;", f"-- spawn migration {first} (revert)",
        "DROP TABLE public.plans;", "== target shard-2 =="]
    assert reverts.stderr.splitlines() == [
        "Tenant parts first: 1 tenant part (tenant_down.sql) in 1 tenant.",
        "Dry run: would revert 1 migration (1 applied); nothing was written.",
        "error: target shard-2: --steps 1 asks to revert 1 migrations, but none is applied; "
        "nothing can be reverted",
        "error: the dry run failed on 1 of 2 targets (shard-2); each target's error is "
        "above; run `spawn --target NAME migration ... --dry-run` for one of them alone"]
    assert history_everywhere(fleet) == before


def test_revert_dry_run_lists_each_tenants_down_scripts_first(make_fleet: MakeFleet) -> None:
    fleet, first, second = tenant_fleet(make_fleet, ["acme", "globex", "initech"])
    project = fleet.project
    assert project.run("migration", "apply", "--yes").exit_code == 0
    assert project.run("tenant", "drop", "initech", "--yes").exit_code == 0
    before = history_everywhere(fleet)

    result = project.run("migration", "revert", first, "--dry-run")

    assert result.exit_code == 0, result.stderr
    out = result.stdout.splitlines()
    assert [line.split(": pin")[0] for line in out if line.startswith("--")] == [
        f"-- spawn migration {first} (revert tenant acme, schema tenant_acme)",
        f"-- spawn migration {first} (revert tenant globex, schema tenant_globex)",
        f"-- spawn migration {first} (revert)"]
    assert [line for line in out if not line.startswith("--")] == [
        "DROP TABLE users;", "DROP TABLE users;", "DROP TABLE public.plans;"]
    assert result.stderr == (
        "Tenant parts first: 2 tenant parts (tenant_down.sql) in 2 tenants.\n"
        "Dry run: would revert 1 migration (1 applied); nothing was written.\n")

    only = project.run("migration", "revert", second, "--dry-run", "--format", "json")
    assert only.exit_code == 0, only.stderr
    found = json.loads(only.stdout)
    assert (found["to_revert"], found["applied"]) == ([], None)
    assert [(p["tenant"], p["schema"], p["name"], p["sql"]) for p in found["tenant_parts"]] \
        == [("acme", "tenant_acme", second, "DROP TABLE orders;"),
            ("globex", "tenant_globex", second, "DROP TABLE orders;")]
    assert history_everywhere(fleet) == before


def test_a_tenant_only_migration_is_reverted_in_the_tenants(make_fleet: MakeFleet) -> None:
    fleet, _, second = tenant_fleet(make_fleet, ["acme", "globex", "initech"])
    project = fleet.project
    db = fleet.db(1)
    assert project.run("migration", "apply", "--yes").exit_code == 0
    shared = history(db)

    result = project.run("migration", "revert", second, "--tenants", "acme,initech")

    assert result.exit_code == 0, result.stderr
    assert lines(result.stdout) == ["2 tenants: 2 ok, 0 failed, 0 skipped; slowest " +
                                    result.stdout.split("slowest ")[1].split(" ")[0]]
    assert result.stderr == f"Reverted the tenant part of {second} in 2 of 2 tenants.\n"
    for name in ("acme", "initech"):
        assert tables(db, f"tenant_{name}") == ["users"]
        assert history(db, f"tenant:{name}")[-2:] == [(second, "REVERT", "ATTEMPTED"),
                                                     (second, "REVERT", "SUCCESS")]
    assert tables(db, "tenant_globex") == ["orders", "users"]
    assert history(db, "tenant:globex")[-1] == (second, "APPLY", "SUCCESS")
    assert history(db) == shared  # nothing in default

    rest = project.run("migration", "revert", second, "--format", "json")
    assert rest.exit_code == 0, rest.stderr
    assert {r["name"]: r["summary"] for r in json.loads(rest.stdout)["tenants"]["results"]} \
        == {"acme": "nothing to revert", "globex": "1 tenant part reverted",
            "initech": "nothing to revert"}
    assert tables(db, "tenant_globex") == ["users"]

    none = project.run("migration", "revert", second, "--tenants", "none")
    assert none.exit_code == 2
    assert "has only a tenant part (tenant.sql), and --tenants none" in none.stderr

    fleet_wide = fleet.run("--target", "shard-*", "migration", "apply", "--yes")
    assert fleet_wide.exit_code == 0, fleet_wide.stderr
    back = fleet.run("--target", "shard-*", "migration", "revert", second, "--yes",
                     "--format", "json")
    assert back.exit_code == 0, back.stderr
    assert [(r["name"], r["summary"]) for r in json.loads(back.stdout)["results"]] == [
        (f"shard-{n}", "only tenant parts; tenant parts reverted in 3 of 3 tenants")
        for n in (1, 2)]
    assert tables(fleet.db(2), "tenant_acme") == ["users"]


def test_revert_runs_tenant_parts_on_jobs_sessions(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(1)
    project = fleet.project
    set_tenants(project, tenant_list(["t1", "t2", "t3", "t4"]))
    db = fleet.db(1)
    db.query("CREATE TABLE public.pids (tenant text, pid int)")
    part = add(project, "x", up="CREATE TABLE public.shared (id int);\n",
               down="DROP TABLE public.shared;\n", tenant="CREATE TABLE x (id int);\n",
               tenant_down="DROP TABLE x;\nINSERT INTO public.pids VALUES ({{ tenant }}, "
                           "pg_backend_pid());\n")
    assert project.run("migration", "apply", "--yes").exit_code == 0

    result = project.run("migration", "revert", part, "--jobs", "2", "--tenants", "all")

    assert result.exit_code == 0, result.stderr
    assert db.query("SELECT count(*) || ' ' || count(DISTINCT pid) FROM public.pids") == "4 2"
    for name in ("t1", "t2", "t3", "t4"):
        assert history(db, f"tenant:{name}")[-1] == (part, "REVERT", "SUCCESS")


def test_a_target_with_nothing_to_do_is_read_without_its_lock(make_fleet: MakeFleet) -> None:
    """The no-op check (fleet/quick.py): an up-to-date target costs one history read and
    never waits for the migration lock, which another deployment may hold; a target with
    work still takes it (and here fails to get it)."""
    import subprocess

    from spawn_db.migrate.tracking import lock_key

    fleet, first, _ = tenant_fleet(make_fleet, ["acme"])
    assert fleet.run("--target", "shard-1", "migration", "apply", "--yes").exit_code == 0
    holder = subprocess.Popen([*fleet.db(1).psql_argv(), "-X", "-q"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write(f"SELECT pg_advisory_lock({lock_key()});\n\\echo held\n")
        holder.stdin.flush()
        while holder.stdout.readline().strip() != "held":
            pass

        result = fleet.run("--target", "shard-*", "migration", "apply", "--yes",
                           "--lock-timeout", "0", "--continue-on-error", "--format", "json")
    finally:
        holder.communicate("\\q\n", timeout=30)

    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [(r["name"], r["summary"]) for r in report["results"]] == [
        ("shard-1", "up to date (1 applied); 1 tenant up to date"),
        ("shard-2", "1 applied; tenant parts applied in 1 of 1 tenants")]
    assert report["results"][0]["data"] == {
        "applied": [], "already_applied": [first], "repeatables": None,
        "seconds": report["results"][0]["data"]["seconds"],
        "tenants": {"ok": True, "results": [
            {"name": "acme", "state": "ok", "seconds": 0.0, "summary": "up to date",
             "error": None, "data": {}}]}}
