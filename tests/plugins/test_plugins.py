"""Plugins (issue 19): real packages built and installed with pip into a folder the
``spawn`` processes get on ``PYTHONPATH``, found through their entry points."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import DbProject
from tests.helpers import run_spawn

HERE = Path(__file__).resolve().parent


def pip_install(package: str, target: Path) -> None:
    """Build and install ``package`` from a private copy of its folder: a build writes
    ``build/`` and ``*.egg-info`` into the source tree, and two xdist workers building the
    same tree at once corrupted each other's metadata (CI failed on it)."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "package"
        shutil.copytree(HERE / package, copy,
                        ignore=shutil.ignore_patterns("build", "*.egg-info"))
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--disable-pip-version-check", "--target", str(target),
             str(copy)],
            capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("example-site")
    pip_install("example_plugin", site)
    return site


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory, example_site: Path) -> Path:
    site = tmp_path_factory.mktemp("broken-site")
    pip_install("broken_plugin", site)
    return site


def with_site(*sites: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": ":".join(str(s) for s in sites), **extra}


def write_migration(db_project: DbProject, sql: str, *, pin: bool) -> str:
    return db_project.add_migration("uses-plugin", sql, pin=pin)


def test_template_plugin_filters_functions_and_tests(db_project: DbProject,
                                                     example_site: Path) -> None:
    name = write_migration(db_project, (
        "SELECT {{ 'hi' | shout }}, {{ quarter_table(2026, 1) | escape_identifier }};\n"
        "{% if 4 is even %}SELECT 'even';{% endif %}\n"), pin=True)

    result = db_project.run("migration", "build", name, "--pinned", env=with_site(example_site))

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "SELECT 'HI!', \"sales_2026_q1\";\nSELECT 'even';\n"


def test_a_function_not_declared_deterministic_is_refused_in_a_pinned_render(
    db_project: DbProject, example_site: Path,
) -> None:
    name = write_migration(db_project, "SELECT {{ lucky_number() }};\n", pin=True)
    env = with_site(example_site)

    unpinned = db_project.run("migration", "build", name, env=env)
    pinned = db_project.run("migration", "build", name, "--pinned", env=env)

    assert unpinned.exit_code == 0, unpinned.stderr
    assert unpinned.stdout.startswith("SELECT ")
    assert pinned.exit_code == 1
    assert "lucky_number (from plugin example) is not declared deterministic, so a pinned " \
        "migration cannot use it" in pinned.stderr
    assert "Traceback" not in pinned.stderr


def test_plugin_command_runs_and_is_listed_and_no_plugins_turns_it_off(
    tmp_path: Path, example_site: Path,
) -> None:
    env = with_site(example_site)

    hello = run_spawn("hello", "bob", cwd=tmp_path, env=env)
    listed = run_spawn("--help", cwd=tmp_path, env=env)
    off = run_spawn("--no-plugins", "hello", cwd=tmp_path, env=env)
    off_env = run_spawn("hello", cwd=tmp_path, env={**env, "SPAWN_NO_PLUGINS": "1"})

    assert (hello.exit_code, hello.stdout) == (0, "hello, bob\n"), hello.stderr
    assert "  hello       Say hello (a command from the example plugin).\n" in listed.stdout
    for result in (off, off_env):
        assert result.exit_code == 2
        assert "No such command 'hello'" in result.stderr


def test_spawn_plugins_lists_what_is_installed_and_what_fails(
    tmp_path: Path, example_site: Path, broken_site: Path,
) -> None:
    result = run_spawn("plugins", cwd=tmp_path, env=with_site(example_site, broken_site))

    assert result.exit_code == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert lines == [
        "spawn.commands  hello  spawn_example_plugin:hello  (spawn-example-plugin 0.1.0, "
        f"{example_site})  ok",
        "spawn.hooks  boom  spawn_example_plugin:boom  (spawn-example-plugin 0.1.0, "
        f"{example_site})  ok",
        "spawn.hooks  record  spawn_example_plugin:record_event  (spawn-example-plugin "
        f"0.1.0, {example_site})  ok",
        "spawn.secrets  reversed  spawn_example_plugin:reversed_secret  "
        f"(spawn-example-plugin 0.1.0, {example_site})  ok",
        "spawn.template  broken  spawn_broken_plugin:template  (spawn-broken-plugin 0.0.1, "
        f"{broken_site})  fails to load: ImportError: No module named "
        "'a_dependency_nobody_installed'",
        "spawn.template  example  spawn_example_plugin:template  (spawn-example-plugin 0.1.0, "
        f"{example_site})  ok",
    ]


def test_a_plugin_that_fails_to_load_is_one_warning_and_the_rest_works(
    db_project: DbProject, example_site: Path, broken_site: Path,
) -> None:
    name = write_migration(db_project, "SELECT {{ 'x' | shout }};\n", pin=False)

    result = db_project.run("migration", "build", name,
                            env=with_site(example_site, broken_site))

    assert (result.exit_code, result.stdout) == (0, "SELECT 'X!';\n"), result.stderr
    assert result.stderr == (
        "warning: plugin broken (spawn.template = spawn_broken_plugin:template) failed to "
        "load: ImportError: No module named 'a_dependency_nobody_installed'; spawn goes on "
        "without it (--no-plugins or SPAWN_NO_PLUGINS=1 turns plugins off)\n")


def test_templates_without_unknown_names_never_look_for_plugins(
    db_project: DbProject, broken_site: Path,
) -> None:
    name = write_migration(db_project, (
        "{% set n = 3 %}{% for i in range(n) %}SELECT {{ i }};{% endfor %}\n"
        "{{ variables.get('x', 1) }} {{ env }} {{ gen_uuid_v5('a') | length }}\n"), pin=False)

    result = db_project.run("migration", "build", name, env=with_site(broken_site))

    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_a_secret_provider_plugin(db_project: DbProject, example_site: Path) -> None:
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write('\n[secrets.pw]\nreversed = "terces-ym"\n')
    db_project.add_migration("kept", "CREATE TABLE kept AS SELECT {{ secret('pw') }} AS v;\n")

    result = db_project.run("migration", "apply", "--yes", env=with_site(example_site))

    assert result.exit_code == 0, result.stderr
    assert db_project.database.query("SELECT v FROM kept") == "my-secret"


def test_hook_plugins_hear_the_events_they_are_configured_for(
    db_project: DbProject, example_site: Path, tmp_path: Path,
) -> None:
    import json

    log = tmp_path / "events.jsonl"
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write('\n[[hooks.after_each_migration]]\nplugin = "record"\n'
                     '[[hooks.after_apply]]\nplugin = "record"\n')
    name = db_project.add_migration("t", "CREATE TABLE t (id int);\n")

    result = db_project.run("migration", "apply", "--yes",
                            env=with_site(example_site, SPAWN_EXAMPLE_HOOK_LOG=str(log)))

    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["event"], e.get("migration")) for e in events] == [
        ("after_each_migration", name), ("after_apply", None)]
    assert events[0]["target"] == "local" and events[0]["environment"] == "dev"
    assert "password" not in events[0]["psql"].lower()


def test_a_failing_hook_plugin_fails_the_apply_naming_it(db_project: DbProject,
                                                          example_site: Path) -> None:
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write('\n[[hooks.after_apply]]\nplugin = "boom"\n')
    db_project.add_migration("t", "CREATE TABLE t (id int);\n")

    result = db_project.run("migration", "apply", "--yes", env=with_site(example_site))
    db_project.add_migration("u", "CREATE TABLE u (id int);\n")
    off = db_project.run("--no-plugins", "migration", "apply", "--yes",
                         env=with_site(example_site))

    assert result.exit_code == 1
    assert ('error: hook [[hooks.after_apply]] #1 (plugin = "boom") failed: RuntimeError: '
            "refusing after_apply") in result.stderr
    assert db_project.database.query("SELECT to_regclass('t') IS NOT NULL") == "t"
    assert off.exit_code == 1
    assert "no spawn.hooks plugin named 'boom' is installed (or plugins are turned off" \
        in off.stderr
