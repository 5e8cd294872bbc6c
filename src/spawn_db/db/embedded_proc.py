"""Processes, users, pid files and sockets, for the embedded server (SPEC §8).

``embedded`` decides when to create, start, wait for, retire or stop a
server; this module answers the questions those decisions rest on: whether a
pid is alive, a zombie, a server of a given data directory or another
program; what ``postmaster.pid`` says; whether a socket answers; which
unprivileged user a root-run server runs as and whether it may enter a
folder. It also holds the private directories, the file lock and the
environment free of libpq variables that the lifecycle uses. None of it
knows a cluster's layout, so it sits below the lifecycle and never imports it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spawn_db.errors import EmbeddedServerError
from spawn_db.fsutil import in_process_table

PORT = 5432
UNPRIVILEGED_USERS = ("postgres", "nobody")
LOCK_TIMEOUT = 120.0
_HAS_PROC = Path("/proc/self/stat").exists()


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account a root-run spawn starts PostgreSQL as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


@dataclass(frozen=True)
class PidFile:
    """The lines of ``postmaster.pid`` spawn relies on."""

    pid: int
    socket_dir: str
    port: int
    status: str


# -- users and directories -----------------------------------------------------------------


def default_server_user() -> RunAs:
    for name in UNPRIVILEGED_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _run_as(entry)
    raise EmbeddedServerError(
        "spawn runs as root, and PostgreSQL refuses to; neither a `postgres` nor a `nobody` "
        "user exists to run it as: create one (`useradd --system postgres`) or run spawn as "
        "a normal user"
    )


def server_user(data_dir: Path) -> RunAs | None:
    """Who runs the server: the caller, or when root, the data directory's owner."""
    if os.geteuid() != 0:
        return None
    try:
        owner = data_dir.stat().st_uid
    except FileNotFoundError:
        return default_server_user()
    if owner == 0:
        raise EmbeddedServerError(
            f"{data_dir} belongs to root, and PostgreSQL refuses to run as root; give it to "
            f"an unprivileged user, e.g. `chown -R postgres {data_dir}`"
        )
    try:
        return _run_as(pwd.getpwuid(owner))
    except KeyError:
        raise EmbeddedServerError(
            f"{data_dir} belongs to uid {owner}, which has no account; "
            f"`chown -R postgres {data_dir}`"
        ) from None


def _run_as(entry: pwd.struct_passwd) -> RunAs:
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def reachable(path: Path, user: RunAs) -> bool:
    """Whether ``user`` may enter every existing directory on the way to ``path``."""
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            break
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in user.groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def make_dir(path: Path, run_as: RunAs | None, *, mode: int) -> None:
    """Create ``path`` (and its parents) usable by the server user."""
    if path.is_dir():
        return
    make_dir(path.parent, None, mode=0o755)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        os.chmod(path, mode)
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid)


def prepare_socket_dir(path: Path, run_as: RunAs | None) -> None:
    """A private directory for the socket; a foreign one in /tmp is refused, not used."""
    make_dir(path, run_as, mode=0o700)
    check_private(path, run_as)


def check_private(path: Path, run_as: RunAs | None) -> None:
    """A folder in /tmp or /var/tmp must be the server user's alone, not planted by others."""
    st = path.stat()
    owner = run_as.uid if run_as else os.geteuid()
    if st.st_uid != owner or st.st_mode & 0o022:
        raise EmbeddedServerError(
            f"{path} belongs to {user_name(st.st_uid)} or is writable by others, so spawn "
            f"will not put its server's files there; remove it and retry"
        )


# -- looking at a server -------------------------------------------------------------------


def read_pidfile(data_dir: Path) -> PidFile | None:
    try:
        text = (data_dir / "postmaster.pid").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise EmbeddedServerError(
            f"cannot read {data_dir / 'postmaster.pid'}: it belongs to another user; run spawn "
            "as the user that owns the data directory (or as root)"
        ) from None
    lines = text.split("\n")
    try:
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3] else PORT
    except ValueError:
        return None
    socket_dir = lines[4] if len(lines) > 4 else ""
    status = lines[7].strip() if len(lines) > 7 else ""
    return PidFile(pid=pid, socket_dir=socket_dir, port=port, status=status)


def retire_pid(data_dir: Path) -> None:
    """Replace the pid in ``postmaster.pid`` by one that cannot exist.

    Deleting the file would also drop the shared-memory key PostgreSQL uses
    to refuse starting while orphaned backends of the old server still run;
    rewriting only the pid keeps that check. The file is rewritten in place
    so it keeps its owner.
    """
    path = data_dir / "postmaster.pid"
    try:
        limit = int(Path("/proc/sys/kernel/pid_max").read_text(encoding="ascii"))
    except (OSError, ValueError):
        limit = 4194304
    if in_process_table(limit):
        return
    with path.open("r+", encoding="utf-8") as pidfile:
        lines = pidfile.read().split("\n")
        lines[0] = str(limit)
        pidfile.seek(0)
        pidfile.write("\n".join(lines))
        pidfile.truncate()


def pid_exists(pid: int) -> bool:
    """A running process; a zombie (a killed server nobody reaped yet) counts as gone."""
    if not in_process_table(pid):
        return False
    if _HAS_PROC:
        try:
            text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        return text[text.rfind(")") + 2:][:1] not in ("Z", "X")
    return True


def is_ours(pid: int, data_dir: Path) -> bool | None:
    """Whether live ``pid`` is a server of ``data_dir`` (it chdirs there); None if unknowable."""
    if not _HAS_PROC:
        return is_postgres(pid)
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError as exc:
        return False if exc.errno in (errno.EACCES, errno.EPERM) else None
    return Path(cwd) == data_dir.resolve()


def is_postgres(pid: int) -> bool | None:
    """Whether live ``pid`` runs a PostgreSQL server program; None if unknowable."""
    if _HAS_PROC:
        try:
            text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        name = text[text.find("(") + 1:text.rfind(")")]
    else:
        try:
            done = subprocess.run(["ps", "-o", "comm=", "-p", str(pid)], capture_output=True,
                                  text=True, check=False, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
        name = Path(done.stdout.strip()).name
    return name in ("postgres", "postmaster")


def socket_accepts(path: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def log_problem(log_path: Path, offset: int) -> str:
    """The most telling line PostgreSQL logged since ``offset``."""
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for marker in ("FATAL:", "PANIC:", "ERROR:"):
        hits = [line for line in lines if marker in line]
        if hits:
            text = hits[-1].split(marker, 1)[1].strip()
            hint = [line.split("HINT:", 1)[1].strip() for line in lines if "HINT:" in line]
            return text + (f" ({hint[-1]})" if hint else "")
    return lines[-1].strip() if lines else ""


@contextlib.contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, so concurrent spawns start one server."""
    make_dir(path.parent, None, mode=0o755)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"another spawn process has held {path} for {timeout:.0f} s while "
                        "starting or stopping the embedded server; wait for it or stop it"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


# -- environment ---------------------------------------------------------------------------


def server_env() -> dict[str, str]:
    """The caller's environment without libpq/server variables that would redirect it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def client_env() -> Mapping[str, str]:
    env = server_env()
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env
