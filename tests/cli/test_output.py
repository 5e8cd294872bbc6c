"""Global output options (--color, -q, -v) and the rich status table, through the real
entry point: on a pseudo-terminal for what a user sees, piped for what scripts see."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from tests.helpers import SPAWN, run_on_terminal, spawn_env

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def three_states(db_project: Any) -> tuple[str, str, str]:
    """An applied, a failed and a pending migration."""
    ok = db_project.add_migration("ok", "CREATE TABLE t (id int);\n")
    bad = db_project.add_migration("bad", "SELECT * FROM no_such_table;\n")
    later = db_project.add_migration("later", "CREATE TABLE u (id int);\n")
    result = db_project.run("migration", "apply", "--yes")
    assert result.exit_code == 1, result.stderr
    return ok, bad, later


def plain_table(db_project: Any, ok: str, bad: str, later: str) -> str:
    name = db_project.database.name
    assert (len(ok), len(bad), len(later)) == (17, 18, 20)
    return (
        "Migration             Filesystem  Pinned  Database  Status\n"
        "--------------------  ----------  ------  --------  ---------\n"
        f"{ok}     \u2713           \u2713       \u2713         \u2713 Applied\n"
        f"{bad}    \u2713           \u2713       \u2713         \u2717 Failed\n"
        f"{later}  \u2713           \u2713       \u2717         \u25cb Pending\n"
        "\n"
        f"1 applied, 1 failed, 1 pending (database {name}, schema _spawn)\n"
    )


def words(text: str) -> list[str]:
    """The words of a table, without colour codes and rules, to compare two renderings."""
    return [w for w in ANSI.sub("", text).split() if set(w) - set("-\u2500")]


def test_piped_and_never_status_is_todays_plain_table(db_project: Any) -> None:
    ok, bad, later = three_states(db_project)
    expected = plain_table(db_project, ok, bad, later)
    piped = db_project.run("migration", "status")
    assert piped.exit_code == 0, piped.stderr
    assert piped.stdout == expected
    never = db_project.run("--color", "never", "migration", "status")
    assert never.stdout == expected
    on_terminal = run_on_terminal(db_project.root, ["--color", "never", "migration", "status"])
    assert on_terminal == expected


def test_status_on_a_terminal_has_coloured_states_and_the_same_words(db_project: Any) -> None:
    ok, bad, later = three_states(db_project)
    expected = plain_table(db_project, ok, bad, later)
    for args in (["--color", "always"], []):
        coloured = run_on_terminal(db_project.root, [*args, "migration", "status"])
        assert "\x1b[32m\u2713 Applied" in coloured, (args, coloured)
        assert "\x1b[1;31m\u2717 Failed" in coloured, (args, coloured)
        assert "\x1b[33m\u25cb Pending" in coloured, (args, coloured)
        assert words(coloured) == words(expected), args
        # Only colour is added: without it, the terminal shows the plain table exactly.
        assert ANSI.sub("", coloured) == expected, args
    piped_always = db_project.run("--color", "always", "migration", "status")
    assert "\x1b[32m\u2713 Applied" in piped_always.stdout
    assert words(piped_always.stdout) == words(expected)
    env_always = db_project.run("migration", "status", env={"SPAWN_COLOR": "always"})
    assert env_always.stdout == piped_always.stdout


def test_no_color_and_dumb_terminal_turn_auto_colour_off(db_project: Any) -> None:
    ok, bad, later = three_states(db_project)
    expected = plain_table(db_project, ok, bad, later)
    for env in ({"NO_COLOR": "1"}, {"TERM": "dumb"}, {"SPAWN_COLOR": "never"}):
        assert run_on_terminal(db_project.root, ["migration", "status"], env=env) == expected, env
    # An explicit choice beats the environment's hints.
    forced = run_on_terminal(db_project.root, ["--color", "always", "migration", "status"],
                             env={"NO_COLOR": "1", "TERM": "dumb"})
    assert "\x1b[32m\u2713 Applied" in forced


def test_json_status_is_the_same_whatever_the_colour(db_project: Any) -> None:
    three_states(db_project)
    plain = db_project.run("migration", "status", "--format", "json")
    coloured = db_project.run("--color", "always", "migration", "status", "--format", "json")
    assert coloured.stdout == plain.stdout
    assert "\x1b" not in coloured.stdout and plain.stdout.startswith("{\n")


def test_quiet_drops_progress_and_summary_but_keeps_errors(db_project: Any) -> None:
    db_project.add_migration("one", "CREATE TABLE one (id int);\n")
    quiet = db_project.run("-q", "migration", "apply", "--yes")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    assert db_project.database.query("SELECT count(*) FROM one") == "0"
    two = db_project.add_migration("two", "CREATE TABLE two (id int);\n")
    loud = db_project.run("migration", "apply", "--yes")
    assert loud.exit_code == 0, loud.stderr
    assert f"[1/1] \u2713 {two} (" in loud.stderr and "Applied 1 migration in" in loud.stderr
    bad = db_project.add_migration("bad", "SELECT * FROM no_such_table;\n")
    failed = db_project.run("--quiet", "migration", "apply", "--yes")
    assert (failed.exit_code, failed.stdout) == (1, "")
    assert failed.stderr.startswith(f"error: migration {bad} failed"), failed.stderr
    assert "no_such_table" in failed.stderr


def test_verbose_prints_each_psql_command_with_the_password_masked(db_project: Any) -> None:
    name = db_project.database.name
    text = db_project.config_path.read_text()
    assert f'"-d", "{name}"' in text
    db_project.config_path.write_text(
        text.replace(f'"-d", "{name}"', f'"-d", "dbname={name} password=hunter2"'))
    db_project.add_migration("one", "CREATE TABLE one (id int);\n")
    result = db_project.run("-v", "migration", "apply", "--yes")
    assert result.exit_code == 0, result.stderr
    commands = [line for line in result.stderr.splitlines() if line.startswith("+ ")]
    assert commands, result.stderr
    psql = db_project.database.server.psql
    assert any(line.startswith(f"+ {psql} -X ") and f"'dbname={name} password=****'" in line
               for line in commands), commands
    assert "hunter2" not in result.stderr + result.stdout
    assert "Applied 1 migration in" in result.stderr
    plain = db_project.run("migration", "status")
    assert "+ " not in plain.stderr


def test_quiet_and_verbose_together_is_a_usage_error(db_project: Any) -> None:
    result = db_project.run("-q", "-v", "migration", "status")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "error: --quiet and --verbose contradict each other; pass one " \
        "of them\n"


def test_rich_is_not_imported_for_help_or_piped_status(db_project: Any) -> None:
    db_project.add_migration("one", "CREATE TABLE one (id int);\n")
    for args in (["--help"], ["--version"], ["migration", "status"]):
        done = subprocess.run([*SPAWN[:1], "-X", "importtime", *SPAWN[1:], *args],
                              cwd=db_project.root, capture_output=True, text=True,
                              env=spawn_env(), check=False)
        assert done.returncode == 0, (args, done.stderr)
        modules = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                   if line.startswith("import time:")]
        assert "spawn_db" in modules, args
        assert not [m for m in modules if m.split(".")[0] == "rich"], args


def test_apply_on_a_terminal_shows_a_live_bar_and_keeps_the_lines(db_project: Any) -> None:
    names = [db_project.add_migration(f"m{i}", f"CREATE TABLE m{i} (id int);\n")
             for i in range(3)]
    shown = run_on_terminal(db_project.root, ["migration", "apply", "--yes"],
                            env={"SPAWN_PROGRESS_DELAY": "0"})
    assert "applying " + names[0] in shown
    assert re.search(r"[0-3]/3 .*0:00:0\d ETA (-:--:--|0:00:0\d) applying 2024",
                     ANSI.sub("", shown)), shown
    # The bar is transient: once removed, the permanent lines remain.
    for position, name in enumerate(names, 1):
        assert f"[{position}/3] \u2713 {name} (" in shown
    assert "Applied 3 migrations in" in shown
    assert db_project.database.query("SELECT count(*) FROM m2") == "0"
    more = db_project.add_migration("m3", "CREATE TABLE m3 (id int);\n")
    piped = db_project.run("migration", "apply", "--yes")
    assert "\x1b" not in piped.stderr and "applying" not in piped.stderr
    assert piped.stderr.splitlines()[-2].startswith(f"[1/1] \u2713 {more} (")
    dumb = db_project.add_migration("m4", "CREATE TABLE m4 (id int);\n")
    on_dumb = run_on_terminal(db_project.root, ["migration", "apply", "--yes"],
                              env={"TERM": "dumb"})
    assert f"[1/1] applying {dumb} ...\r\x1b[K[1/1] \u2713 {dumb} (" in on_dumb


def test_verbose_apply_shows_each_migrations_rendered_size_and_time(db_project: Any) -> None:
    sql = "CREATE TABLE sized (id int);\n"
    name = db_project.add_migration("sized", sql)

    verbose = db_project.run("-v", "migration", "apply", "--yes")

    assert verbose.exit_code == 0, verbose.stderr
    lines = [line for line in verbose.stderr.splitlines()
             if line.startswith(f"  {name}: ")]
    assert len(lines) == 1, verbose.stderr
    rendered = len(sql.encode()) - 1  # templates drop one trailing newline, as Jinja does
    assert re.fullmatch(rf"  {name}: {rendered} bytes of SQL rendered, ran in "
                        r"\d+\.\d ms", lines[0]), lines[0]
    db_project.add_migration("quiet", "SELECT 1;\n")
    plain = db_project.run("migration", "apply", "--yes")
    assert "bytes of SQL rendered" not in plain.stderr
