"""The GitHub Action (action.yml): its metadata against GitHub's schema, the docs workflow
that uses it, and the install script it runs, run here in a fresh virtualenv (no GitHub)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
SCRIPT = ROOT / "action" / "install.sh"
WORKFLOW = ROOT / "docs" / "github-actions.yml"
INIT = ROOT / "src" / "spawn_db" / "__init__.py"
VERSION_LINE = re.compile(r'(?m)^__version__ = "(.*)"$')
VERSION = VERSION_LINE.findall(INIT.read_text())[0]
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
INPUT = re.compile(r"\binputs\.([A-Za-z_][A-Za-z0-9_-]*)")
ERROR = "::error title=spawn action::"
NOT_A_REF = ("version '{}' is not a git ref: use a release tag (v0.2.0 or 0.2.0), a branch or a "
             "commit, or leave it empty for the action's own ref")
NO_REPOSITORY = ("version '{}' was given but the repository to install it from is unknown: set "
                 "SPAWN_REPOSITORY=owner/name, or leave version empty to install the action's "
                 "own checkout ({})")


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def strings(node: object) -> Iterator[str]:
    """Every string in a parsed YAML document, keys excluded."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


# -- the metadata ------------------------------------------------------------------------------

def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    """SchemaStore's schema as vendored by check-jsonschema: offline, no download."""
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema,
                           str(path)], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("path", "schema"), [(ACTION, "vendor.github-actions"),
                                              (WORKFLOW, "vendor.github-workflows")],
                         ids=["action.yml", "github-actions.yml"])
def test_file_matches_githubs_schema(path: Path, schema: str) -> None:
    done = check_jsonschema(schema, path)
    assert (done.returncode, done.stdout) == (0, "ok -- validation done\n"), done.stderr


def test_the_schema_check_catches_a_broken_action(tmp_path: Path) -> None:
    action = load(ACTION)
    del action["description"]
    action["runs"]["using"] = "composite-ish"
    broken = tmp_path / "action.yml"
    broken.write_text(yaml.safe_dump(action))
    done = check_jsonschema("vendor.github-actions", broken)
    assert done.returncode == 1
    assert "'description' is a required property" in done.stdout


def test_action_declares_exactly_the_inputs_its_steps_use() -> None:
    action = load(ACTION)
    assert {"name", "description", "runs"} <= action.keys()
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    used = {name for text in strings(steps) for expression in EXPRESSION.findall(text)
            for name in INPUT.findall(expression)}
    assert used == set(action["inputs"]) == {"version", "python-version"}
    for name, spec in action["inputs"].items():
        assert spec["description"], name
        assert spec["required"] is False, name
        assert isinstance(spec["default"], str), f"input {name} has no default"
    assert action["inputs"]["version"]["default"] == ""  # the action's own checkout


def test_action_steps_set_up_python_then_run_the_script_with_inputs_in_env() -> None:
    setup, install = load(ACTION)["runs"]["steps"]
    assert setup["uses"] == "actions/setup-python@v5"
    assert setup["with"] == {"python-version": "${{ inputs.python-version }}"}
    assert install["shell"] == "bash"
    assert install["run"] == 'bash "$GITHUB_ACTION_PATH/action/install.sh"'
    # No expression in the shell text (a ref is user input: script injection); the
    # values go through env, and the script reads exactly those variables.
    assert "${{" not in install["run"]
    script_reads = set(re.findall(r"\$\{(SPAWN_[A-Z_]+)", SCRIPT.read_text()))
    assert set(install["env"]) == script_reads == {"SPAWN_VERSION", "SPAWN_REPOSITORY"}
    assert install["env"]["SPAWN_VERSION"] == "${{ inputs.version }}"
    assert os.access(SCRIPT, os.X_OK)


def test_docs_workflow_uses_the_action_then_checks_and_compares() -> None:
    job = load(WORKFLOW)["jobs"]["spawn"]
    assert job["services"]["postgres"]["image"].startswith("postgres:")
    steps = job["steps"]
    uses = [step.get("uses", "") for step in steps]
    assert "OWNER/spawn@v1" in uses, f"the workflow does not use the Spawn action: {uses}"
    at = uses.index("OWNER/spawn@v1")
    assert set(steps[at].get("with", {})) <= set(load(ACTION)["inputs"])
    before = "\n".join(step.get("run", "") for step in steps[:at])
    after = "\n".join(step.get("run", "") for step in steps[at + 1:])
    assert "spawn" not in before
    assert "pip install" not in before + after  # the action installs spawn
    assert "spawn check" in after
    assert "spawn test compare --junit spawn-tests.xml" in after
    report = next(step for step in steps if "report_paths" in step.get("with", {}))
    assert report["with"]["report_paths"] == "spawn-tests.xml"


def test_the_version_is_written_once() -> None:
    """pyproject.toml takes the version from ``spawn_db.__version__``; nothing else holds
    one, so a release cannot leave the two disagreeing."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "spawn_db.__version__"}
    assert len(VERSION_LINE.findall(INIT.read_text())) == 1


# -- the install script, run as the action runs it ---------------------------------------------

def checkout_copy(destination: Path) -> Path:
    """The repository's files (tracked and new, not ignored) as the runner checks them out;
    pip builds inside the folder it installs, so it gets a copy, not the working tree."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv that sees this environment's packages after its own, so the spawn
    installed into it finds its dependencies without downloading them (pip runs --no-deps).
    One for the module (creating it is the slow part); each test's install replaces spawn."""
    path = tmp_path_factory.mktemp("action") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", PURELIB], capture_output=True, text=True,
                             check=True).stdout.strip()
    (Path(purelib) / "dev-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return path


def script_env(venv: Path | None, **extra: str) -> dict[str, str]:
    """A runner's environment after actions/setup-python: its python first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPAWN_", "GITHUB_", "PIP_", "VIRTUAL_ENV"))}
    path = env.get("PATH", "/usr/bin:/bin")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{path}" if venv else path
    env.update(PIP_NO_DEPS="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def run_script(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the script with bash; output decoded as is (no newline translation)."""
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=300,
                          check=False, cwd=script.parent)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def installed_from(venv: Path) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import importlib.metadata as m, spawn_db; "
                           "print(m.version('spawn-db'), spawn_db.__file__)"],
                          capture_output=True, text=True, check=True).stdout


def test_default_installs_the_actions_own_checkout_and_spawn_works(tmp_path: Path,
                                                                   venv: Path) -> None:
    checkout = checkout_copy(tmp_path / "checkout")
    done = run_script(checkout / "action" / "install.sh", script_env(venv))
    assert done.returncode == 0, done.stdout + done.stderr
    version = subprocess.run([str(venv / "bin" / "spawn"), "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert version.startswith(f"spawn {VERSION}\n")
    lines = done.stdout.splitlines(keepends=True)
    assert lines[0] == f"Installing spawn from the action's own checkout: {checkout}\n"
    assert done.stdout.endswith(version)
    number, module = installed_from(venv).split()
    assert number == VERSION
    assert Path(module).is_relative_to(venv)
    # What the workflow's next step needs: the package with its data, on PATH.
    spawn = str(venv / "bin" / "spawn")
    example = subprocess.run([spawn, "init", "--example", "demo"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, check=False)
    assert example.returncode == 0, example.stderr
    check = subprocess.run([spawn, "check"], cwd=tmp_path / "demo", capture_output=True,
                           text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=spawn", "-c", "user.email=spawn@example.invalid",
                    "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def release(repository: Path, version: str) -> None:
    """Commit the checkout as ``version``: ``__version__`` is its one copy (pyproject.toml
    reads it), so that is the one line a release changes."""
    path = repository / "src" / "spawn_db" / "__init__.py"
    text, count = VERSION_LINE.subn(f'__version__ = "{version}"', path.read_text())
    assert count == 1, path
    path.write_text(text)
    git("add", "-A", cwd=repository)
    git("commit", "-q", "-m", f"release {version}", cwd=repository)


@pytest.mark.parametrize(("ref", "installs"), [("9.9.9", "9.9.9"),
                                               ("main", "9.10.0")])
def test_a_version_installs_that_ref_of_the_actions_repository(tmp_path: Path, venv: Path,
                                                               ref: str, installs: str) -> None:
    # A server holding acme/spawn: tag v9.9.9, then main moved on to 9.10.0 (file://localhost:
    # pip refuses a URL with no host).
    server = tmp_path / "server"
    repository = checkout_copy(server / "acme" / "spawn")
    git("init", "-q", cwd=repository)
    release(repository, "9.9.9")
    git("tag", "v9.9.9", cwd=repository)
    release(repository, "9.10.0")
    # The action as the runner lays it out: .../_actions/OWNER/NAME/REF, with GitHub's
    # github.action_repository empty (as it is in composite actions): the path names it.
    action = checkout_copy(tmp_path / "work" / "_actions" / "acme" / "spawn" / "v1")
    done = run_script(action / "action" / "install.sh",
                      script_env(venv, SPAWN_VERSION=ref, SPAWN_REPOSITORY="",
                                 GITHUB_SERVER_URL=f"file://localhost{server}"))
    assert done.returncode == 0, done.stdout + done.stderr
    tag = f"v{ref}" if ref[0].isdigit() else ref
    assert done.stdout.splitlines()[0] == (
        f"Installing spawn-db @ git+file://localhost{server}/acme/spawn@{tag}")
    assert f"\nspawn {installs}\n" in done.stdout
    number, module = installed_from(venv).split()
    assert number == installs
    assert Path(module).is_relative_to(venv)


def test_own_checkout_without_pyproject_names_the_fix(tmp_path: Path) -> None:
    action = tmp_path / "action"
    action.mkdir()
    shutil.copy2(SCRIPT, action / "install.sh")
    done = run_script(action / "install.sh", script_env(None))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"{ERROR}the action's checkout {tmp_path} has no pyproject.toml: "
                           "set version to a git ref of spawn\n")


def test_a_spawn_earlier_on_path_than_the_installed_one_fails(tmp_path: Path,
                                                             venv: Path) -> None:
    checkout = checkout_copy(tmp_path / "checkout")
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "spawn").write_text("#!/bin/sh\necho old spawn\n")
    (shadow / "spawn").chmod(0o755)
    env = script_env(venv)
    env["PATH"] = f"{shadow}{os.pathsep}{env['PATH']}"
    done = run_script(checkout / "action" / "install.sh", env)
    assert done.returncode == 2
    assert "old spawn" not in done.stdout
    assert done.stderr.endswith(
        f"{ERROR}the spawn first on PATH is '{shadow}/spawn', not the one just installed in "
        f"{venv}/bin: put {venv}/bin first on PATH\n")


VALID_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(min_size=1), st.from_regex(VALID_REF, fullmatch=True),
                 st.sampled_from(["main", "v1.2.0", "0.2.0", "feature/x", "a..b", "main/",
                                  "-rf", ".hidden", "v1 ; rm -rf /", "v1#egg=x", "é",
                                  "v1\n::add-mask::x", "50%"])))
def test_only_a_git_ref_gets_past_validation(version: str) -> None:
    """A version that is not a plain git ref stops before pip with exit 2; a ref goes on
    (here to the next check, the unknown repository, so nothing is installed)."""
    if "\0" in version:
        return  # an environment variable cannot hold NUL
    env = script_env(None, SPAWN_VERSION=version, LC_ALL="C.UTF-8")
    done = run_script(SCRIPT, env)
    valid = (VALID_REF.fullmatch(version) is not None and ".." not in version
             and not version.endswith("/"))
    message = NO_REPOSITORY.format(version, ROOT) if valid else NOT_A_REF.format(version)
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"{ERROR}{escaped}\n")
