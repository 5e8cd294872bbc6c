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
from spawn_db.fsutil import PRIVATE_FILE_MODE, in_process_table, make_private_dir

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
    """Create ``path`` (and its parents) usable by the server user.

    Only for folders inside ones spawn already made private (the initdb
    scratch folder) or that the user made (the project's parents): it
    trusts what it finds. Folders in a shared place go through ``private_dir``.
    """
    if path.is_dir():
        return
    make_dir(path.parent, None, mode=0o755)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        os.chmod(path, mode)
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid)


def private_dir(path: Path, run_as: RunAs | None) -> None:
    """Make ``path`` a folder of the server user's alone (mode 0700), never trusting one found.

    The socket folder may live in /tmp (and a root-run cluster in /var/tmp),
    where any local user can create names first. Whoever controls the folder
    the socket is in can reach the server as superuser (it trusts local
    connections) or put a server of their own in its place. So the folder
    is created with ``os.mkdir`` (which fails rather than reuse a name) and
    given to the server user; a name that exists already is examined with
    ``lstat``, which never follows a link, and is used only if it is a real
    folder of the server user's that no one else may write into. Such a
    folder that others may read or enter (an older spawn made /var/tmp ones
    0755) is tightened to 0700: only that user or root can have made it.
    """
    owner = run_as.uid if run_as else os.geteuid()
    _check_parent(path)
    if not path.parent.is_dir():
        make_dir(path.parent, None, mode=0o755)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        fd = _open_dir(path, owner)
    else:  # ours, in a folder where no one else may rename it: the umask cut its mode
        os.chmod(path, 0o700)
        fd = _open_dir(path, os.geteuid())
    try:
        info = os.fstat(fd)
        if run_as is not None and (info.st_uid, info.st_gid) != (run_as.uid, run_as.gid):
            os.fchown(fd, run_as.uid, run_as.gid)
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def prepare_socket_dir(path: Path, run_as: RunAs | None) -> None:
    """The socket's folder: the server user's alone (see ``private_dir``)."""
    private_dir(path, run_as)


def trusted_socket_dir(path: Path, data_dir: Path) -> bool:
    """Whether a running server's socket folder is still a private folder of its user.

    Clients check this before connecting: if a temp cleaner removed the
    folder and another user made one in its place, the socket there is
    theirs, and the SQL spawn would send through it too.
    """
    try:
        info = os.lstat(path)
        server = os.stat(data_dir).st_uid
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == server and not info.st_mode & 0o077


def share_state_dir(path: Path, run_as: RunAs | None) -> None:
    """Keep spawn's state folder (``.spawn/``) private: mode 0700.

    It holds the server log, which has failed statements in it
    (``ALTER ROLE ... PASSWORD``). When root runs the server as ``run_as``
    inside it, that user's group may also enter it (0710, group ``run_as``'s)
    to reach the data and socket folders, but not list it; every file in it
    is 0600 anyway. A link, or a folder of another user's, is left alone.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return
    mode = 0o700
    if run_as is not None:
        mode = 0o710
        if info.st_gid != run_as.gid:
            os.chown(path, -1, run_as.gid)
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


def _open_dir(path: Path, owner: int) -> int:
    """An fd on the folder ``path`` itself, refused unless it can be made private."""
    info = os.lstat(path)
    problem = _foreign(info, owner)
    if problem is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            problem = "is not a folder spawn can open"
        else:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) == (info.st_dev, info.st_ino):
                return fd
            os.close(fd)
            problem = "was replaced while spawn looked at it"
    raise EmbeddedServerError(
        f"{path} {problem}, so spawn will not put its server's socket or files there (whoever "
        f"controls that folder could reach the server as superuser); remove it (`rm -r {path}`, "
        "as root if another user owns it) and retry"
    )


def _foreign(info: os.stat_result, owner: int) -> str | None:
    """Why a folder found at the server's path is not one spawn may use, or None."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if info.st_uid != owner:
        return f"belongs to {user_name(info.st_uid)}, not {user_name(owner)}"
    if info.st_mode & 0o022:
        return f"may be written by other users (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _check_parent(path: Path) -> None:
    """Refuse a folder whose parent lets anyone rename what others created in it."""
    try:
        info = path.parent.stat()
    except FileNotFoundError:
        return
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise EmbeddedServerError(
            f"{path.parent} may be written by anyone and is not sticky, so another user could "
            f"swap {path} after spawn checked it; make it sticky (`chmod +t {path.parent}`) "
            "or move the project"
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
    if not path.parent.is_dir():
        make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
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
