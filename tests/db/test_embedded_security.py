"""The embedded server against other local users: its socket folder and its private files.

A long project path puts the socket in ``/tmp/spawn-<hash>``, a name any
local user can create first. The attacks here are made by a real second OS
user (``nobody``, run with ``subprocess``'s ``user=``), so they need root,
which the suite runs as in CI (the server then runs as ``postgres``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import EmbeddedProject
from tests.db.conftest import project_cluster, remove
from tests.helpers import SPAWN, Result, spawn_env

ROOT = os.geteuid() == 0
OTHER = "nobody"
needs_root = pytest.mark.skipif(not ROOT, reason="acting as a second OS user needs root")


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


def _spawn(project: EmbeddedProject, *args: str, umask: int = 0o022) -> Result:
    done = subprocess.run([*SPAWN, *args], cwd=project.root, input="", capture_output=True,
                          text=True, env=spawn_env(), timeout=120, check=False, umask=umask)
    return Result(done.returncode, done.stdout, done.stderr)


def _as_other(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the second OS user (its own group, no other), as from its shell."""
    entry = pwd.getpwnam(OTHER)
    return subprocess.run(list(argv), cwd="/", capture_output=True, text=True, check=False,
                          timeout=60, umask=0o022, user=entry.pw_uid, group=entry.pw_gid,
                          extra_groups=[])


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _refusal(path: Path, problem: str) -> str:
    return (
        f"error: {path} {problem}, so spawn will not put its server's socket or files there "
        "(whoever controls that folder could reach the server as superuser); remove it "
        f"(`rm -r {path}`, as root if another user owns it) and retry\n"
    )


# -- item 4: the log and .spawn/ ----------------------------------------------------------


def test_server_log_and_state_are_private_under_umask_000(
        embedded_project: EmbeddedProject) -> None:
    """A failed ``ALTER ROLE ... PASSWORD`` lands in the log; nobody else may read it."""
    root = embedded_project.root
    failed = _spawn(embedded_project, "db", "shell", "-c",
                    "ALTER ROLE no_such_role PASSWORD 'hunter2'", umask=0)
    assert failed.stderr == 'ERROR:  role "no_such_role" does not exist\n'
    log = root / ".spawn/postgres.log"
    assert "STATEMENT:  ALTER ROLE no_such_role PASSWORD 'hunter2'" in log.read_text()
    assert (_mode(log), _mode(root / ".spawn/lock")) == (0o600, 0o600)
    assert _mode(root / ".spawn/run") == 0o700
    state = (root / ".spawn").stat()
    if ROOT:  # the server user's group may pass through to postgres/ and run/, not list
        assert (stat.S_IMODE(state.st_mode), state.st_gid) == \
            (0o710, pwd.getpwnam("postgres").pw_gid)
        denied = _as_other("cat", str(log))
        assert (denied.returncode, denied.stdout) == (1, "")
        assert denied.stderr == f"cat: {log}: Permission denied\n"
        listing = _as_other("ls", str(root / ".spawn"))
        assert listing.returncode == 2 and "Permission denied" in listing.stderr
    else:
        assert stat.S_IMODE(state.st_mode) == 0o700


def test_a_log_an_older_spawn_left_readable_is_made_private(
        embedded_project: EmbeddedProject) -> None:
    root = embedded_project.root
    _ok(_spawn(embedded_project, "db", "start"))
    _ok(_spawn(embedded_project, "db", "stop"))
    os.chmod(root / ".spawn", 0o755)
    os.chmod(root / ".spawn/postgres.log", 0o644)
    _ok(_spawn(embedded_project, "db", "start", umask=0))
    assert _mode(root / ".spawn/postgres.log") == 0o600
    assert _mode(root / ".spawn") == (0o710 if ROOT else 0o700)


# -- item 3: the socket folder in /tmp ---------------------------------------------------


@needs_root
def test_socket_folder_is_created_private_for_the_server_user(
        long_project: EmbeddedProject) -> None:
    socket_dir = project_cluster(long_project.root).socket_dir
    assert not os.path.lexists(socket_dir)
    _ok(_spawn(long_project, "db", "start", umask=0))
    info = os.lstat(socket_dir)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert pwd.getpwuid(info.st_uid).pw_name == "postgres"
    assert (socket_dir / ".s.PGSQL.5432").is_socket()
    assert _ok(long_project.run("db", "shell", "-Atc", "select 1")).stdout == "1\n"
    other = _as_other("ls", str(socket_dir))
    assert other.returncode == 2 and "Permission denied" in other.stderr


@needs_root
@pytest.mark.parametrize("plant", ["folder", "link-to-their-folder", "link-to-server-users"])
def test_socket_folder_planted_by_another_user_is_refused(
        long_project: EmbeddedProject, plant: str) -> None:
    """What another user left at /tmp/spawn-<hash> is refused; no socket appears there,
    nothing is created, and after it is removed spawn works."""
    root = long_project.root
    socket_dir = project_cluster(root).socket_dir
    bait = Path(tempfile.mkdtemp(prefix="spawn-bait-", dir="/tmp"))
    try:
        if plant == "folder":
            made = _as_other("mkdir", "-m", "0777", str(socket_dir))
            looked_at = socket_dir
            problem = "belongs to nobody, not postgres"
        else:
            # A folder the link points to: the other user's own, or (what a `stat`
            # that follows links would accept) one of the server user's.
            owner = OTHER if plant == "link-to-their-folder" else "postgres"
            os.chown(bait, pwd.getpwnam(owner).pw_uid, -1)
            os.chmod(bait, 0o755)
            made = _as_other("ln", "-s", str(bait), str(socket_dir))
            looked_at = bait
            problem = "is a symbolic link"
        assert made.returncode == 0, made.stderr
        for command in (["db", "start"], ["db", "shell", "-c", "select 1"]):
            result = _spawn(long_project, *command)
            assert (result.exit_code, result.stdout) == (1, "")
            assert result.stderr == _refusal(socket_dir, problem)
        assert list(looked_at.iterdir()) == []
        assert not (root / ".spawn/postgres").exists()
        assert pwd.getpwuid(os.lstat(socket_dir).st_uid).pw_name == OTHER
    finally:
        remove(socket_dir)
        shutil.rmtree(bait, ignore_errors=True)
    assert _ok(long_project.run("db", "shell", "-Atc", "select 1")).stdout == "1\n"


@needs_root
def test_socket_folder_of_the_server_user_is_tightened_or_refused(
        long_project: EmbeddedProject) -> None:
    """Only the server user (or root) can have made a folder it owns: one others may
    only read is made 0700 and used; one others may write into is refused."""
    socket_dir = project_cluster(long_project.root).socket_dir
    postgres = pwd.getpwnam("postgres")
    socket_dir.mkdir()
    os.chown(socket_dir, postgres.pw_uid, postgres.pw_gid)
    os.chmod(socket_dir, 0o777)
    refused = _spawn(long_project, "db", "start")
    assert (refused.exit_code, refused.stderr) == (
        1, _refusal(socket_dir, "may be written by other users (mode 0777)"))
    assert list(socket_dir.iterdir()) == []
    os.chmod(socket_dir, 0o755)
    _ok(_spawn(long_project, "db", "start"))
    assert _mode(socket_dir) == 0o700
    assert (socket_dir / ".s.PGSQL.5432").is_socket()


FAKE_SERVER = """
import socket, sys, time
path, log = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(8)
server.settimeout(0.1)
deadline = time.time() + 60
while time.time() < deadline:
    try:
        conn, _ = server.accept()
    except socket.timeout:
        continue
    with open(log, "a") as out:
        out.write("connected\\n")
    conn.close()
"""


@needs_root
def test_no_connection_to_a_socket_another_user_put_in_the_servers_place(
        long_project: EmbeddedProject) -> None:
    """A temp cleaner removed the running server's socket folder and another user made
    one with a listening socket of their own: spawn must not send SQL through it."""
    socket_dir = project_cluster(long_project.root).socket_dir
    _ok(long_project.run("db", "start"))
    shutil.rmtree(socket_dir)
    assert _as_other("mkdir", "-m", "0777", str(socket_dir)).returncode == 0
    caught = socket_dir / "caught.log"
    other = pwd.getpwnam(OTHER)
    fake = subprocess.Popen(["/usr/bin/python3", "-c", FAKE_SERVER,
                             str(socket_dir / ".s.PGSQL.5432"), str(caught)],
                            cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            user=other.pw_uid, group=other.pw_gid, extra_groups=[])
    try:
        deadline = time.monotonic() + 10
        while not (socket_dir / ".s.PGSQL.5432").is_socket():
            assert time.monotonic() < deadline, "the fake server did not start"
            time.sleep(0.01)
        result = _spawn(long_project, "db", "shell", "-c", "ALTER ROLE x PASSWORD 'hunter2'")
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr == _refusal(socket_dir, "belongs to nobody, not postgres")
        status = _ok(long_project.run("db", "status", "--format", "json"))
        assert '"running": false' in status.stdout
        assert not caught.exists()
    finally:
        fake.kill()
        fake.wait()
        remove(socket_dir)
