"""Writing files so that a crash leaves the old content or the new, never half."""

from __future__ import annotations

import _thread
import contextlib
import os
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    ``durable`` also fsyncs the file before the rename. Pin objects skip it:
    they are written by the thousand, and a lost one is detected on read
    (missing or corrupt) and restored from version control. Plain string
    operations, not pathlib, because pinning calls this once per object. The
    temporary name is unique per thread, so two threads writing the same
    object never share a half-written file.
    """
    target = os.fspath(path)
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{_thread.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _discard(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


def write_new(path: str, data: bytes) -> bool:
    """Create ``path`` with ``data``; False, writing nothing, if it already exists.

    For files nobody reads before their folder is moved into place (staged pin
    objects), so no temporary name is needed.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    return True


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (it may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _discard(path: str) -> None:
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
