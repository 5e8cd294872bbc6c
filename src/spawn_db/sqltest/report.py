"""Machine-readable reports of ``spawn test compare``: JSON, and JUnit XML for CI systems."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spawn_db.sqltest.suite import TestOutcome

# XML 1.0 cannot carry most control characters, even escaped; psql output can.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Summary:
    total: int
    passed: int
    failed: int
    duration: float

    @classmethod
    def of(cls, outcomes: Sequence[TestOutcome], duration: float) -> Summary:
        passed = sum(1 for o in outcomes if o.passed)
        return cls(len(outcomes), passed, len(outcomes) - passed, duration)

    @property
    def ok(self) -> bool:
        return self.failed == 0


def report_dict(outcomes: Sequence[TestOutcome], duration: float) -> dict[str, Any]:
    """The ``--format json`` document."""
    summary = Summary.of(outcomes, duration)
    return {
        "ok": summary.ok,
        "summary": {
            "total": summary.total,
            "passed": summary.passed,
            "failed": summary.failed,
            "duration": round(duration, 3),
        },
        "tests": [_test_dict(o) for o in outcomes],
    }


def _test_dict(outcome: TestOutcome) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "status": outcome.status,
        "passed": outcome.passed,
        "duration": round(outcome.duration, 3),
        "psql_exit_code": outcome.exit_code,
        "error": outcome.error,
        "diff": outcome.diff.text() if outcome.diff else None,
        "output": outcome.output,
        "expected": outcome.expected,
    }


def junit_xml(outcomes: Sequence[TestOutcome], duration: float, *, suite: str = "spawn") -> bytes:
    """JUnit XML as GitHub, GitLab and Jenkins read it.

    A difference, a missing ``expected`` or a timeout is a ``<failure>``; a test
    that could not run at all (template error) is an ``<error>``.
    """
    import xml.etree.ElementTree as ET

    errors = sum(1 for o in outcomes if o.status == "error")
    failures = sum(1 for o in outcomes if not o.passed) - errors
    counts = {"tests": str(len(outcomes)), "failures": str(failures), "errors": str(errors),
              "time": f"{duration:.3f}"}
    root = ET.Element("testsuites", {"name": suite, **counts})
    suite_el = ET.SubElement(root, "testsuite", {"name": f"{suite} tests", **counts,
                                                 "skipped": "0"})
    for outcome in outcomes:
        case = ET.SubElement(suite_el, "testcase", {
            "classname": f"{suite}.tests", "name": outcome.name,
            "time": f"{outcome.duration:.3f}",
        })
        if not outcome.passed:
            tag = "error" if outcome.status == "error" else "failure"
            element = ET.SubElement(case, tag, {"message": _xml_text(_message(outcome)),
                                                "type": outcome.status})
            element.text = _xml_text(outcome.diff.text() if outcome.diff else outcome.error or "")
        if outcome.output:
            ET.SubElement(case, "system-out").text = _xml_text(outcome.output)
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def _message(outcome: TestOutcome) -> str:
    if outcome.status == "fail":
        note = f" ({outcome.error})" if outcome.error else ""
        return f"output differs from expected{note}"
    return outcome.error or outcome.status


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)
