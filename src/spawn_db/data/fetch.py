"""``spawn data fetch`` and ``spawn data status``: external data under ``components/data/``.

A ``[data.<name>]`` source is a download (``url``, checked against ``sha256``)
or a command whose standard output is the file. Fetching writes the file
atomically (a temporary file beside it, renamed once complete and checked), so
a failed or refused fetch leaves the previous file as it was. Rendering never
fetches: templates read the file like any component, and ``migration pin``
snapshots it, so a pinned migration keeps the data it was pinned with.

Downloads use the standard library (``urllib``): HTTPS certificates are
verified with the system's trust store, and the usual proxy variables
(``https_proxy``, ``http_proxy``, ``no_proxy``) are honoured.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from spawn_db.config import Config, DataSource
from spawn_db.errors import DataSourceError, UsageError
from spawn_db.fsutil import (
    atomic_write_chunks,
    is_inside,
    make_private_dir,
    remove_dead_writers_files,
)

BLOCK = 1 << 20
DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download is abandoned
DATA_FOLDER = "data"

State = Literal["ok", "missing", "stale"]


def data_dir(config: Config) -> Path:
    return config.components_dir / DATA_FOLDER


def display_path(source: DataSource) -> str:
    return f"components/{DATA_FOLDER}/{source.path}"


def target_path(config: Config, source: DataSource) -> Path:
    """Where ``source`` is written; refuses a ``components/data/`` that a link takes
    outside ``components/`` (the pin and the renderer would refuse it too)."""
    root = os.path.realpath(config.components_dir)
    path = data_dir(config) / source.path
    if not is_inside(os.path.realpath(path), root):
        raise DataSourceError(
            f"{display_path(source)} resolves outside components/ (a symbolic link); data "
            "files must live inside components/ so that pins hold them"
        )
    return path


def selected(config: Config, names: Sequence[str]) -> list[DataSource]:
    """The sources named (all when none), in spawn.toml's order."""
    sources = config.data_sources
    for name in names:
        if name not in sources:
            declared = ", ".join(sources) or "none"
            raise UsageError(f"no data source `{name}` in {config.path} (declared: "
                             f"{declared}); add a [data.{name}] table")
    return [s for n, s in sources.items() if not names or n in names]


# -- status --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceStatus:
    """One source's file: ``missing``, ``stale`` (its sha256 is not the declared one) or
    ``ok`` (as declared; for a command without ``sha256``: present)."""

    source: DataSource
    state: State
    sha256: str | None

    @property
    def detail(self) -> str:
        source = self.source
        if self.state == "missing":
            return f"not fetched yet; run `spawn data fetch {source.name}`"
        if self.state == "stale":
            return (f"sha256 {self.sha256}, spawn.toml declares {source.sha256}; run "
                    f"`spawn data fetch {source.name}`")
        if source.sha256 is None:
            return "present (a command's output has no declared sha256 to check)"
        return "sha256 matches"


def data_status(config: Config, names: Sequence[str] = ()) -> list[SourceStatus]:
    return [source_status(config, s) for s in selected(config, names)]


def source_status(config: Config, source: DataSource) -> SourceStatus:
    path = target_path(config, source)
    if not path.is_file():
        return SourceStatus(source, "missing", None)
    digest = file_sha256(path)
    if source.sha256 is not None and digest != source.sha256:
        return SourceStatus(source, "stale", digest)
    return SourceStatus(source, "ok", digest)


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(BLOCK), b""):
            hasher.update(block)
    return hasher.hexdigest()


# -- fetch ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """What ``fetch`` did for one source: ``written`` False when it was up to date."""

    source: DataSource
    written: bool
    size: int
    sha256: str


def fetch(config: Config, source: DataSource) -> Fetched:
    """Download or run ``source`` into its file, atomically; a download whose file already
    has the declared sha256 is not fetched again."""
    path = target_path(config, source)
    if source.url is not None and path.is_file() and file_sha256(path) == source.sha256:
        return Fetched(source, False, path.stat().st_size, source.sha256 or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    check = _Check(source)
    chunks = check.chunks(_download(source) if source.url is not None else _run(config, source))
    atomic_write_chunks(path, chunks, temp_folder=_temp_folder(config, path))
    return Fetched(source, True, check.size, check.hasher.hexdigest())


def _temp_folder(config: Config, path: Path) -> str | None:
    """``.spawn/tmp/``: a file a killed fetch leaves there is not under components/, where
    the next pin would take it for data. None (beside ``path``) across file systems, where
    the final rename could not work."""
    folder = config.project_dir / ".spawn" / "tmp"
    make_private_dir(folder)
    remove_dead_writers_files(str(folder))
    if os.stat(folder).st_dev != os.stat(path.parent).st_dev:
        return None
    return str(folder)


class _Check:
    """Counts and hashes the chunks on their way to the file; after the last one, refuses
    them (so the file is not replaced) when the hash is not the declared one."""

    def __init__(self, source: DataSource) -> None:
        self.source = source
        self.hasher = hashlib.sha256()
        self.size = 0

    def chunks(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.hasher.update(chunk)
            self.size += len(chunk)
            yield chunk
        got, expected = self.hasher.hexdigest(), self.source.sha256
        if expected is not None and got != expected:
            origin = self.source.url or f"the output of `{' '.join(self.source.command)}`"
            raise DataSourceError(
                f"data source `{self.source.name}`: {origin} has sha256 {got}, but spawn.toml "
                f"declares {expected}; nothing was changed (if the new data is intended, put "
                f"the new sha256 in [data.{self.source.name}])"
            )


def _download(source: DataSource) -> Iterator[bytes]:
    import urllib.error
    import urllib.request

    url = source.url or ""
    request = urllib.request.Request(url, headers={"User-Agent": "spawn-db data fetch"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
            yield from iter(lambda: response.read(BLOCK), b"")
    except urllib.error.HTTPError as exc:
        raise _download_error(source, f"the server answered HTTP {exc.code} {exc.reason}") \
            from None
    except urllib.error.URLError as exc:
        raise _download_error(source, _reason(exc.reason)) from None
    except (OSError, ValueError) as exc:
        raise _download_error(source, _reason(exc)) from None


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _download_error(source: DataSource, reason: str) -> DataSourceError:
    return DataSourceError(f"data source `{source.name}`: cannot download {source.url}: "
                           f"{reason}; nothing was changed (check the address and the "
                           "network or proxy, then run `spawn data fetch` again)")


def _run(config: Config, source: DataSource) -> Iterator[bytes]:
    """The command's standard output, run in spawn.toml's folder; its standard error goes
    to spawn's, so its messages are seen."""
    shown = " ".join(source.command)
    try:
        process = subprocess.Popen(source.command, cwd=config.project_dir,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    except OSError as exc:
        raise DataSourceError(
            f"data source `{source.name}`: cannot run `{shown}`: {exc.strerror}; the command "
            f"runs in {config.project_dir} (check the path and that it is executable)"
        ) from None
    stdout: IO[bytes] | None = process.stdout
    assert stdout is not None
    try:
        yield from iter(lambda: os.read(stdout.fileno(), BLOCK), b"")
    finally:
        stdout.close()
        status = process.wait()
    if status != 0:
        raise DataSourceError(
            f"data source `{source.name}`: `{shown}` exited with status {status}; nothing was "
            "changed (its error output is above)"
        )
