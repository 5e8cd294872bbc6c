"""Lint findings as frozen dataclasses, and their text, JSON and GitHub renderings.

The JSON shape is stable (documented in docs/commands/lint.md): tools may read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from spawn_db.lint.rules import ERROR
from spawn_db.lint.source_map import Location


@dataclass(frozen=True)
class Finding:
    """One problem: the rule, its severity, a one-sentence message, the migration and
    the template location (with its include chain)."""

    rule: str
    severity: str
    message: str
    migration: str
    location: Location


@dataclass(frozen=True)
class LintReport:
    """Every finding of one ``spawn lint`` run, in migration then source order.

    ``database``: what ``--db`` did: "" (not asked), "ok", "failed" (its finding is the
    last), or "skipped" (a migration does not parse or render; fix that first).
    """

    migrations: tuple[str, ...]
    findings: tuple[Finding, ...]
    database: str = ""

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    @property
    def ok(self) -> bool:
        """No error-severity finding: warnings alone keep the exit code 0."""
        return not self.errors


def text_line(finding: Finding) -> str:
    """``file:line:col: error SP002: message (included from ...)``."""
    chain = finding.location.chain_text()
    suffix = f" ({chain})" if chain else ""
    return f"{finding.location}: {finding.severity} {finding.rule}: {finding.message}{suffix}"


def github_line(finding: Finding) -> str:
    """A GitHub Actions workflow command that annotates the file and line."""
    loc = finding.location
    chain = loc.chain_text()
    message = f"{finding.message} ({chain})" if chain else finding.message
    return (f"::{finding.severity} file={_property(loc.file)},line={loc.line},"
            f"col={loc.column},title={_property(finding.rule)}::{_data(message)}")


def as_json(report: LintReport) -> str:
    """The stable JSON document: ok, the migrations linted, and every finding."""
    return json.dumps({
        "ok": report.ok,
        "migrations": list(report.migrations),
        "database": report.database or None,
        "findings": [{
            "rule": f.rule, "severity": f.severity, "message": f.message,
            "migration": f.migration, "file": f.location.file, "line": f.location.line,
            "column": f.location.column,
            "included_from": [{"file": file, "line": line} for file, line in f.location.chain],
        } for f in report.findings],
    }, indent=2, ensure_ascii=False)


def summary(report: LintReport) -> str:
    errors = len(report.errors)
    warnings = len(report.findings) - errors
    count = len(report.migrations)
    text = (f"{count} migration{'s' if count != 1 else ''} linted: {errors} "
            f"error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}")
    return text + _DATABASE_SUMMARY.get(report.database, "")


_DATABASE_SUMMARY = {
    "ok": "; every statement ran on a scratch database",
    "failed": "; a statement failed on a scratch database (the check stops at the first)",
    "skipped": "; --db was skipped: fix the syntax and render errors first",
}


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
