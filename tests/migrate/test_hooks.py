"""Hooks (issue 14): ``[[hooks.<event>]]`` in spawn.toml around apply, each migration,
revert and tests, through the real ``spawn`` and the test suite's PostgreSQL."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.config import toml_string
from spawn_db.migrate.hooks import psql_command_line
from tests.conftest import DbProject
from tests.migrate.history import history

# Appends one JSON line per run (its SPAWN_* variables) to the file given as argv[1].
RECORD_ENV = (
    "import json, os, sys\n"
    "keys = ('SPAWN_TARGET', 'SPAWN_ENVIRONMENT', 'SPAWN_EVENT', 'SPAWN_MIGRATION', "
    "'SPAWN_TEST')\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(json.dumps({k: os.environ.get(k) for k in keys}) + '\\n')\n"
)
# Runs a query through SPAWN_PSQL and prints its result.
QUERY_THROUGH_SPAWN_PSQL = (
    "import os, shlex, subprocess, sys\n"
    "argv = shlex.split(os.environ['SPAWN_PSQL']) + ['-XtAc', sys.argv[1]]\n"
    "print(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip())\n"
)


def add_hooks(db_project: DbProject, toml: str) -> None:
    with db_project.config_path.open("a", encoding="utf-8") as f:
        f.write("\n" + toml)


def hook_file(db_project: DbProject, name: str, sql: str) -> None:
    folder = db_project.spawn_dir / "hooks"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(sql, encoding="utf-8")


def python_hook(event: str, code: str, *args: str, extra: str = "") -> str:
    argv = ", ".join(toml_string(a) for a in [sys.executable, "-c", code, *args])
    return f"[[hooks.{event}]]\ncommand = [{argv}]\n{extra}"


def recorded(path: Path) -> list[dict[str, str | None]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def log_table(db_project: DbProject) -> None:
    db_project.database.query("CREATE TABLE hook_log (id serial, what text)")


def logged(db_project: DbProject) -> list[str]:
    return db_project.database.query("SELECT what FROM hook_log ORDER BY id").splitlines()


# -- apply -----------------------------------------------------------------------------------


def test_sql_and_command_hooks_run_around_apply_and_write_no_history(
    db_project: DbProject, tmp_path: Path
) -> None:
    log_table(db_project)
    hook_file(db_project, "before.sql",
              "INSERT INTO hook_log (what) VALUES ('before ' || {{ env }});\n")
    hook_file(db_project, "after.sql", "INSERT INTO hook_log (what) "
              "SELECT 'after ' || count(*) FROM pg_tables WHERE tablename IN ('a', 'b');\n")
    env_file = tmp_path / "env.jsonl"
    add_hooks(db_project,
              '[[hooks.before_apply]]\nsql = "hooks/before.sql"\n'
              '[[hooks.after_apply]]\nsql = "hooks/after.sql"\n'
              + python_hook("after_apply", RECORD_ENV, str(env_file)))
    a = db_project.add_migration("a", "CREATE TABLE a (id int);\n")
    b = db_project.add_migration("b", "CREATE TABLE b (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert logged(db_project) == ["before dev", "after 2"]
    assert recorded(env_file) == [{"SPAWN_TARGET": "local", "SPAWN_ENVIRONMENT": "dev",
                                   "SPAWN_EVENT": "after_apply", "SPAWN_MIGRATION": None,
                                   "SPAWN_TEST": None}]
    # Hooks write no history rows: only the two migrations' ATTEMPTED/SUCCESS pairs.
    assert history(db_project.database) == [
        (a, "APPLY", "ATTEMPTED"), (a, "APPLY", "SUCCESS"),
        (b, "APPLY", "ATTEMPTED"), (b, "APPLY", "SUCCESS")]

    again = db_project.run("migration", "apply", "--yes")

    assert again.exit_code == 0, again.stderr
    assert logged(db_project) == ["before dev", "after 2"], "nothing to apply: no hooks"
    assert len(recorded(env_file)) == 1


def test_each_migration_sql_hooks_share_the_migrations_session(db_project: DbProject) -> None:
    db_project.database.query("CREATE SCHEMA app")
    log_table(db_project)
    hook_file(db_project, "path.sql", "SET search_path = app, public;\n")
    hook_file(db_project, "seen.sql", "INSERT INTO public.hook_log (what) VALUES "
              "(current_setting('search_path') || ' ' || "
              "coalesce(current_setting('spawn.mark', true), '-'));\n")
    add_hooks(db_project,
              '[[hooks.before_each_migration]]\nsql = "hooks/path.sql"\n'
              '[[hooks.after_each_migration]]\nsql = "hooks/seen.sql"\n')
    db_project.add_migration("one", "CREATE TABLE t1 (id int);\nSET spawn.mark = 'one';\n")
    db_project.add_migration("two", "CREATE TABLE t2 (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    # The before hook's SET carried into each migration; the after hook saw its SET.
    assert db_project.database.query(
        "SELECT schemaname || '.' || tablename FROM pg_tables WHERE tablename IN ('t1', 't2') "
        "ORDER BY 1") == "app.t1\napp.t2"
    assert logged(db_project) == ["app, public one", "app, public -"]


def test_each_migration_commands_get_the_migration_and_a_working_spawn_psql(
    db_project: DbProject, tmp_path: Path
) -> None:
    env_file = tmp_path / "env.jsonl"
    out = tmp_path / "out.txt"
    count_tables = ("import os, shlex, subprocess, sys\n"
                    "argv = shlex.split(os.environ['SPAWN_PSQL']) + ['-XtAc', "
                    "\"SELECT count(*) FROM pg_tables WHERE tablename LIKE 'hk%'\"]\n"
                    "n = subprocess.run(argv, capture_output=True, text=True, check=True)"
                    ".stdout.strip()\n"
                    "open(sys.argv[1], 'a').write(os.environ['SPAWN_EVENT'] + ' ' + n + '\\n')\n")
    add_hooks(db_project,
              python_hook("before_each_migration", RECORD_ENV, str(env_file))
              + python_hook("before_each_migration", count_tables, str(out))
              + python_hook("after_each_migration", count_tables, str(out)))
    first = db_project.add_migration("hk1", "CREATE TABLE hk1 (id int);\n")
    second = db_project.add_migration("hk2", "CREATE TABLE hk2 (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert [(r["SPAWN_EVENT"], r["SPAWN_MIGRATION"]) for r in recorded(env_file)] == [
        ("before_each_migration", first), ("before_each_migration", second)]
    # Between migrations, on the target: each command saw the tables made so far.
    assert out.read_text().splitlines() == [
        "before_each_migration 0", "after_each_migration 1",
        "before_each_migration 1", "after_each_migration 2"]


def test_a_failing_after_apply_hook_exits_1_naming_it_and_the_migrations_stay_applied(
    db_project: DbProject,
) -> None:
    code = "import sys; sys.exit('grants failed')"
    add_hooks(db_project, python_hook("after_apply", code))
    a = db_project.add_migration("a", "CREATE TABLE a (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert (f"error: hook [[hooks.after_apply]] #1 (command = "
            f"{shlex.join([sys.executable, '-c', code])}) "
            "failed: exit code 1: grants failed\n"
            "fix the command (or set on_error = \"warn\" on it), or run with --no-hooks\n"
            ) in result.stderr
    assert "Traceback" not in result.stderr
    assert history(db_project.database) == [(a, "APPLY", "ATTEMPTED"), (a, "APPLY", "SUCCESS")]
    assert db_project.database.query("SELECT to_regclass('a') IS NOT NULL") == "t"


def test_a_failing_after_each_hook_stops_the_run_after_a_successful_migration(
    db_project: DbProject,
) -> None:
    hook_file(db_project, "check.sql", "SELECT 1/0;\n")
    add_hooks(db_project, '[[hooks.after_each_migration]]\nsql = "hooks/check.sql"\n')
    a = db_project.add_migration("a", "CREATE TABLE a (id int);\n")
    db_project.add_migration("b", "CREATE TABLE b (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert result.stderr.count(
        'error: hook [[hooks.after_each_migration]] #1 (sql = "hooks/check.sql") failed in '
        f"the session of migration {a}: ") == 1
    assert "division by zero" in result.stderr
    assert history(db_project.database) == [(a, "APPLY", "ATTEMPTED"), (a, "APPLY", "SUCCESS")]
    assert db_project.database.query("SELECT to_regclass('a') IS NOT NULL, "
                                     "to_regclass('b') IS NULL") == "t|t"


def test_a_failing_before_each_hook_records_the_migration_as_not_run(
    db_project: DbProject,
) -> None:
    hook_file(db_project, "guard.sql", "SELECT 1/0;\n")
    add_hooks(db_project, '[[hooks.before_each_migration]]\nsql = "hooks/guard.sql"\n')
    a = db_project.add_migration("a", "CREATE TABLE a (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert ('error: hook [[hooks.before_each_migration]] #1 (sql = "hooks/guard.sql") failed '
            f"in the session of migration {a}: ERROR:  division by zero") in result.stderr
    assert history(db_project.database) == [(a, "APPLY", "ATTEMPTED"), (a, "APPLY", "FAILURE")]
    assert db_project.database.query(
        "SELECT status_note FROM _spawn.migration_history WHERE status_id_status = 'FAILURE'"
    ).startswith('not run: hook [[hooks.before_each_migration]] #1 (sql = "hooks/guard.sql") '
                 "failed before it: ERROR:  division by zero")
    assert db_project.database.query("SELECT to_regclass('a') IS NULL") == "t"


def test_warn_hooks_report_and_go_on(db_project: DbProject) -> None:
    hook_file(db_project, "broken.sql", "SELECT no_such_column FROM pg_class;\n")
    add_hooks(db_project,
              '[[hooks.before_each_migration]]\nsql = "hooks/broken.sql"\non_error = "warn"\n'
              + python_hook("after_apply", "import sys; sys.exit(3)", extra='on_error = "warn"\n'))
    a = db_project.add_migration("a", "CREATE TABLE a (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert 'column "no_such_column" does not exist' in result.stderr
    assert "warning: hook [[hooks.after_apply]] #1" in result.stderr
    assert "failed (exit code 3); going on (on_error = \"warn\")" in result.stderr
    assert history(db_project.database) == [(a, "APPLY", "ATTEMPTED"), (a, "APPLY", "SUCCESS")]


def test_after_apply_error_runs_when_a_migration_fails_and_after_apply_does_not(
    db_project: DbProject, tmp_path: Path
) -> None:
    env_file = tmp_path / "env.jsonl"
    add_hooks(db_project, python_hook("after_apply_error", RECORD_ENV, str(env_file))
              + python_hook("after_apply", RECORD_ENV, str(env_file)))
    db_project.add_migration("bad", "SELECT 1/0;\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert "division by zero" in result.stderr
    assert [r["SPAWN_EVENT"] for r in recorded(env_file)] == ["after_apply_error"]


def test_no_hooks_and_environments_skip_hooks(db_project: DbProject, tmp_path: Path) -> None:
    env_file = tmp_path / "env.jsonl"
    add_hooks(db_project, python_hook("after_apply", RECORD_ENV, str(env_file))
              + python_hook("before_apply", RECORD_ENV, str(env_file),
                            extra='environments = ["prod"]\n'))
    db_project.add_migration("a", "CREATE TABLE a (id int);\n")
    db_project.add_migration("b", "CREATE TABLE b (id int);\n")

    skipped = db_project.run("migration", "apply", "a", "--yes", "--no-hooks")
    assert skipped.exit_code == 0, skipped.stderr
    assert recorded(env_file) == []

    ran = db_project.run("migration", "apply", "--yes")
    assert ran.exit_code == 0, ran.stderr
    # before_apply is for prod only; the target's environment is dev.
    assert [r["SPAWN_EVENT"] for r in recorded(env_file)] == ["after_apply"]


# -- revert and tests --------------------------------------------------------------------------


def test_revert_hooks_run_around_the_down_scripts(db_project: DbProject, tmp_path: Path) -> None:
    env_file = tmp_path / "env.jsonl"
    add_hooks(db_project, python_hook("before_revert", RECORD_ENV, str(env_file))
              + python_hook("after_revert", RECORD_ENV, str(env_file)))
    a = db_project.add_migration("a", "CREATE TABLE a (id int);\n")
    (db_project.spawn_dir / "migrations" / a / "down.sql").write_text("DROP TABLE a;\n")
    db_project.run("migration", "pin", a)
    assert db_project.run("migration", "apply", "--yes", "--no-hooks").exit_code == 0

    result = db_project.run("migration", "revert", "--yes")

    assert result.exit_code == 0, result.stderr
    assert [r["SPAWN_EVENT"] for r in recorded(env_file)] == ["before_revert", "after_revert"]
    assert db_project.database.query("SELECT to_regclass('a') IS NULL") == "t"


def test_test_hooks_run_before_each_test_and_after_all(db_project: DbProject,
                                                       tmp_path: Path) -> None:
    env_file = tmp_path / "env.jsonl"
    log_table(db_project)
    hook_file(db_project, "seed.sql", "INSERT INTO hook_log (what) VALUES ('seeded');\n")
    add_hooks(db_project, '[[hooks.before_test]]\nsql = "hooks/seed.sql"\n'
              + python_hook("before_test", RECORD_ENV, str(env_file))
              + python_hook("after_tests", RECORD_ENV, str(env_file)))
    db_project.add_test("one", "SELECT count(*) FROM hook_log;\n")
    db_project.add_test("two", "SELECT 2;\n")

    result = db_project.run("test", "expect", "--yes", "-j", "1")
    assert result.exit_code == 0, result.stderr

    assert (db_project.spawn_dir / "tests" / "one" / "expected").read_text() == \
        " count \n-------\n     1\n(1 row)\n\n"
    assert [(r["SPAWN_EVENT"], r["SPAWN_TEST"]) for r in recorded(env_file)] == [
        ("before_test", "one"), ("before_test", "two"), ("after_tests", None)]

    skipped = db_project.run("test", "compare", "two", "--no-hooks")
    assert skipped.exit_code == 0, skipped.stderr
    assert len(recorded(env_file)) == 3


def test_a_failing_before_test_hook_is_the_tests_error(db_project: DbProject) -> None:
    add_hooks(db_project, python_hook("before_test", "import sys; sys.exit('no fixture')"))
    db_project.add_test("one", "SELECT 1;\n")

    result = db_project.run("test", "run", "one")

    assert result.exit_code == 1
    assert "error: hook [[hooks.before_test]] #1" in result.stderr
    assert "failed: exit code 1: no fixture" in result.stderr


# -- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(("toml", "message"), [
    ('[[hooks.after_aply]]\nsql = "hooks/x.sql"\n',
     "[hooks.after_aply] is not a hook event (did you mean `after_apply`?); use one of: "
     "before_apply, after_apply, after_apply_error, before_each_migration, "
     "after_each_migration, before_revert, after_revert, before_test, after_tests"),
    ('[[hooks.after_apply]]\nsql = "hooks/../migrations/x.sql"\n',
     "[[hooks.after_apply]] #1 `sql` = 'hooks/../migrations/x.sql' must name a .sql template "
     "inside the hooks/ folder of the spawn folder"),
    ('[[hooks.after_apply]]\nsql = "/etc/x.sql"\n',
     "[[hooks.after_apply]] #1 `sql` = '/etc/x.sql' must name a .sql template"),
    ('[[hooks.after_apply]]\nsql = "grants.sql"\n',
     "[[hooks.after_apply]] #1 `sql` = 'grants.sql' must name a .sql template"),
    ('[[hooks.after_apply]]\ncommand = "./notify.sh"\n',
     "[[hooks.after_apply]] #1 `command` must be a non-empty list of non-empty strings"),
    ('[[hooks.after_apply]]\ncommand = []\n',
     "[[hooks.after_apply]] #1 `command` must be a non-empty list"),
    ('[[hooks.after_apply]]\nsql = "hooks/x.sql"\ncommand = ["x"]\n',
     "[[hooks.after_apply]] #1 needs exactly one of `sql`"),
    ('[[hooks.after_apply]]\non_error = "warn"\n',
     "[[hooks.after_apply]] #1 needs exactly one of `sql`"),
    ('[[hooks.after_apply]]\nsql = "hooks/x.sql"\non_error = "ignore"\n',
     "[[hooks.after_apply]] #1 `on_error` is 'ignore'; use \"fail\""),
    ('[[hooks.after_apply]]\nsql = "hooks/x.sql"\nenvironments = "dev"\n',
     "[[hooks.after_apply]] #1 `environments` must be a list of environment names"),
    ('[hooks]\nafter_apply = "hooks/x.sql"\n',
     "[hooks.after_apply] must be a list of tables"),
    ('hooks = 1\n', "`hooks` must be a table of [[hooks.<event>]] entries"),
])
def test_bad_hook_configuration_is_a_config_error(db_project: DbProject, toml: str,
                                                  message: str) -> None:
    add_hooks(db_project, toml)
    if toml.startswith("hooks ="):
        text = db_project.config_path.read_text()
        db_project.config_path.write_text("hooks = 1\n" + text.replace("\nhooks = 1\n", "\n"))

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {db_project.config_path}: {message}")
    assert "Traceback" not in result.stderr


def test_a_hook_template_linked_out_of_hooks_is_refused(db_project: DbProject,
                                                        tmp_path: Path) -> None:
    outside = tmp_path / "outside.sql"
    outside.write_text("SELECT 1;\n")
    (db_project.spawn_dir / "hooks").mkdir()
    (db_project.spawn_dir / "hooks" / "x.sql").symlink_to(outside)
    add_hooks(db_project, '[[hooks.before_apply]]\nsql = "hooks/x.sql"\n')
    db_project.add_migration("a", "CREATE TABLE a (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 2
    assert "resolves outside" in result.stderr and "keep hook templates inside hooks/" \
        in result.stderr
    assert db_project.database.query("SELECT to_regclass('a') IS NULL") == "t"


# -- SPAWN_PSQL ------------------------------------------------------------------------------


_PASSWORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")),
                     min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(password=_PASSWORDS)
def test_spawn_psql_never_carries_the_password(password: str) -> None:
    from urllib.parse import quote

    encoded = quote(password, safe="")
    quoted = password.replace("\\", "\\\\").replace("'", "\\'")
    cases = {
        ("psql", f"postgresql://app:{encoded}@db.example:5432/app"):
            "psql postgresql://app@db.example:5432/app",
        ("env", f"PGPASSWORD={password}", "psql", "-h", "db"): "env psql -h db",
        ("psql", f"host=db password='{quoted}' dbname=app"): "psql 'host=db dbname=app'",
        ("psql", f"postgresql://app@db/app?password={encoded}&sslmode=disable"):
            "psql 'postgresql://app@db/app?sslmode=disable'",
    }
    for argv, expected in cases.items():
        assert psql_command_line(argv) == (expected, {"PGPASSWORD": password})


def test_spawn_psql_keeps_a_command_without_password_as_it_is() -> None:
    argv = ["docker", "exec", "-i", "db", "psql", "-U", "app", "it's"]
    assert psql_command_line(argv) == (shlex.join(argv), {})


def test_spawn_psql_opens_psql_on_the_target(db_project: DbProject, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    code = QUERY_THROUGH_SPAWN_PSQL + f"open({str(out)!r}, 'w').write('ok')\n"
    add_hooks(db_project, python_hook("after_apply", code, "SELECT current_database()"))
    db_project.add_migration("a", "CREATE TABLE a (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert out.read_text() == "ok"
    assert db_project.database.name in result.stderr


def test_hook_programs_that_cannot_start_fail_naming_the_hook(db_project: DbProject) -> None:
    add_hooks(db_project, '[[hooks.before_apply]]\ncommand = ["./no-such-program"]\n')
    db_project.add_migration("a", "CREATE TABLE a (id int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert (
        "error: hook [[hooks.before_apply]] #1 (command = ./no-such-program) failed: exit "
        "code 127: cannot run ./no-such-program: No such file or directory\n") in result.stderr
    assert history(db_project.database) == []
