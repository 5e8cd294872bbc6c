"""Running the real ``spawn`` entry point in a project folder, for CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPAWN = [sys.executable, "-m", "spawn_db"]


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str


def spawn_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without SPAWN_* variables, so tests see only their own;
    except ``SPAWN_POSTGRES_BIN``, the PostgreSQL the whole run is on (``.ci/pg-versions``)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SPAWN_") or k == "SPAWN_POSTGRES_BIN"}
    env.update(extra or {})
    return env


def start_spawn(
    *args: str,
    cwd: Path,
    stdin: Any = subprocess.DEVNULL,
    stderr: Any = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start ``python -m spawn_db ARGS`` in the background (stdout piped, text mode)."""
    return subprocess.Popen([*SPAWN, *args], cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=spawn_env(env))


def run_spawn(
    *args: str,
    cwd: Path,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Result:
    """Run ``python -m spawn_db ARGS`` in ``cwd`` with no terminal on stdin."""
    done = subprocess.run(
        [*SPAWN, *args],
        cwd=cwd,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=spawn_env(env),
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


def run_on_terminal(cwd: Path, args: list[str], *, answer: str = "",
                    env: dict[str, str] | None = None) -> str:
    """Run spawn with a pseudo-terminal as stdin, stdout and stderr; return what it printed.

    ``answer`` is typed at the terminal. ``NO_COLOR`` is removed and ``TERM`` set to
    ``xterm`` unless ``env`` says otherwise, so the test does not depend on the
    terminal pytest itself runs in.
    """
    import pty

    main, secondary = pty.openpty()
    full_env = {k: v for k, v in spawn_env().items() if k != "NO_COLOR"}
    full_env["TERM"] = "xterm"
    full_env.update(env or {})
    proc = subprocess.Popen([*SPAWN, *args], cwd=cwd, stdin=secondary, stdout=secondary,
                            stderr=secondary, env=full_env, close_fds=True)
    os.close(secondary)
    if answer:
        os.write(main, answer.encode())
    text = read_terminal(main)
    proc.wait(timeout=60)
    os.close(main)
    return text


def read_terminal(main: int) -> str:
    """Everything written to a pseudo-terminal until its last writer closes it (Linux
    reports that as EIO), with the terminal's CRLF line ends made plain."""
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode().replace("\r\n", "\n")
