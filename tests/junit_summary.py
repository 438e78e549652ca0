"""Print a test run's outcome from its JUnit XML, as the last lines of `make test`.

CI shows the tail of the output; whatever a library's stray thread prints as the interpreter exits must not
push the failures out of it.  Usage: ``python -m tests.junit_summary build/test-report.xml``.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

_MESSAGE_CHARS = 300


def summarize(report: Path) -> list[str]:
    """One line of totals, then a line per failed, errored or skipped test with the first of its message."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    time_s = 0.0
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        time_s += float(suite.get("time", "0"))
    lines = [
        f"test report {report}: {totals['tests']} tests, {totals['failures']} failed, "
        f"{totals['errors']} errors, {totals['skipped']} skipped, {time_s:.0f} s"
    ]
    for case in root.iter("testcase"):
        for outcome in ("failure", "error", "skipped"):
            element = case.find(outcome)
            if element is None:
                continue
            message = " ".join((element.get("message") or element.text or "").split())
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            lines.append(f"  {outcome.upper()} {name}: {message[:_MESSAGE_CHARS]}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.junit_summary REPORT.xml", file=sys.stderr)
        return 2
    report = Path(argv[0])
    if not report.exists():
        print(f"test report {report}: not written (pytest did not get as far as the end)")
        return 1
    print("\n".join(summarize(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
