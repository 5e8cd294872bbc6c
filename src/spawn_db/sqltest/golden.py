"""Line-numbered unified diffs of a test's expected output against its actual output.

Both line numbers are shown on every line so a reader can jump straight to the
line in ``expected`` and in the output of ``spawn test run``. A missing final
newline is a difference too, shown the way ``diff -u`` shows it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

DiffKind = Literal["hunk", "context", "removed", "added", "note"]
NO_NEWLINE = "\\ No newline at end of file"
MIN_WIDTH = 3
SIGNS = {"context": " ", "removed": "-", "added": "+"}


@dataclass(frozen=True)
class DiffLine:
    """One line of a diff; ``old``/``new`` are 1-based line numbers, None when absent."""

    kind: DiffKind
    text: str
    old: int | None = None
    new: int | None = None


@dataclass(frozen=True)
class Diff:
    lines: tuple[DiffLine, ...]
    width: int

    def __bool__(self) -> bool:
        return bool(self.lines)

    def render(self) -> list[str]:
        """Plain text lines (no newline at the end of each)."""
        return [render_line(line, self.width) for line in self.lines]

    def text(self) -> str:
        return "".join(line + "\n" for line in self.render())


def render_line(line: DiffLine, width: int) -> str:
    """``old new sign|text``: the bar keeps leading and trailing blanks of psql output visible."""
    if line.kind in ("hunk", "note"):
        return line.text
    old = "" if line.old is None else str(line.old)
    new = "" if line.new is None else str(line.new)
    return f"{old:>{width}} {new:>{width}} {SIGNS[line.kind]}|{line.text}"


def diff(expected: str, actual: str, *, context: int = 3) -> Diff:
    """The hunks where ``actual`` differs from ``expected``; empty when they are equal."""
    old = expected.splitlines(keepends=True)
    new = actual.splitlines(keepends=True)
    width = max(len(str(max(len(old), len(new)))), MIN_WIDTH)
    if old == new:
        return Diff((), width)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    lines: list[DiffLine] = []
    for group in matcher.get_grouped_opcodes(context):
        lines.append(_hunk_header(group))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for k in range(i2 - i1):
                    lines += _numbered("context", old[i1 + k], i1 + k + 1, j1 + k + 1)
                continue
            for i in range(i1, i2):
                lines += _numbered("removed", old[i], i + 1, None)
            for j in range(j1, j2):
                lines += _numbered("added", new[j], None, j + 1)
    return Diff(tuple(lines), width)


def _numbered(kind: DiffKind, raw: str, old: int | None, new: int | None) -> list[DiffLine]:
    text = raw[:-1] if raw.endswith("\n") else raw
    line = DiffLine(kind, text, old, new)
    return [line] if raw.endswith("\n") else [line, DiffLine("note", NO_NEWLINE)]


def _hunk_header(group: list[tuple[str, int, int, int, int]]) -> DiffLine:
    first, last = group[0], group[-1]
    old = _range(first[1], last[2])
    new = _range(first[3], last[4])
    return DiffLine("hunk", f"@@ -{old} +{new} @@")


def _range(start: int, stop: int) -> str:
    """``diff -u`` range notation: 1-based start, count; an empty range names the line before."""
    count = stop - start
    if count == 0:
        return f"{start},0"
    if count == 1:
        return str(start + 1)
    return f"{start + 1},{count}"
