"""Data files in templates: ``read_csv``, ``read_jsonl`` and ``copy_csv`` (docs/data.md).

The CSV dialect is fixed, because a pinned migration must render the same
bytes forever and a change of dialect would change them: RFC 4180 with the
delimiter as the only option. Fields are separated by the delimiter (one
ASCII character, ``,`` by default); a field holding the delimiter, a quote or
a line break is enclosed in ``"`` with inner quotes doubled; a quote
anywhere else is an error (PostgreSQL and other readers disagree on it).
Records end with LF or CRLF (the last may end the file instead); a CR
elsewhere outside quotes is an error. UTF-8 only; a BOM at the start is
ignored; a NUL byte is an error (PostgreSQL text cannot hold it). An
unquoted empty field is NULL (``None``), a quoted one (``""``) is the empty
string, which is what ``COPY ... (FORMAT csv)`` loads, so ``read_csv`` sees
what ``copy_csv`` loads.

``copy_csv`` streams: it returns a marker, and ``expand_streams`` (called by
``Renderer.generate``) replaces the marker in the output by the COPY
statement and the file's records, read a block at a time, so a 1 GB file
renders with flat memory. Its records are re-emitted as read, each ended by
LF; a record that is exactly ``\\.`` is quoted (psql and PostgreSQL would take
it for the end of the data), and a quoted value holding a line ``\\.`` is an
error (psql ends the data there whatever the quotes say).
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import operator
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from spawn_db.errors import DataFileError, TemplateError
from spawn_db.escape import escape_identifier, escape_literal

READ_BLOCK = 1 << 20  # bytes read at a time
OUTPUT_BLOCK = 1 << 18  # characters of COPY data yielded at a time
BOM = b"\xef\xbb\xbf"
END_OF_DATA = "\\."
FORBIDDEN_DELIMITERS = '"\r\n\x00'

Fields = list[str | None]


class ReadableSource(Protocol):
    """A component source (``template.ComponentSource``); ``open`` is optional."""

    @property
    def description(self) -> str: ...

    def read(self, parts: list[str]) -> bytes | None: ...


def open_component(source: ReadableSource, parts: list[str]) -> IO[bytes] | None:
    """A binary stream of the file at ``parts``, or None; streams when the source can."""
    opener = getattr(source, "open", None)
    if opener is not None:
        stream: IO[bytes] | None = opener(parts)
        return stream
    data = source.read(parts)
    return None if data is None else io.BytesIO(data)


@dataclass(frozen=True)
class StreamedFile:
    """What a recording render keeps of a file it streamed: its xxh3-128 digest, not its
    bytes (a 1 GB CSV would otherwise be held in memory to compare it with a pin).

    Compares equal to another ``StreamedFile`` with the same digest and to ``bytes``
    whose digest it is.
    """

    digest: bytes

    @classmethod
    def of(cls, stream: IO[bytes]) -> StreamedFile:
        """The digest of ``stream`` from its start; the stream is left at its start."""
        import xxhash

        hasher = xxhash.xxh3_128()
        stream.seek(0)
        for block in iter(lambda: stream.read(READ_BLOCK), b""):
            hasher.update(block)
        stream.seek(0)
        return cls(hasher.digest())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StreamedFile):
            return self.digest == other.digest
        if isinstance(other, bytes | bytearray):
            import xxhash

            return bool(xxhash.xxh3_128_digest(bytes(other)) == self.digest)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.digest)


def same_content(source: ReadableSource, parts: list[str],
                 recorded: bytes | StreamedFile | None) -> bool:
    """Whether the file at ``parts`` of ``source`` still has the content a render recorded;
    a streamed file is compared by digest, reading it a block at a time."""
    if isinstance(recorded, StreamedFile):
        stream = open_component(source, parts)
        if stream is None:
            return False
        with stream:
            return StreamedFile.of(stream) == recorded
    return source.read(parts) == recorded


# -- the dialect -------------------------------------------------------------------------------


def check_delimiter(delimiter: Any) -> str:
    """The delimiter, if it is one ASCII character COPY accepts (not a quote or line break)."""
    if (not isinstance(delimiter, str) or len(delimiter) != 1 or not delimiter.isascii()
            or delimiter in FORBIDDEN_DELIMITERS):
        raise DataFileError(
            f"delimiter {delimiter!r} refused: use one ASCII character other than a double "
            "quote, a line break or NUL (\",\" by default, \";\" or \"\\t\" are common)"
        )
    return delimiter


def _blocks(stream: IO[bytes], origin: str) -> Iterator[tuple[int, str]]:
    """(line number of its first line, text) for blocks of whole lines of ``stream``,
    decoded as UTF-8, without a leading BOM; only the last block may lack a final LF."""
    line, rest, first = 1, b"", True
    while True:
        data = stream.read(READ_BLOCK)
        if not data:
            break
        data = rest + data if rest else data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        block, rest = data[:cut], data[cut:]
        if first:
            block, first = block.removeprefix(BOM), False
        yield line, _decode(block, origin, line)
        line += block.count(b"\n")
    if rest:
        yield line, _decode(rest.removeprefix(BOM) if first else rest, origin, line)


def _decode(block: bytes, origin: str, line: int) -> str:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = line + block.count(b"\n", 0, exc.start)
        raise DataFileError(
            f"{origin}:{where}: not UTF-8 (byte 0x{block[exc.start]:02x}: {exc.reason}); "
            "save the file as UTF-8"
        ) from None
    if "\x00" in text:
        where = line + text.count("\n", 0, text.index("\x00"))
        raise DataFileError(f"{origin}:{where}: a NUL byte, which PostgreSQL text cannot "
                            "hold; remove it")
    return text


@functools.lru_cache(maxsize=16)
def _field_pattern(delimiter: str) -> re.Pattern[str]:
    d = re.escape(delimiter)
    return re.compile(rf'"([^"]*(?:""[^"]*)*)"(?={d}|\Z)|([^"\r\n{d}]*)(?={d}|\Z)')


def _quoted_fields(record: str, delimiter: str, origin: str, line: int) -> Fields:
    """The fields of a record holding quotes, by the strict rules of the dialect."""
    pattern = _field_pattern(delimiter)
    fields: Fields = []
    pos = 0
    while True:
        found = pattern.match(record, pos)
        if found is None:
            raise DataFileError(
                f"{origin}:{line}: field {len(fields) + 1} has a quote inside an unquoted "
                "value, text after a closing quote, or a carriage return; enclose the whole "
                'value in double quotes and double the quotes inside it ("a ""b"" c")'
            )
        quoted, plain = found.groups()
        if quoted is not None:
            fields.append(quoted.replace('""', '"'))
        else:
            fields.append(plain or None)
        pos = found.end()
        if pos == len(record):
            return fields
        pos += 1


def _plain_record(raw: str, origin: str, line: int) -> str:
    """A record without quotes, its CRLF ending dropped; a CR elsewhere is an error."""
    if "\r" in raw:
        if raw.endswith("\r") and "\r" not in raw[:-1]:
            return raw[:-1]
        raise DataFileError(f"{origin}:{line}: a carriage return outside quotes that does not "
                            "end the line; quote the value or end lines with LF or CRLF")
    return raw


@dataclass
class Record:
    """One CSV record: where it starts, its text (no line ending), and its fields when it
    holds quotes (``None``: split ``text`` at the delimiter)."""

    line: int
    text: str
    quoted: Fields | None

    def fields(self, delimiter: str) -> Fields:
        if self.quoted is not None:
            return self.quoted
        return [value or None for value in self.text.split(delimiter)]

    def width(self, delimiter: str) -> int:
        if self.quoted is not None:
            return len(self.quoted)
        return self.text.count(delimiter) + 1


@dataclass
class PlainLines:
    """Consecutive records without quotes (``line`` is the first's line): the bulk of most
    files, checked and copied a block at a time instead of a record at a time."""

    line: int
    texts: list[str]

    def records(self) -> Iterator[Record]:
        for offset, text in enumerate(self.texts):
            yield Record(self.line + offset, text, None)


def csv_runs(stream: IO[bytes], origin: str, delimiter: str) -> Iterator[Record | PlainLines]:
    """The records of a CSV stream, read a block at a time, plain ones in runs; errors name
    ``origin`` and the line. A record spanning lines is held whole (memory is bounded by
    the longest record)."""
    pending: list[str] = []
    quotes = start = 0
    for line, block in _blocks(stream, origin):
        if not pending and '"' not in block:
            plain = block.replace("\r\n", "\n") if "\r" in block else block
            if "\r" not in plain:
                texts = plain.split("\n")
                if texts[-1] == "":
                    texts.pop()
                yield PlainLines(line, texts)
                continue
        lines = block.split("\n")
        if lines[-1] == "":
            lines.pop()
        run: list[str] = []
        for raw in lines:
            if pending:
                pending.append(raw)
                quotes += raw.count('"')
                if quotes % 2 == 0:
                    text = "\n".join(pending)
                    pending = []
                    yield _quoted_record(text, delimiter, origin, start)
            elif '"' not in raw:
                run.append(raw)
            else:
                if run:
                    yield _plain_run(line - len(run), run, origin)
                    run = []
                quotes = raw.count('"')
                if quotes % 2:
                    pending, start = [raw], line
                else:
                    yield _quoted_record(raw, delimiter, origin, line)
            line += 1
        if run:
            yield _plain_run(line - len(run), run, origin)
    if pending:
        raise DataFileError(
            f"{origin}:{start}: a quoted value that starts on this line is never closed; add "
            "the closing double quote (a quote inside a value is written twice)"
        )


def _plain_run(line: int, texts: list[str], origin: str) -> PlainLines:
    if any("\r" in text for text in texts):
        texts = [_plain_record(text, origin, line + i) for i, text in enumerate(texts)]
    return PlainLines(line, texts)


def csv_records(stream: IO[bytes], origin: str, delimiter: str) -> Iterator[Record]:
    """``csv_runs``, one record at a time."""
    for run in csv_runs(stream, origin, delimiter):
        if isinstance(run, PlainLines):
            yield from run.records()
        else:
            yield run


def _quoted_record(text: str, delimiter: str, origin: str, line: int) -> Record:
    text = text.removesuffix("\r")
    return Record(line, text, _quoted_fields(text, delimiter, origin, line))


def _ragged(origin: str, record: Record, width: int, expected: int, basis: str) -> DataFileError:
    if record.text == "":
        return DataFileError(
            f"{origin}:{record.line}: an empty line (in CSV a record of one empty field) where "
            f"{expected} fields are expected; remove the line"
        )
    return DataFileError(
        f"{origin}:{record.line}: {width} field{'s' if width != 1 else ''}, but {basis} "
        f"{expected}; every record needs the same number of fields (quote a value that "
        "holds the delimiter)"
    )


# -- read_csv, read_jsonl ----------------------------------------------------------------------


def read_csv(stream: IO[bytes], origin: str, delimiter: Any = ",",
             header: bool = True) -> list[Any]:
    """Every record: a mapping from the header's names when ``header``, else a list."""
    delimiter = check_delimiter(delimiter)
    records = csv_records(stream, origin, delimiter)
    names: list[str] | None = None
    if header:
        first = next(records, None)
        if first is None:
            return []
        names = header_names(first, delimiter, origin)
    rows: list[Any] = []
    expected = None if names is None else len(names)
    basis = "the header has" if header else "the first record has"
    for record in records:
        fields = record.fields(delimiter)
        if expected is None:
            expected = len(fields)
        elif len(fields) != expected:
            raise _ragged(origin, record, len(fields), expected, basis)
        rows.append(fields if names is None else dict(zip(names, fields, strict=True)))
    return rows


def header_names(record: Record, delimiter: str, origin: str) -> list[str]:
    """The header's column names: each non-empty and used once."""
    names: list[str] = []
    for index, name in enumerate(record.fields(delimiter), start=1):
        if not name:
            raise DataFileError(f"{origin}:{record.line}: header field {index} is empty; "
                                "name every column (or pass header=false)")
        if name in names:
            raise DataFileError(f"{origin}:{record.line}: the header names {name!r} twice; "
                                "column names must be unique")
        names.append(name)
    return names


def read_jsonl(stream: IO[bytes], origin: str) -> list[Any]:
    """One JSON value per line (JSON Lines); blank lines are skipped."""
    values: list[Any] = []
    for first, block in _blocks(stream, origin):
        for offset, text in enumerate(block.split("\n")):
            if not text.strip():
                continue
            try:
                values.append(json.loads(text))
            except json.JSONDecodeError as exc:
                raise DataFileError(
                    f"{origin}:{first + offset}: invalid JSON at column {exc.colno}: "
                    f"{exc.msg} (JSON Lines: one complete value per line)"
                ) from None
    return values


# -- copy_csv ----------------------------------------------------------------------------------


def table_name(table: Any) -> str:
    """``table`` as SQL: a string is one identifier, a list or tuple a qualified name
    (``["app", "users"]`` is ``"app"."users"``); text already marked safe passes as is."""
    if hasattr(table, "__html__"):
        return str(table)
    if isinstance(table, str) and table:
        return escape_identifier(table)
    if (isinstance(table, list | tuple) and table
            and all(isinstance(p, str) and p for p in table)):
        return ".".join(escape_identifier(p) for p in table)
    raise DataFileError(
        f"copy_csv table {table!r} refused: give a table name, or a list such as "
        '["schema", "table"] for a qualified name'
    )


def column_names(columns: Any) -> list[str] | None:
    if columns is None or _is_undefined(columns):
        return None
    if (isinstance(columns, list | tuple) and columns
            and all(isinstance(c, str) and c for c in columns)):
        return list(columns)
    raise DataFileError(f"copy_csv columns {columns!r} refused: give a non-empty list of "
                        "column names, or leave it out to take the header's")


def _is_undefined(value: Any) -> bool:
    from jinja2 import Undefined

    return isinstance(value, Undefined)


@dataclass(frozen=True)
class CopySpec:
    """One ``copy_csv`` call: what to read and where to load it."""

    path: str
    origin: str
    table: str
    columns: list[str] | None
    delimiter: str
    header: bool

    def statement(self, columns: list[str] | None) -> str:
        names = "" if not columns else " (" + ", ".join(map(escape_identifier, columns)) + ")"
        options = "FORMAT csv"
        if self.delimiter != ",":
            options += f", DELIMITER {escape_literal(self.delimiter)}"
        return f"COPY {self.table}{names} FROM STDIN WITH ({options});\n"


def copy_chunks(spec: CopySpec, stream: IO[bytes]) -> Iterator[str]:
    """The COPY statement, the records, and ``\\.``, a block at a time."""
    runs = csv_runs(stream, spec.origin, spec.delimiter)
    columns = spec.columns
    expected = None if columns is None else len(columns)
    basis = "copy_csv was given columns for"
    if spec.header:
        first, runs = _first_record(runs)
        if first is None:
            raise DataFileError(f"{spec.origin}: the file is empty, so it has no header "
                                "line; add one, or pass header=false")
        names = header_names(first, spec.delimiter, spec.origin)
        if columns is None:
            columns, expected, basis = names, len(names), "the header has"
        elif len(names) != len(columns):
            raise _ragged(spec.origin, first, len(names), len(columns), basis)
    yield spec.statement(columns)
    out: list[str] = []
    size = 0
    for run in runs:
        if expected is None:
            first = run if isinstance(run, Record) else next(run.records())
            expected, basis = first.width(spec.delimiter), "the first record has"
        if isinstance(run, PlainLines):
            text = _copy_plain(run, spec, expected, basis)
        else:
            width = run.width(spec.delimiter)
            if width != expected:
                raise _ragged(spec.origin, run, width, expected, basis)
            text = _copy_line(run, spec.origin)
        out.append(text)
        size += len(text)
        if size >= OUTPUT_BLOCK:
            yield "".join(out)
            out, size = [], 0
    out.append(END_OF_DATA + "\n")
    yield "".join(out)


def _first_record(runs: Iterator[Record | PlainLines]
                  ) -> tuple[Record | None, Iterator[Record | PlainLines]]:
    """The first record, and the runs after it."""
    for run in runs:
        if isinstance(run, Record):
            return run, runs
        if run.texts:
            rest = PlainLines(run.line + 1, run.texts[1:])
            return Record(run.line, run.texts[0], None), itertools.chain([rest], runs)
    return None, runs


def _copy_plain(run: PlainLines, spec: CopySpec, expected: int, basis: str) -> str:
    """A run of plain records as COPY data, after checking every record's width."""
    if not run.texts:
        return ""
    widths = set(map(operator.methodcaller("count", spec.delimiter), run.texts))
    if widths != {expected - 1}:
        for record in run.records():
            width = record.width(spec.delimiter)
            if width != expected:
                raise _ragged(spec.origin, record, width, expected, basis)
    texts = run.texts
    if END_OF_DATA in texts:
        texts = ['"\\."' if t == END_OF_DATA else t for t in texts]
    return "\n".join(texts) + "\n"


def _copy_line(record: Record, origin: str) -> str:
    text = record.text
    if text == END_OF_DATA:
        return '"\\."\n'
    if record.quoted is not None and ("\n\\.\n" in text or "\n\\.\r\n" in text):
        raise DataFileError(
            f"{origin}:{record.line}: a quoted value holds a line that is exactly `\\.`, "
            "which psql reads as the end of COPY data whatever the quotes say; change "
            "that line of the value"
        )
    return text + "\n"


# -- streaming through the render ------------------------------------------------------------


@dataclass
class Streams:
    """The ``copy_csv`` outputs of one environment, by marker.

    A marker is a string no template can produce by chance (a random nonce between NUL
    characters); ``expand_streams`` replaces each marker in the output by its chunks.
    A marker changed by a filter, or never written, is an error: its data would be lost.
    """

    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    openers: dict[str, Callable[[], Iterator[str]]] = field(default_factory=dict)
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"\x00spawn-stream-{self.nonce}-"

    def add(self, chunks: Callable[[], Iterator[str]]) -> str:
        marker = f"{self.prefix}{len(self.openers)}\x00"
        self.openers[marker] = chunks
        return marker


_MARKER_END = "\x00"


def expand_streams(chunks: Iterator[str], streams: Streams, display: str) -> Iterator[str]:
    """``chunks`` with every ``copy_csv`` marker replaced by its streamed output."""
    prefix = streams.prefix
    written: set[str] = set()
    try:
        for chunk in chunks:
            if not streams.openers or prefix not in chunk:
                yield chunk
                continue
            yield from _expand(chunk, streams, written)
    finally:
        for file in streams.files:
            file.close()
    lost = set(streams.openers) - written
    if lost:
        raise TemplateError(
            f"{display}: the result of copy_csv(...) was not written as it was returned (a "
            "filter changed it, or it was stored and never written); write it with "
            "{{ copy_csv(...) }} on a line of its own",
            template=display,
        )


def _expand(chunk: str, streams: Streams, written: set[str]) -> Iterator[str]:
    prefix = streams.prefix
    pos = 0
    while True:
        start = chunk.find(prefix, pos)
        if start < 0:
            break
        end = chunk.find(_MARKER_END, start + len(prefix))
        marker = chunk[start:end + 1]
        opener = streams.openers.get(marker)
        if end < 0 or opener is None:
            break
        if start > pos:
            yield chunk[pos:start]
        written.add(marker)
        yield from opener()
        pos = end + 1
    if pos < len(chunk):
        yield chunk[pos:]


# -- the template functions ------------------------------------------------------------------


class DataEnvironment(Protocol):
    """What the functions need of ``template.SqlEnvironment``."""

    streams: Streams

    def open_component(self, path: str) -> tuple[IO[bytes], str]: ...


def template_functions(env: DataEnvironment) -> dict[str, Callable[..., Any]]:
    """``read_csv``, ``read_jsonl`` and ``copy_csv``, reading through ``env``'s components
    (the working tree or the pin)."""

    def read_csv_function(path: str, delimiter: str = ",", header: bool = True) -> list[Any]:
        stream, origin = env.open_component(path)
        with stream:
            return read_csv(stream, origin, delimiter, header)

    def read_jsonl_function(path: str) -> list[Any]:
        stream, origin = env.open_component(path)
        with stream:
            return read_jsonl(stream, origin)

    def copy_csv(path: str, table: Any, columns: Any = None, delimiter: str = ",",
                 header: bool = True) -> Any:
        from spawn_db.render.sqlvalue import SqlMarkup

        spec_table, spec_columns = table_name(table), column_names(columns)
        spec_delimiter = check_delimiter(delimiter)
        stream, origin = env.open_component(path)
        env.streams.files.append(stream)
        spec = CopySpec(path, origin, spec_table, spec_columns, spec_delimiter, bool(header))

        def chunks() -> Iterator[str]:
            stream.seek(0)
            return copy_chunks(spec, stream)

        return SqlMarkup(env.streams.add(chunks))

    return {"read_csv": read_csv_function, "read_jsonl": read_jsonl_function,
            "copy_csv": copy_csv}
