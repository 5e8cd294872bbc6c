"""A migration's script rendered whole into a spool before anything of it runs.

``MigrationRun`` (``runner.py``) and every command that shows or checks what would run
(dry runs, drift, flatten, verify, the fresh test templates) render through here: the
pin or the working tree, the secrets the script references fetched first, the text
checked (``psqlscan``) for whether it can share a runner session, its checksum taken
on the way.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from spawn_db.config import Config
from spawn_db.db.psqlscan import ScriptShape, analyze
from spawn_db.errors import (
    TemplateError,
)
from spawn_db.migrate.tracking import (
    Activity,
    Record,
)
from spawn_db.render.plaintext import plain_output

if TYPE_CHECKING:
    from spawn_db.migrate.steps import Step

SPOOL_MEMORY = 8 * 1024 * 1024
SCAN_LIMIT = 1024 * 1024
TAIL = 4096  # bytes of a rendered script kept to see how it ends
_NO_SQL = re.compile(rb"(?:[ \t\r\n\f\v]+|--[^\n]*|/\*.*?\*/)*", re.S)


@dataclass
class Rendered:
    """One migration rendered into a spool, with everything known before it runs."""

    name: str
    position: int
    spool: IO[bytes]
    size: int
    newlines: int
    checksum: bytes
    pin: str | None
    shape: ScriptShape
    ends_in_copy_data: bool = False
    migration_id: int | None = None
    attempted: bool = False
    started: float | None = None
    seen: set[str] = field(default_factory=set)
    activity: Activity = "APPLY"
    secrets: tuple[str, ...] = ()
    secret_input: str = ""  # psql \set lines for ``secrets``, fetched before it runs
    steps: tuple[Step, ...] | None = None

    def record(self, status: Literal["ATTEMPTED", "SUCCESS", "FAILURE"], **extra: Any) -> Record:
        return Record(self.name, self.activity, status, checksum=self.checksum, pin_hash=self.pin,
                      migration_id=self.migration_id, **extra)

    def close(self) -> None:
        self.spool.close()


def render_migration(
    config: Config, name: str, *, pinned: bool, variables: Any, position: int = 1,
    script: str = "up.sql", fetch_secrets: bool = True,
) -> Rendered:
    """Render ``name``'s ``script`` whole (memory bounded by a spool) before anything is
    sent; the secrets it references are fetched now (unless ``fetch_secrets`` is False: a
    dry run), so an unavailable one stops it before its ATTEMPTED row."""

    chunks, pin, used = _render_chunks(config, name, pinned=pinned, variables=variables,
                                       script=script)
    rendered = spool_rendered(name, chunks, position=position, pin=pin, secrets=used)
    if used:
        with_secrets(rendered, config, variables, f"migration {name} {script}",
                     fetch=fetch_secrets)
    return rendered


def spool_rendered(name: str, chunks: Iterable[str], *, position: int = 1,
                   pin: str | None = None, secrets: Sequence[str] = (),
                   encode: Callable[[str, str], bytes] | None = None) -> Rendered:
    """A render's chunks written whole into a spool (memory bounded), with the checksum,
    the counts, the shape of the script and whether it ends in COPY data; ``secrets``
    are read once the chunks are consumed. ``encode`` words the error of text that is
    not valid Unicode."""
    import xxhash

    encode = encode or _encode
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115
    digest = xxhash.xxh3_128()
    size = newlines = 0
    scan: list[bytes] | None = []
    tail = _Tail()
    try:
        for chunk in chunks:
            data = encode(chunk, name)
            spool.write(data)
            digest.update(data)
            size += len(data)
            newlines += data.count(b"\n")
            tail.add(data)
            if scan is not None:
                scan.append(data)
                if size > SCAN_LIMIT:
                    scan = None
    except BaseException:
        spool.close()
        raise
    if scan is None:
        shape = ScriptShape(False, f"it is larger than {SCAN_LIMIT // 1024} KiB")
    else:
        shape = analyze(b"".join(scan))
    return Rendered(name, position, spool, size, newlines, digest.digest(), pin, shape,
                    secrets=tuple(secrets), ends_in_copy_data=tail.ends_in_copy_data())


def with_secrets(rendered: Rendered, config: Config, variables: Any, what: str, *,
                 fetch: bool = True) -> None:
    """Check where ``rendered`` references its secrets and (unless ``fetch`` is False: a
    dry run) fetch their values into ``secret_input``; ``rendered`` is closed on error."""
    _check_secret_places(rendered, what)
    if fetch:
        rendered.secret_input = _secret_input(rendered, config, variables)


def _secret_input(rendered: Rendered, config: Config, variables: Any) -> str:
    """psql input setting the secrets ``rendered`` references (a script using one always
    runs in a psql of its own: psql variables make it unshareable)."""
    from spawn_db.secret.values import fetch, set_commands

    try:
        return set_commands(fetch(config, rendered.secrets, variables))
    except BaseException:
        rendered.close()
        raise


def _check_secret_places(rendered: Rendered, what: str) -> None:
    """psql substitutes ``:'spawn_secret_x'`` only in SQL text: inside a quoted or
    dollar-quoted body or a comment it would stay as written (and the body would never see
    the value), so that is an error before anything runs."""
    from spawn_db.db.psqlscan import unsubstituted_lines
    from spawn_db.secret.values import VARIABLE_PREFIX

    rendered.spool.seek(0)
    lines = unsubstituted_lines(rendered.spool.read(), f":'{VARIABLE_PREFIX}".encode())
    rendered.spool.seek(0)
    if lines:
        rendered.close()
        raise TemplateError(
            f"{what}: secret() is used inside a quoted or "
            f"dollar-quoted body or a comment (rendered line {lines[0]}), where psql does not "
            "substitute variables; pass the secret outside the body, e.g. as a function "
            "argument or with format() in a DO block called with it")


class _Tail:
    """The last ``TAIL`` bytes of a rendered script (trimmed in batches, so a render of
    many small chunks does not copy the window once per chunk)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.cut = False

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size > 2 * TAIL:
            kept = b"".join(self.parts)[-TAIL:]
            self.parts, self.size, self.cut = [kept], len(kept), True

    def ends_in_copy_data(self) -> bool:
        """Whether nothing but blanks and comments follows the script's last ``\\.`` line,
        the end of COPY data.

        psql 18 silently stops reading its input (exit code 0) when the first query after
        a ``COPY ... FROM STDIN`` is empty; the ``;`` that ends an unterminated last
        statement would be that query, so it is not sent after such a script (nothing
        is unterminated there).
        """
        text = b"".join(self.parts)[-TAIL:]
        text = text if self.cut else b"\n" + text
        end = max(text.rfind(b"\n\\.\n"), text.rfind(b"\n\\.\r\n"))
        if end < 0:
            end = len(text) - 3 if text.endswith(b"\n\\.") else -1
        return end >= 0 and _NO_SQL.fullmatch(text, end + 3) is not None


def _render_chunks(
    config: Config, name: str, *, pinned: bool, variables: Any, script: str = "up.sql"
) -> tuple[Iterable[str], str | None, list[str]]:
    """The rendered text's chunks and the pin it came from.

    A template with no Jinja syntax skips compiling (``plaintext.plain_output``),
    which costs more than running a small migration.
    """
    from spawn_db.pin.store import read_lock

    folder = config.migrations_dir / name
    text = _read_text(folder / script)
    output = plain_output(text) if text is not None else None
    if output is not None:
        pin = read_lock(folder)
        if pinned and pin is None:
            from spawn_db.migrate.migration import migration_source

            migration_source(config, name, pinned=True, script=script)
        return [output], pin if pinned else None, []
    from spawn_db.migrate.migration import compile_migration, migration_source
    from spawn_db.render.template import template_context

    source = migration_source(config, name, pinned=pinned, script=script)
    renderer = compile_migration(config, source)
    context = template_context(config, variables or {})
    used = context.secrets.used if context.secrets is not None else []
    return renderer.generate(context), source.pin if pinned else None, used


def uses_pin(config: Config, name: str, pinned: bool, unpinned_from_tree: bool) -> bool:
    """Whether ``name`` renders from its pin: always when ``pinned``, unless pins are
    optional (``unpinned_from_tree``) and it has no ``lock.toml``."""
    if not pinned or not unpinned_from_tree:
        return pinned
    return (config.migrations_dir / name / "lock.toml").is_file()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")  # not read_text: it would turn CRLF into LF
    except (OSError, UnicodeDecodeError):
        return None


def _encode(chunk: str, name: str) -> bytes:
    try:
        return chunk.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TemplateError(
            f"migration {name} renders text that is not valid Unicode ({exc.reason}); "
            "check the files and variables it reads"
        ) from None


