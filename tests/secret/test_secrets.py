"""Secrets (issue 19): ``{{ secret("name") }}`` reaches the database through a psql variable
and nowhere else, against the suite's real PostgreSQL; the secret string is searched for in
every output, file and table spawn writes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from tests.conftest import DbProject

SECRET = "s3cr3t-Ω-'quote'-\\back-$1"


def declare(db_project: DbProject, body: str) -> None:
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write("\n" + body)


def env_secret(db_project: DbProject) -> dict[str, str]:
    declare(db_project, '[secrets.pw]\nenv = "APP_PW"\n')
    return {"APP_PW": SECRET}


def everything_spawn_wrote(db_project: DbProject) -> str:
    files = [p.read_bytes().decode("utf-8", "replace") for p in db_project.root.rglob("*")
             if p.is_file()]
    history = db_project.database.query(
        "SELECT string_agg(h::text, E'\\n') FROM _spawn.migration_history h")
    return "\n".join([*files, history])


def scram_matches(stored: str, password: str) -> bool:
    """PostgreSQL's SCRAM-SHA-256 verifier (RFC 5802) checked against ``password``: proof
    the role got exactly this password, whatever the server's pg_hba allows."""
    method, rest = stored.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    _stored_key, server_key = keys.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                 int(iterations))
    expected = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return method == "SCRAM-SHA-256" and base64.b64encode(expected).decode() == server_key


def test_the_database_gets_the_secret_and_nothing_spawn_writes_or_prints_holds_it(
    db_project: DbProject,
) -> None:
    env = env_secret(db_project)
    role = f"app_{db_project.database.name}"[:60]
    name = db_project.add_migration("role", (
        f"CREATE ROLE {role} LOGIN;\n"
        f"ALTER ROLE {role} PASSWORD {{{{ secret(\"pw\") }}}};\n"
        "CREATE TABLE kept (v text);\n"
        "INSERT INTO kept VALUES ({{ secret('pw') }});\n"))

    build = db_project.run("migration", "build", name, "--pinned", env=env)
    applied = db_project.run("--debug", "migration", "apply", "--yes", env=env)
    status = db_project.run("migration", "status", env=env)

    assert applied.exit_code == 0, applied.stderr
    assert build.stdout.count(":'spawn_secret_pw'") == 2
    assert db_project.database.query("SELECT v FROM kept") == SECRET
    stored = db_project.database.query(f"SELECT rolpassword FROM pg_authid WHERE rolname = "
                                       f"'{role}'")
    assert scram_matches(stored, SECRET)
    assert not scram_matches(stored, SECRET + "x")
    for output in (build.stdout, build.stderr, applied.stdout, applied.stderr, status.stdout,
                   status.stderr, everything_spawn_wrote(db_project)):
        assert SECRET not in output
    db_project.database.query(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_a_failing_statement_that_shows_the_secret_is_masked_everywhere(
    db_project: DbProject,
) -> None:
    env = env_secret(db_project)
    name = db_project.add_migration("fails", "SELECT {{ secret('pw') }}::int;\n")

    result = db_project.run("--debug", "migration", "apply", "--yes", env=env)

    assert result.exit_code == 1
    assert 'invalid input syntax for type integer: "****"' in result.stderr
    note = db_project.database.query(
        "SELECT status_note FROM _spawn.migration_history WHERE status_id_status = 'FAILURE'")
    assert 'invalid input syntax for type integer: "****"' in note
    assert name in result.stderr
    for output in (result.stdout, result.stderr, everything_spawn_wrote(db_project)):
        assert SECRET not in output


def test_an_undeclared_or_unavailable_secret_runs_nothing(db_project: DbProject) -> None:
    db_project.add_migration("uses", "CREATE TABLE t (v text DEFAULT {{ secret('pw') }});\n")

    undeclared = db_project.run("migration", "apply", "--yes")
    assert undeclared.exit_code == 2
    assert undeclared.stderr.splitlines()[-1].startswith(
        "error: spawn/migrations/20240101000000-uses/up.sql:1: secret('pw') is not declared; "
        "add [secrets.pw] with one of env, file, command or variable to ")

    declare(db_project, '[secrets.pw]\nenv = "APP_PW_UNSET"\n')
    unavailable = db_project.run("migration", "apply", "--yes")
    assert unavailable.exit_code == 2
    assert unavailable.stderr == (
        "error: secret 'pw' (env provider): environment variable APP_PW_UNSET is not set; "
        "set it, or change [secrets] in spawn.toml\n")
    assert db_project.database.query(
        "SELECT count(*) FROM _spawn.migration m WHERE m.namespace = 'default'") == "0"
    assert db_project.database.query("SELECT to_regclass('t') IS NULL") == "t"


def test_each_provider_delivers_its_value(db_project: DbProject, tmp_path: Path) -> None:
    (db_project.root / "pw.txt").write_text("from-file\n", encoding="utf-8")
    script = tmp_path / "print-secret"
    script.write_text("#!/bin/sh\nprintf 'from-command'\n", encoding="utf-8")
    script.chmod(0o755)
    variables = tmp_path / "vars.yaml"
    variables.write_text("db:\n  password: from-variable\n", encoding="utf-8")
    declare(db_project, (
        '[secrets.a]\nfile = "pw.txt"\n'
        f'[secrets.b]\ncommand = ["{script}"]\n'
        '[secrets.c]\nvariable = "db.password"\n'))
    db_project.add_migration("three", (
        "CREATE TABLE got AS SELECT {{ secret('a') }} AS a, {{ secret('b') }} AS b, "
        "{{ secret('c') }} AS c;\n"))

    result = db_project.run("migration", "apply", "--yes", "--variables", str(variables))

    assert result.exit_code == 0, result.stderr
    assert db_project.database.query("SELECT a || ',' || b || ',' || c FROM got") == \
        "from-file,from-command,from-variable"


def test_a_secret_inside_a_dollar_quoted_body_is_a_render_error(db_project: DbProject) -> None:
    env = env_secret(db_project)
    db_project.add_migration("body", (
        "CREATE TABLE t (v text);\n"
        "DO $$ BEGIN\n"
        "  INSERT INTO t VALUES ({{ secret('pw') }});\n"
        "END $$;\n"))

    result = db_project.run("migration", "apply", "--yes", env=env)

    assert result.exit_code == 1
    assert "secret() is used inside a quoted or dollar-quoted body or a comment (rendered " \
        "line 3)" in result.stderr
    assert db_project.database.query("SELECT to_regclass('t') IS NULL") == "t"


def test_a_golden_test_can_use_a_secret(db_project: DbProject) -> None:
    env = env_secret(db_project)
    test = db_project.add_test("pw", "SELECT length({{ secret('pw') }}) AS n;\n")
    (test.parent / "expected").write_text(
        f" n  \n----\n {len(SECRET):>2}\n(1 row)\n\n", encoding="utf-8")

    built = db_project.run("test", "build", "pw", env=env)
    result = db_project.run("test", "compare", "pw", env=env)

    assert built.stdout == "SELECT length(:'spawn_secret_pw') AS n;\n"
    assert result.exit_code == 0, result.stdout + result.stderr


def test_bad_secret_declarations_are_configuration_errors(db_project: DbProject) -> None:
    db_project.add_migration("uses", "SELECT {{ secret('pw') }};\n")
    declare(db_project, '[secrets.pw]\nenv = "A"\nfile = "b"\n')

    result = db_project.run("migration", "build", "20240101000000-uses")

    assert result.exit_code == 2
    assert "[secrets.pw] names 2 providers; give exactly one of env, file, command, " \
        "variable" in result.stderr


def test_secrets_reach_a_sql_step_and_a_sql_hook(db_project: DbProject) -> None:
    env = env_secret(db_project)
    declare(db_project, '[[hooks.after_apply]]\nsql = "hooks/keep.sql"\n')
    hooks = db_project.spawn_dir / "hooks"
    hooks.mkdir()
    (hooks / "keep.sql").write_text(
        "CREATE TABLE from_hook AS SELECT {{ secret('pw') }} AS v;\n", encoding="utf-8")
    folder = db_project.spawn_dir / "migrations" / "20240101000000-stepped"
    (folder / "steps").mkdir(parents=True)
    (folder / "migration.toml").write_text('[[steps]]\nsql = "steps/01.sql"\n',
                                          encoding="utf-8")
    (folder / "steps" / "01.sql").write_text(
        "CREATE TABLE from_step AS SELECT {{ secret('pw') }} AS v;\n", encoding="utf-8")

    result = db_project.run("--debug", "migration", "apply", "--yes", "--no-pin", env=env)

    assert result.exit_code == 0, result.stderr
    assert db_project.database.query("SELECT v FROM from_step") == SECRET
    assert db_project.database.query("SELECT v FROM from_hook") == SECRET
    for output in (result.stdout, result.stderr, everything_spawn_wrote(db_project)):
        assert SECRET not in output


def test_a_background_session_of_a_golden_test_gets_the_secret(db_project: DbProject) -> None:
    env = env_secret(db_project)
    test = db_project.add_test(
        "bgpw", "{{ bg('s2', 'other.sql') }}\n{{ wait('s2') }}\nSELECT 'main' AS done;\n")
    (test.parent / "other.sql").write_text("SELECT length({{ secret('pw') }}) AS n;\n",
                                           encoding="utf-8")

    result = db_project.run("test", "run", "bgpw", env=env)

    assert result.exit_code == 0, result.stdout + result.stderr
    assert f" n  \n----\n {len(SECRET):>2}\n(1 row)\n" in result.stdout
    assert "spawn_secret_pw" not in result.stdout and SECRET not in result.stdout
