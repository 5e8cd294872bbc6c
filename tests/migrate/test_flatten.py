"""Baselines (issue 18, schema flattening): ``baseline = true`` in the planner and in apply on
the suite's real PostgreSQL, and ``dumptext``, which cleans a pg_dump and turns sentinel
values back into variables. ``spawn schema flatten|export|import`` themselves, on the
embedded server, are in tests/cli/test_schema_cli.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.escape import escape_identifier, escape_literal
from spawn_db.migrate.dumptext import clean_dump, sentinel_variables, template_of
from spawn_db.migrate.plan import PlanRequest, baseline_step, plan
from spawn_db.migrate.settings import MigrationSettings
from spawn_db.migrate.tracking import HistoryRow
from spawn_db.render.template import WorkingTreeSource, compile_template
from tests.conftest import DbProject
from tests.migrate.history import history

BASELINE = MigrationSettings(baseline=True)
NAMES = ["1-a", "2-b", "3-base", "4-c"]
SETTINGS = {"3-base": BASELINE}


def row(name: str, history_id: int, activity: str = "APPLY", status: str = "SUCCESS"
        ) -> HistoryRow:
    return HistoryRow(name, "default", history_id, activity, status, "", None, "", "", "", "",
                      0.0)


# -- the planner ------------------------------------------------------------------------------


def test_on_an_empty_database_the_baseline_runs_instead_of_what_it_replaces() -> None:
    found = plan(NAMES, SETTINGS, {}, PlanRequest())

    assert found.to_run == ("3-base", "4-c")
    assert found.baseline is not None
    assert (found.baseline.fresh, found.baseline.adopt) == (True, ("1-a", "2-b"))


def test_on_an_existing_database_the_pending_replaced_run_and_the_baseline_is_adopted() -> None:
    found = plan(NAMES, SETTINGS, {"1-a": row("1-a", 1)}, PlanRequest())

    assert found.to_run == ("2-b", "4-c")
    assert found.baseline is not None
    assert (found.baseline.fresh, found.baseline.adopt) == (False, ("3-base",))
    assert not found.baseline.ready({"1-a": row("1-a", 1)})
    assert found.baseline.ready({"1-a": row("1-a", 1), "2-b": row("2-b", 2)})


def test_a_row_of_a_deleted_old_migration_still_makes_the_database_existing() -> None:
    """Old folders are usually deleted after flattening; the history still says the
    schema was built by them, so the baseline must not run there."""
    found = plan(["3-base", "4-c"], SETTINGS, {"0-gone": row("0-gone", 1)}, PlanRequest())

    assert found.to_run == ("4-c",)
    assert found.baseline is not None and found.baseline.adopt == ("3-base",)


def test_a_run_stopped_after_the_baseline_still_adopts_what_it_replaces() -> None:
    states = {"3-base": row("3-base", 1)}

    found = plan(NAMES, SETTINGS, states, PlanRequest())

    assert found.to_run == ("4-c",)
    assert found.baseline is not None and found.baseline.fresh
    assert found.baseline.adopt == ("1-a", "2-b") and found.baseline.ready(states)


def test_a_named_baseline_is_not_run_on_an_existing_database() -> None:
    found = plan(NAMES, SETTINGS, {"1-a": row("1-a", 1), "2-b": row("2-b", 2)},
                 PlanRequest(migration="3-base"))

    assert found.to_run == ()


def test_only_the_newest_baseline_counts_and_an_older_one_is_adopted_with_it() -> None:
    settings_ = {"2-b": BASELINE, "3-base": BASELINE}

    fresh = baseline_step(NAMES, settings_, {})
    existing = baseline_step(NAMES, settings_, {"1-a": row("1-a", 1)})

    assert fresh is not None and (fresh.name, fresh.adopt) == ("3-base", ("1-a", "2-b"))
    assert existing is not None and existing.adopt == ("2-b", "3-base")
    assert existing.needed == ("1-a",)


def test_a_migration_newer_than_the_baseline_may_require_a_replaced_one() -> None:
    settings_ = {**SETTINGS, "4-c": MigrationSettings(requires=("1-a",))}

    assert plan(NAMES, settings_, {}, PlanRequest()).to_run == ("3-base", "4-c")


# -- apply on a real database ----------------------------------------------------------------


def baseline(db_project: DbProject, sql: str) -> str:
    name = db_project.add_migration("baseline", sql, pin=False)
    folder = db_project.spawn_dir / "migrations" / name
    (folder / "migration.toml").write_text("baseline = true\n", encoding="utf-8")
    assert db_project.run("migration", "pin", name).exit_code == 0
    return name


def test_apply_on_an_empty_database_runs_only_the_baseline_and_adopts_the_rest(
    db_project: DbProject,
) -> None:
    # The replaced migrations would fail if they ran.
    old = [db_project.add_migration("a", "SELECT 1/0;"),
           db_project.add_migration("b", "SELECT 1/0;")]
    base = baseline(db_project, "CREATE TABLE t (id int PRIMARY KEY);\n")
    newer = db_project.add_migration("c", "ALTER TABLE t ADD COLUMN c text;\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert history(db_project.database) == [
        (base, "APPLY", "ATTEMPTED"), (base, "APPLY", "SUCCESS"),
        (old[0], "ADOPT", "SUCCESS"), (old[1], "ADOPT", "SUCCESS"),
        (newer, "APPLY", "ATTEMPTED"), (newer, "APPLY", "SUCCESS")]
    assert (f"{base} is a baseline: on this empty database it runs in place of the 2 "
            "migrations before it, which are recorded as adopted\n") in result.stderr
    assert (f"Adopted 2 migrations replaced by baseline {base}: {old[0]}, {old[1]}\n"
            in result.stderr)
    assert db_project.database.query(
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = 't'::regclass AND attnum > 0") == "id,c"
    described = db_project.database.query(
        "SELECT DISTINCT description FROM _spawn.migration_history WHERE "
        "activity_id_activity = 'ADOPT'")
    assert described == f"replaced by baseline {base}"

    status = db_project.run("migration", "status", "--format", "json")
    rows = {m["name"]: m for m in json.loads(status.stdout)["migrations"]}
    assert [(rows[n]["status"], rows[n]["replaced_by"], rows[n]["out_of_order"])
            for n in (*old, base, newer)] == [
        ("adopted", base, False), ("adopted", base, False), ("applied", None, False),
        ("applied", None, False)]


def test_apply_on_an_existing_database_adopts_the_baseline_before_newer_migrations(
    db_project: DbProject,
) -> None:
    first = db_project.add_migration("a", "CREATE TABLE t (id int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    second = db_project.add_migration("b", "ALTER TABLE t ADD COLUMN b int;\n")
    base = baseline(db_project, "SELECT 1/0;\n")  # would fail if it ran
    newer = db_project.add_migration("c", "ALTER TABLE t ADD COLUMN c int;\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert history(db_project.database)[2:] == [
        (second, "APPLY", "ATTEMPTED"), (second, "APPLY", "SUCCESS"),
        (base, "ADOPT", "SUCCESS"),
        (newer, "APPLY", "ATTEMPTED"), (newer, "APPLY", "SUCCESS")]
    assert (f"Adopted baseline {base}: the migrations it replaces built this database.\n"
            in result.stderr)
    status = db_project.run("migration", "status")
    assert (f"note: {base} is a baseline: this database was built by the 2 migrations "
            "before it, and the baseline is adopted\n") in status.stderr
    assert history(db_project.database)[0][0] == first


def test_a_failing_baseline_adopts_nothing_and_a_retry_completes_it(
    db_project: DbProject,
) -> None:
    old = db_project.add_migration("a", "SELECT 1/0;")
    base = baseline(db_project, "SELECT 1/0;\n")

    failed = db_project.run("migration", "apply", "--yes")

    assert failed.exit_code == 1
    assert "division by zero" in failed.stderr
    assert history(db_project.database) == [(base, "APPLY", "ATTEMPTED"),
                                            (base, "APPLY", "FAILURE")]

    folder = db_project.spawn_dir / "migrations" / base
    (folder / "up.sql").write_text("CREATE TABLE t (id int);\n", encoding="utf-8")
    assert db_project.run("migration", "pin", base, "--force").exit_code == 0
    retried = db_project.run("migration", "apply", "--yes", "--retry")

    assert retried.exit_code == 0, retried.stderr
    assert history(db_project.database)[-2:] == [(base, "APPLY", "SUCCESS"),
                                                 (old, "ADOPT", "SUCCESS")]


def test_an_adoption_lost_to_a_crash_is_recorded_by_the_next_apply(
    db_project: DbProject,
) -> None:
    old = db_project.add_migration("a", "SELECT 1/0;")
    base = baseline(db_project, "CREATE TABLE t (id int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    db_project.database.query(
        "DELETE FROM _spawn.migration_history WHERE activity_id_activity = 'ADOPT'")

    again = db_project.run("migration", "apply", "--yes")

    assert again.exit_code == 0, again.stderr
    assert history(db_project.database)[-1] == (old, "ADOPT", "SUCCESS")
    assert base in again.stderr


# -- dump text --------------------------------------------------------------------------------

PG_DUMP_HEADER = """\\restrict 3kYbq9
--
-- PostgreSQL database dump
--

-- Dumped from database version 18.1
-- Dumped by pg_dump version 18.1

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;


CREATE TABLE public.t (
    id integer
);


\\unrestrict 3kYbq9
"""


def test_a_dump_loses_its_restrict_lines_and_session_settings_but_not_function_checks() -> None:
    assert clean_dump(PG_DUMP_HEADER) == (
        "SET check_function_bodies = false;\n\n--\n-- PostgreSQL database dump\n--\n\n"
        "CREATE TABLE public.t (\n    id integer\n);\n\nRESET check_function_bodies;\n")


def test_string_variables_get_sentinels_and_other_values_are_kept() -> None:
    fake, paths, kept = sentinel_variables(
        {"owner": "app", "db": {"name": "x", "max": 5}, "list": ["a"], "odd-key": "y"}, "ab")

    assert fake == {"owner": "spawnvarab_0_", "db": {"name": "spawnvarab_1_", "max": 5},
                    "list": ["spawnvarab_2_"], "odd-key": "spawnvarab_3_"}
    assert paths == {"spawnvarab_0_": "variables.owner", "spawnvarab_1_": "variables.db.name",
                     "spawnvarab_2_": "variables.list[0]",
                     "spawnvarab_3_": 'variables["odd-key"]'}
    assert kept == ("variables.db.max",)


def render(template: str, value: str) -> str:
    return compile_template(template, "up.sql", WorkingTreeSource(__import__("pathlib").Path())
                            ).render({"variables": {"x": value}})


TOKEN = "0a1b2c"
S = f"spawnvar{TOKEN}_0_"
PATHS = {S: "variables.x"}
SAFE_TEXT = st.text(alphabet=" {}%#;,()=+0123456789\n", max_size=8)
ANY_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
                   max_size=8)  # PostgreSQL text holds no NUL


@given(value=ANY_TEXT, pre=ANY_TEXT, post=ANY_TEXT, raw=SAFE_TEXT)
@settings(max_examples=100, deadline=None)
def test_each_sentinel_renders_back_as_the_sql_of_the_value(
    value: str, pre: str, post: str, raw: str,
) -> None:
    """A literal that held the sentinel renders as the literal of the new value, an
    identifier as its identifier, and the text around stays as it was (template syntax in
    it included)."""
    literal = "'" + (pre + S + post).replace("'", "''") + "'"
    quoted = '"' + (pre + S + post).replace('"', '""') + '"'
    dump = f"SELECT {literal}, {S}, {quoted}{raw}{{{{ '{{% x'; -- {S} {{#\n;"

    rendered = render(template_of(dump, TOKEN, PATHS), value)

    assert rendered == (f"SELECT {escape_literal(pre + value + post)}, "
                        f"{escape_identifier(value)}, {escape_identifier(pre + value + post)}"
                        f"{raw}{{{{ '{{% x'; -- variables.x {{#\n;")


def test_a_transformed_variable_is_refused_naming_it() -> None:
    from spawn_db.errors import SchemaDumpFailed

    with pytest.raises(SchemaDumpFailed) as info:
        template_of(f"COMMENT ON TABLE t IS '{S.upper()}';", TOKEN, PATHS)

    assert info.value.message.startswith("variables.x reaches the schema transformed")
    assert info.value.exit_code == 1


def test_function_bodies_and_copy_data_are_kept_as_they_are() -> None:
    """A body's blank lines and its own SET lines are its source text: changing them would
    make the baseline's function differ from the migrations' (drift compares bodies)."""
    body = ("CREATE FUNCTION public.f() RETURNS void\n    LANGUAGE plpgsql\n    AS $_$\n"
            "BEGIN\n\n\nSET search_path = '';\nEND\n$_$;\n")
    copy = "COPY public.t (a) FROM stdin;\n\n\nSET x = 1;\n\\.\n"

    assert clean_dump(f"SET row_security = off;\n{body}\n\n\n{copy}") == f"{body}\n{copy}"


def test_the_scratch_database_goes_to_the_embedded_server_whatever_the_target(
    db_project: DbProject,
) -> None:
    """A target on a shared server is not where flatten builds: no CREATEDB needed there."""
    from spawn_db.config import Overrides, load_config
    from spawn_db.migrate.flatten import scratch_target

    config = load_config(Overrides(config_file=str(db_project.config_path)))
    chosen = scratch_target(config)

    assert config.target().command.kind == "direct"
    assert (chosen.name, chosen.command.kind, chosen.spawn_schema) == (
        "local:embedded", "embedded", "_spawn")
