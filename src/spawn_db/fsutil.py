"""Writing files so that a crash leaves the old content or the new, never half.

Every file spawn writes may hold SQL or its output (migrations, components in
the pin store, test output, reports, the server log), and SQL can hold
secrets (``ALTER ROLE ... PASSWORD``). So a file spawn creates is private,
``PRIVATE_FILE_MODE``, whatever the umask; a file it replaces keeps the mode
(and, where the caller may set it, the owner) it had, so access a user
granted on purpose survives. Folders spawn keeps its own state in are made
with ``make_private_dir``.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
# The name atomic_write gives its temporary files: .<name>.<pid>-<thread>.tmp
_WRITER = re.compile(r"\.(\d+)-\d+\.tmp\Z")


def atomic_write(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    ``durable`` also fsyncs the file before the rename. Pin objects skip it:
    they are written by the thousand, and a lost one is detected on read
    (missing or corrupt) and restored from version control. Plain string
    operations, not pathlib, because pinning calls this once per object. The
    temporary name is unique per thread, so two threads writing the same
    object never share a half-written file. A new file is ``PRIVATE_FILE_MODE``;
    a replaced one keeps its mode and owner (see the module docstring). The
    mode is set with ``fchmod`` because the umask only ever removes bits from
    ``open``'s mode, and a temporary left by a killed writer keeps its old one.
    """
    atomic_write_chunks(path, (data,), durable=durable)


def atomic_write_chunks(path: str | os.PathLike[str], chunks: Iterable[bytes], *,
                        durable: bool = True, temp_folder: str | None = None) -> None:
    """``atomic_write`` of the bytes ``chunks`` yields, for content too large to hold (a
    download): if the iterator raises, the temporary file is removed and ``path`` is
    untouched, so a check run after the last chunk can still refuse the content.

    ``temp_folder`` (on the same file system) holds the temporary file instead of
    ``path``'s folder, where one left by a killed writer would be mistaken for content.
    """
    target = os.fspath(path)
    folder, name = os.path.split(target)
    tmp = os.path.join(temp_folder or folder,
                       f".{name}.{os.getpid()}-{_thread.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        for data in chunks:
            write_all(fd, data)
        _take_over_mode(fd, target)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        discard(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, target)
    except BaseException:
        discard(tmp)
        raise


def write_new(path: str, data: bytes) -> bool:
    """Create ``path`` with ``data``; False, writing nothing, if it already exists.

    For files nobody reads before their folder is moved into place (staged pin
    objects), so no temporary name is needed. The file is ``PRIVATE_FILE_MODE``.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        write_all(fd, data)
    finally:
        os.close(fd)
    return True


def _take_over_mode(fd: int, target: str) -> None:
    """Give the temporary ``fd`` the mode (and owner) of the file it replaces, else private.

    The owner is kept only where the system allows it (root, or a group the
    caller is in); otherwise the replacement is the caller's, as any editor's.
    The mode is set after writing, because writing clears set-id bits.
    """
    try:
        old = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        os.fchmod(fd, PRIVATE_FILE_MODE)
        return
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


def make_private_dir(path: str | os.PathLike[str]) -> None:
    """Create the folder ``path`` (and missing parents) with mode ``PRIVATE_DIR_MODE``.

    An existing folder of the caller's loses its read and write bits for
    group and others: it holds spawn's own state (``.spawn/``), which a
    permissive umask or an older spawn must not leave listable or writable by
    others. Execute bits stay: a root-run embedded server's user passes
    through ``.spawn/`` (mode 0710) to its own folders, and passing through
    reaches only files whose own mode allows it. A symbolic link is left as
    it is: the user put the state elsewhere on purpose. ``mkdir``'s mode is
    cut by the umask, so the mode is set explicitly.
    """
    target = os.fspath(path)
    if os.path.islink(target):
        return
    parent = os.path.dirname(target)
    if parent and not os.path.isdir(parent):
        make_private_dir(parent)
    try:
        os.mkdir(target, PRIVATE_DIR_MODE)
    except FileExistsError:
        info = os.lstat(target)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and info.st_mode & 0o066:
            os.chmod(target, stat.S_IMODE(info.st_mode) & ~0o066)
        return
    # Only the owner's bits the umask took: another spawn process may already have let the
    # embedded server's group through (0710) between the mkdir and now.
    mode = stat.S_IMODE(os.lstat(target).st_mode)
    if mode & PRIVATE_DIR_MODE != PRIVATE_DIR_MODE:
        os.chmod(target, mode | PRIVATE_DIR_MODE)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (it may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def remove_dead_writers_files(folder: str) -> None:
    """Remove the temporary files in ``folder`` whose writer (the pid in the name
    ``atomic_write_chunks`` gives them) is gone: a killed write leaves them behind."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        found = _WRITER.search(name)
        if found is not None and not in_process_table(int(found.group(1))):
            discard(os.path.join(folder, name))


def discard(path: str) -> None:
    """Remove ``path`` if it is there (a temporary file a failed write leaves)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    atomic_write(path, text.encode("utf-8"), durable=durable)


def in_process_table(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_inside(path: str, folder: str) -> bool:
    """Whether the resolved ``path`` is ``folder`` or lies under it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def open_regular(path: str) -> IO[bytes] | None:
    """``path`` opened for reading when it is a regular file, else None (missing, a
    folder, a FIFO that would block): without following it into a device or a pipe."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.fdopen(os.dup(fd), "rb")
    finally:
        os.close(fd)


def real_folder(folder: str) -> tuple[str, str | None]:
    """``folder`` resolved, and the parent it escapes when it is a symbolic link that
    resolves outside its own parent folder (else None): ``components/`` may be a link
    within the project, never one that pulls files in from elsewhere."""
    folder = os.path.abspath(folder)
    real = os.path.realpath(folder)
    parent = os.path.realpath(os.path.dirname(folder))
    escaped = os.path.islink(folder) and not is_inside(real, parent)
    return real, parent if escaped else None


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the folder ``path`` for the block.

    A lock on the folder itself needs no write permission and adds no file to
    it (the pin store is committed to git). The kernel drops it when the
    process dies, so a killed holder never leaves it taken. A folder that
    does not exist is created first; one that cannot be opened is not locked
    (whatever wanted it will fail on the folder with its own message).
    """
    import fcntl

    target = os.fspath(path)
    try:
        os.makedirs(target, exist_ok=True)
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
