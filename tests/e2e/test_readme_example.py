"""`spawn init --example`, and the README's quickstart run verbatim on the embedded database."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_spawn

README = Path(__file__).parents[2] / "README.md"
FIRST, SEED, TITLES = (
    "20260101090000-create-customers",
    "20260102090000-seed-customers",
    "20260103090000-customer-titles",
)
OLD_FULL_NAME = "AS $$ SELECT c.first_name || ' ' || coalesce(c.last_name, '') $$;"
NEW_FULL_NAME = "AS $$ SELECT concat_ws(' ', c.title, c.first_name, c.last_name) $$;"


@pytest.fixture()
def workdir() -> Iterator[Path]:
    """A folder the unprivileged server user can enter, for the embedded database."""
    base = Path(tempfile.mkdtemp(prefix="spawn-example-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        for config in base.rglob("spawn.toml"):
            run_spawn("db", "stop", cwd=config.parent)
        shutil.rmtree(base, ignore_errors=True)


def test_example_is_pinned_with_history(tmp_path: Path) -> None:
    result = run_spawn("init", "--example", "demo", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    demo = tmp_path / "demo"
    assert run_spawn("check", cwd=demo).exit_code == 0
    first = run_spawn("migration", "build", FIRST, "--pinned", cwd=demo)
    assert OLD_FULL_NAME in first.stdout
    assert NEW_FULL_NAME not in first.stdout
    unpinned = run_spawn("migration", "build", FIRST, cwd=demo)
    assert NEW_FULL_NAME in unpinned.stdout
    assert "is pinned" in unpinned.stderr
    titles = run_spawn("migration", "build", TITLES, "--pinned", cwd=demo)
    assert NEW_FULL_NAME in titles.stdout
    for test in ("full_name", "customer_list_copy"):
        assert (demo / "spawn" / "tests" / test / "expected").is_file()


def test_example_uses_env_and_variables(tmp_path: Path) -> None:
    assert run_spawn("init", "--example", "demo", cwd=tmp_path).exit_code == 0
    demo = tmp_path / "demo"
    dev = run_spawn("migration", "build", SEED, "--pinned", "--variables", "variables.yaml",
                    cwd=demo)
    assert "INSERT INTO settings VALUES ('company', 'O''Reilly & Sons');" in dev.stdout
    assert dev.stdout.count("INSERT INTO customers") == 3
    prod = run_spawn("-e", "prod", "migration", "build", SEED, "--pinned", cwd=demo)
    assert "'Example Ltd'" in prod.stdout
    assert "INSERT INTO customers" not in prod.stdout


def test_example_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep.txt").write_text("mine")
    result = run_spawn("init", "--example", "demo", cwd=tmp_path)
    assert result.exit_code == 2
    assert "is not empty" in result.stderr
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["keep.txt"]


def readme_blocks() -> list[tuple[str, str]]:
    """Each ```sh block of the README paired with the ```text block that follows it."""
    text = README.read_text()
    blocks = re.findall(r"```(sh|text)\n(.*?)```", text, flags=re.S)
    pairs = []
    for (kind, body), (next_kind, output) in itertools.pairwise(blocks):
        if kind == "sh" and next_kind == "text":
            pairs.append((body, output))
    return pairs


def normalise(output: str) -> str:
    output = re.sub(r"\d+(\.\d+)? ?(ms|s)\b", "<time>", output)
    return "\n".join(line.rstrip() for line in output.strip().splitlines())


def test_readme_starts_with_the_quickstart() -> None:
    first_block = re.search(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)
    assert first_block is not None
    assert first_block.group(1) == "sh"
    lines = first_block.group(2).strip().splitlines()
    assert lines[0].startswith("pip install")
    assert "spawn init --example demo" in lines[1]


def test_readme_quickstart_runs_verbatim(workdir: Path) -> None:
    """Every shown command runs as written (the pip line aside: spawn is installed)."""
    pairs = readme_blocks()
    assert len(pairs) >= 2
    script = []
    for body, _ in pairs:
        commands = [line for line in body.splitlines() if not line.startswith("pip install")]
        script.extend(commands)
        script.append("echo @@END-OF-BLOCK@@")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPAWN_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["bash", "-ec", "exec 2>&1\n" + "\n".join(script)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = done.stdout.split("@@END-OF-BLOCK@@\n")
    for (body, expected), actual in zip(pairs, outputs, strict=False):
        assert normalise(actual) == normalise(expected), f"README block:\n{body}"
