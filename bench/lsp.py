"""Benchmark: ``spawn lsp`` diagnostics for a 2,000-line template, from the change to them.

Issue 17's target: diagnostics within 150 ms of the change. The real server
(``python -m spawn_db lsp``) runs over stdio, driven by pygls' own
``LanguageClient``, as an editor would: ``didOpen`` of the migration, warm-up
edits, then N edits, each a ``didChange`` with the whole new text, one line of
the current text changed (a seeded random line, so no two texts are the same:
what one keystroke sends); the time is from sending the ``didChange`` to
receiving the ``publishDiagnostics`` for it.
Two templates:

* plain: 2,000 lines of SQL (an ``INSERT`` per line, an include of a component);
* dense: a template tag on every other line (``{% set vN = N %}`` then an
  ``INSERT`` that prints ``{{ vN }}``), the case where Jinja's compile of the
  whole file takes most of a second.

Every other edit breaks a line's SQL and the next one fixes it, so the
diagnostics that come back are checked to be the ones of that text (an error
at the broken line, or none).

Run from the repository root:  .venv/bin/python bench/lsp.py [--runs N] [--lines L]
Exit status 1 if a median misses the target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

TARGET_MS = 150.0
MIGRATION = "20260101000000-bench"


def plain(lines: int) -> list[str]:
    body = [f"INSERT INTO t (id, name) VALUES ({i}, 'row {i}');" for i in range(lines - 4)]
    return ["BEGIN;", "SET LOCAL lock_timeout = '2s';", "{% include 'c.sql' %}", *body,
            "COMMIT;"]


def dense(lines: int) -> list[str]:
    body: list[str] = []
    for i in range((lines - 2) // 2):
        body += ["{% set v" + str(i) + " = " + str(i) + " %}",
                 "INSERT INTO t (id, name) VALUES ({{ v" + str(i) + " }}, 'row');"]
    return ["BEGIN;", *body, "COMMIT;"]


class Editor:
    """The buffer as a user changes it: each edit changes one line of the current text,
    as a keystroke would. Odd edits break an INSERT line (its error line is expected
    back), even ones fix that line again (no error expected)."""

    def __init__(self, lines: list[str], seed: int = 17) -> None:
        self.original = lines
        self.current = list(lines)
        self.rng = random.Random(seed)
        self.candidates = [n for n, line in enumerate(lines) if line.startswith("INSERT")]
        self.broken: int | None = None

    def edit(self, run: int) -> tuple[str, int | None]:
        if self.broken is not None:
            n, self.broken = self.broken, None
            self.current[n] = self.original[n].replace("'row", f"'edit {run} row")
            return self.text(), None
        n = self.rng.choice(self.candidates)
        if run % 2:
            self.current[n] = "INSERT INTO t (id, name) VALUES (1, 'x' 'broken' ,);"
            self.broken = n
            return self.text(), n
        self.current[n] = self.original[n].replace("'row", f"'edit {run} row")
        return self.text(), None

    def text(self) -> str:
        return "\n".join(self.current) + "\n"


def make_project(root: Path) -> Path:
    spawn = root / "spawn"
    for folder in ("components", "migrations", "tests", "pinned"):
        (spawn / folder).mkdir(parents=True)
    (root / "spawn.toml").write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
        'engine = "postgres-psql"\ncommand = { kind = "direct", direct = ["psql"] }\n')
    (spawn / "components" / "c.sql").write_text("CREATE TABLE IF NOT EXISTS t (id int, "
                                                "name text);\n")
    folder = spawn / "migrations" / MIGRATION
    folder.mkdir()
    (folder / "up.sql").write_text("SELECT 1;\n")
    return folder / "up.sql"


async def measure(root: Path, path: Path, lines: list[str], runs: int,
                  warmup: int) -> list[float]:
    client = LanguageClient("spawn-bench", "1")
    published: asyncio.Queue[types.PublishDiagnosticsParams] = asyncio.Queue()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_publish(params: types.PublishDiagnosticsParams) -> None:
        published.put_nowait(params)

    await client.start_io(sys.executable, "-m", "spawn_db", "lsp", cwd=str(root))
    await client.initialize_async(types.InitializeParams(
        capabilities=types.ClientCapabilities(), root_uri=root.as_uri()))
    client.initialized(types.InitializedParams())
    uri = path.absolute().as_uri()
    text = "\n".join(lines) + "\n"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="sql", version=1,
                                             text=text)))
    await asyncio.wait_for(published.get(), 120)
    editor = Editor(lines)
    times: list[float] = []
    for run in range(warmup + runs):
        changed, error_line = editor.edit(run)
        start = time.perf_counter()
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=run + 2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=changed)]))
        params = await asyncio.wait_for(published.get(), 120)
        elapsed = time.perf_counter() - start
        found = [d.range.start.line for d in params.diagnostics]
        expected = [] if error_line is None else [error_line]
        if found != expected:
            raise SystemExit(f"run {run}: diagnostics at lines {found}, expected {expected}: "
                             f"{[d.message for d in params.diagnostics]}")
        if run >= warmup:
            times.append(elapsed * 1000)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--lines", type=int, default=2000)
    args = parser.parse_args()
    missed = False
    print(f"spawn lsp: didChange -> publishDiagnostics, {args.lines}-line template, "
          f"median of {args.runs} edits ({args.warmup} warm-up), {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    for name, make in (("plain", plain), ("dense", dense)):
        with tempfile.TemporaryDirectory(prefix="spawn-bench-lsp-") as tmp:
            root = Path(tmp)
            path = make_project(root)
            times = asyncio.run(measure(root, path, make(args.lines), args.runs, args.warmup))
        median = statistics.median(times)
        verdict = "ok" if median <= TARGET_MS else "MISSED"
        missed |= median > TARGET_MS
        print(f"  {name:6} median {median:7.1f} ms  min {min(times):6.1f}  max "
              f"{max(times):7.1f}   target <= {TARGET_MS:.0f} ms: {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
