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
from tests.conftest import DbProject, PgServer
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
        (f"shard-{n}", "ok", "up to date (1 applied); tenant parts applied in 0 of 2 tenants")
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
        + " (b2" + ("" if keep_going else ",c3") + ") after the shared parts (1 applied); "
        "its tenant report lists each failure; fix them, then run `spawn --target shard-1 "
        "migration apply --tenants b2" + ("" if keep_going else ",c3") + " --retry`")
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
        assert out[-2:] == ["- target shard-2: skipped (an earlier failure stopped the run)", "2 targets: 0 ok, 1 failed, "
                            "1 skipped; slowest shard-1"]
        assert not fleet.has_tracking(2)

    report = json.loads(fleet.run("--target", "shard-*", "migration", "apply", "--yes",
                                  "--format", "json").stdout)
    shard1 = report["results"][0]
    assert shard1["state"] == "failed"
    assert {t["name"]: t["state"] for t in shard1["data"]["tenants"]["results"]}["b2"] == \
        "failed"
