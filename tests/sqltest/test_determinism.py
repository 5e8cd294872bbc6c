"""Deterministic tests: ``freeze_time`` and ``seed`` in ``test.toml``, through `spawn test`."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.sqltest.determinism import rewrite_keywords

FROZEN = 'freeze_time = "2026-01-01T00:00:00Z"\nseed = 42\n'
PLAIN = "\\pset format unaligned\n\\pset tuples_only on\nSET TimeZone = 'UTC';\n"
TIME_SQL = PLAIN + """\
SELECT now(), current_timestamp, CURRENT_TIMESTAMP(0), clock_timestamp(),
       statement_timestamp(), transaction_timestamp(), localtimestamp, current_date,
       current_time, localtime, timeofday(), 'current_date in a string';
"""
FROZEN_ROW = (
    "2026-01-01 00:00:00+00|2026-01-01 00:00:00+00|2026-01-01 00:00:00+00|"
    "2026-01-01 00:00:00+00|2026-01-01 00:00:00+00|2026-01-01 00:00:00+00|"
    "2026-01-01 00:00:00|2026-01-01|00:00:00+00|00:00:00|"
    "Thu Jan 01 00:00:00.000000 2026 UTC|current_date in a string\n"
)
RANDOM_SQL = PLAIN + (
    "SELECT random(), random(), gen_random_uuid(), uuidv7();\n"
    "SELECT {{ gen_uuid_v4() }}, {{ gen_uuid_v7() }};\n"
)


def add(db_project: Any, name: str, sql: str, toml: str | None = FROZEN) -> None:
    folder = db_project.add_test(name, sql).parent
    if toml is not None:
        (folder / "test.toml").write_text(toml)


def run(db_project: Any, name: str) -> str:
    result = db_project.run("test", "run", name)
    assert (result.exit_code, result.stderr) == (0, ""), result
    output: str = result.stdout
    return output


def test_every_time_function_and_keyword_returns_the_frozen_instant(db_project: Any) -> None:
    add(db_project, "clock", TIME_SQL)
    assert run(db_project, "clock") == FROZEN_ROW


def test_two_runs_on_different_days_print_the_same(db_project: Any) -> None:
    """The output is a function of freeze_time alone: the real clock (checked to be a
    different day from the frozen one, and moving between the runs) does not show."""
    add(db_project, "days", TIME_SQL + RANDOM_SQL)
    before = db_project.database.query("SELECT clock_timestamp()")
    assert run(db_project, "days") == run(db_project, "days")
    expect = db_project.run("test", "expect", "days")
    assert expect.exit_code == 0
    after = db_project.database.query("SELECT clock_timestamp()")
    assert before != after
    assert not before.startswith("2026-01-01") and not after.startswith("2026-01-01")
    assert db_project.run("test", "compare", "days").exit_code == 0
    assert run(db_project, "days").startswith(FROZEN_ROW)

    (db_project.spawn_dir / "tests" / "days" / "test.toml").write_text(
        'freeze_time = "2030-06-15T12:30:00+02:00"\nseed = 42\n')
    moved = run(db_project, "days")
    assert moved.startswith("2030-06-15 10:30:00+00|2030-06-15 10:30:00+00|")
    assert "2030-06-15 10:30:00|2030-06-15|10:30:00+00|10:30:00|" in moved


def test_the_seed_repeats_random_and_uuids_and_another_seed_changes_them(
    db_project: Any,
) -> None:
    add(db_project, "dice", RANDOM_SQL)
    first = run(db_project, "dice")
    assert run(db_project, "dice") == first
    sql_row, render_row, _ = first.split("\n")
    r1, r2, v4, v7 = sql_row.split("|")
    assert 0 <= float(r1) < 1 and r1 != r2
    assert uuid.UUID(v4).version == 4 and uuid.UUID(v4).variant == uuid.RFC_4122
    frozen_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    for value in (v7, render_row.split("|")[1]):
        assert uuid.UUID(value).version == 7 and int(value.replace("-", "")[:12], 16) == frozen_ms
    assert uuid.UUID(render_row.split("|")[0]).version == 4

    (db_project.spawn_dir / "tests" / "dice" / "test.toml").write_text(
        'freeze_time = "2026-01-01T00:00:00Z"\nseed = 7\n')
    other = run(db_project, "dice")
    assert other != first
    assert other.split("|")[0] != r1 and other.split("\n")[1] != render_row


def test_render_time_uuids_differ_per_test_and_without_settings_stay_random(
    db_project: Any,
) -> None:
    add(db_project, "one", RANDOM_SQL)
    add(db_project, "two", RANDOM_SQL)
    add(db_project, "free", PLAIN + "SELECT {{ gen_uuid_v4() }};\n", toml=None)
    assert run(db_project, "one").split("\n")[1] != run(db_project, "two").split("\n")[1]
    assert run(db_project, "free") != run(db_project, "free")


def test_freeze_time_alone_also_repeats_randomness(db_project: Any) -> None:
    add(db_project, "alone", RANDOM_SQL, toml='freeze_time = 2026-01-01T00:00:00Z\n')
    assert run(db_project, "alone") == run(db_project, "alone")


def test_seed_alone_keeps_the_real_clock(db_project: Any) -> None:
    add(db_project, "seeded", PLAIN + "SELECT now() = pg_catalog.now(), random() = random();\n",
        toml="seed = 42\n")
    assert run(db_project, "seeded") == "t|f\n"


def test_the_settings_hold_for_the_test_session_only(db_project: Any) -> None:
    add(db_project, "path", PLAIN + "SHOW search_path;\n")
    add(db_project, "ordinary", PLAIN + "SHOW search_path;\nSELECT now() = pg_catalog.now();\n",
        toml=None)
    assert run(db_project, "path") == 'spawn_frozen, pg_catalog, "$user", public\n'
    assert run(db_project, "ordinary") == '"$user", public\nt\n'
    assert db_project.database.query("SHOW search_path") == '"$user", public'


def test_parallel_tests_install_the_schema_once_without_racing(db_project: Any) -> None:
    for name in ("p1", "p2", "p3", "p4"):
        add(db_project, name, TIME_SQL)
        (db_project.spawn_dir / "tests" / name / "expected").write_text(FROZEN_ROW)
    result = db_project.run("test", "compare", "-j", "4")
    assert result.exit_code == 0, result.stdout
    assert db_project.database.query(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'spawn_frozen'::regnamespace "
        "AND proname = 'now'") == "1"


def test_the_documented_limits(db_project: Any) -> None:
    """A migration's column DEFAULT now() is bound to pg_catalog.now: real time. A
    default set again inside the test, a plpgsql body's now(), and an explicit now() in
    the INSERT are frozen; a keyword inside a function body is not rewritten."""
    db_project.add_migration("events", (
        "CREATE TABLE events (id int, at timestamptz DEFAULT now());\n"
        "CREATE FUNCTION stamp() RETURNS timestamptz LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN now(); END $$;\n"
        "CREATE FUNCTION stamp_keyword() RETURNS timestamptz LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN current_timestamp; END $$;\n"
    ))
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    add(db_project, "limits", PLAIN + (
        "INSERT INTO events (id) VALUES (1);\n"
        "INSERT INTO events VALUES (2, now());\n"
        "ALTER TABLE events ALTER COLUMN at SET DEFAULT now();\n"
        "INSERT INTO events (id) VALUES (3);\n"
        "SELECT id, at = '2026-01-01Z' FROM events ORDER BY id;\n"
        "SELECT stamp(), stamp_keyword() = '2026-01-01Z';\n"
    ))
    assert run(db_project, "limits") == "1|f\n2|t\n3|t\n2026-01-01 00:00:00+00|f\n"


def test_build_shows_the_rewritten_keywords(db_project: Any) -> None:
    add(db_project, "shown", "SELECT current_date, localtime(2), t.current_date FROM t;\n")
    result = db_project.run("test", "build", "shown")
    assert result.exit_code == 0, result
    assert result.stdout == (
        'SELECT spawn_frozen."current_date"(), spawn_frozen."localtime"(2), t.current_date '
        "FROM t;\n"
    )


def test_a_bad_freeze_time_or_seed_exits_2_naming_the_file_and_key(db_project: Any) -> None:
    add(db_project, "bad", "SELECT 1;\n", toml='freeze_time = "tomorrow"\n')
    result = db_project.run("test", "compare", "bad")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: spawn/tests/bad/test.toml: `freeze_time` must be an instant with a time zone, "
        "not 'tomorrow'; write freeze_time = \"2026-01-01T00:00:00Z\"\n"
    )
    (db_project.spawn_dir / "tests" / "bad" / "test.toml").write_text(
        "freeze_time = 2026-01-01T00:00:00\n")
    result = db_project.run("test", "run", "bad")
    assert result.exit_code == 2
    assert "`freeze_time` must be an instant with a time zone, not 2026-01-01T00:00:00;" \
        in result.stderr
    (db_project.spawn_dir / "tests" / "bad" / "test.toml").write_text('seed = "42"\n')
    result = db_project.run("test", "expect", "bad")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: spawn/tests/bad/test.toml: `seed` must be an integer between -2147483647 and "
        "2147483647, not '42'; write seed = 42\n"
    )
    assert not (db_project.spawn_dir / "tests" / "bad" / "expected").exists()


def test_an_unknown_key_warns_with_the_closest_known_key(db_project: Any) -> None:
    add(db_project, "typo", "\\pset tuples_only on\nSELECT 1;\n", toml="sede = 42\n")
    result = db_project.run("test", "run", "typo")
    assert (result.exit_code, result.stdout) == (0, "        1\n\n")
    assert result.stderr == (
        "warning: unknown key `sede` in spawn/tests/typo/test.toml (ignored; the closest "
        "known key is `seed`)\n"
    )


# -- the keyword rewrite, without a database ---------------------------------------------

KEYWORDS = ("current_timestamp", "current_date", "current_time", "localtimestamp", "localtime")


def test_rewrite_examples() -> None:
    assert rewrite_keywords("SELECT CURRENT_TIMESTAMP(3), LocalTime;") == (
        'SELECT spawn_frozen."current_timestamp"(3), spawn_frozen."localtime"();')
    untouched = (
        "SELECT 'current_date', E'\\' current_date', \"current_date\", $$current_date$$,\n"
        "  $x$ current_time $x$, x.current_time, 1 AS localtime /* current_date /* nested */\n"
        "  current_date */ -- current_date\n;\n\\echo current_date\n"
    )
    assert rewrite_keywords(untouched) == untouched
    variables = "SELECT :'name', :\"col\", current_date; \\if :{?x} \\endif\nSELECT ':';\n"
    assert rewrite_keywords(variables) == variables.replace(
        " current_date;", ' spawn_frozen."current_date"();')


safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200).filter(
    lambda s: not any(k in s.lower() for k in ("current_", "localtime")))


@settings(max_examples=300, deadline=None)
@given(safe_text)
def test_text_without_the_keywords_is_unchanged(text: str) -> None:
    assert rewrite_keywords(text) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYWORDS), st.sampled_from(["'", '"', "$$", "--"]),
                          st.booleans()), max_size=6))
def test_keywords_are_rewritten_only_as_sql(pieces: list[tuple[str, str, bool]]) -> None:
    """A keyword as SQL becomes a call, the same word quoted, dollar-quoted or commented
    stays; spelling case does not matter."""
    parts, expected = [], []
    for keyword, quote, upper in pieces:
        word = keyword.upper() if upper else keyword
        wrapped = f"-- {word}\n" if quote == "--" else f"{quote}{word}{quote}"
        parts.append(f"SELECT {word}, {wrapped};\n")
        expected.append(f'SELECT spawn_frozen."{keyword}"(), {wrapped};\n')
    assert rewrite_keywords("".join(parts)) == "".join(expected)
    assert not re.search(r"spawn_frozen\.\"\w+\"\(\)\(", rewrite_keywords("".join(parts)))
