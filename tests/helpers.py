"""Running the real ``spawn`` entry point in a project folder, for CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SPAWN = [sys.executable, "-m", "spawn_db"]


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_spawn(
    *args: str,
    cwd: Path,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Result:
    """Run ``python -m spawn_db ARGS`` in ``cwd`` with no terminal on stdin."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPAWN_")}
    full_env.update(env or {})
    done = subprocess.run(
        [*SPAWN, *args],
        cwd=cwd,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def snapshot_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes, to prove a command changed nothing."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".spawn" not in p.parts
    }
