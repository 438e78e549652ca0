"""`make test` ends with the JUnit summary, so CI's tail names the failures whatever printed before it."""

from __future__ import annotations

from pathlib import Path

from tests.junit_summary import main, summarize

_REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="0" tests="3" time="12.5">
<testcase classname="tests.unit.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.unit.test_a" name="test_broken" time="0.2">
  <failure message="AssertionError: assert 3 == 4&#10;  where 3 = count()">trace</failure></testcase>
<testcase classname="tests.integration.test_b" name="test_server" time="0.3">
  <error message="failed on setup with &quot;Kafka did not start&quot;">trace</error></testcase>
</testsuite></testsuites>
"""


def test_summary_names_each_failure_and_error_with_its_message(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(_REPORT)
    lines = summarize(report)
    assert lines[0].endswith("3 tests, 1 failed, 1 errors, 0 skipped, 12 s")
    assert lines[1] == "  FAILURE tests.unit.test_a::test_broken: AssertionError: assert 3 == 4 where 3 = count()"
    assert lines[2] == '  ERROR tests.integration.test_b::test_server: failed on setup with "Kafka did not start"'
    assert len(lines) == 3


def test_missing_report_is_a_failure_that_says_so(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([str(tmp_path / "absent.xml")]) == 1
    assert "not written" in capsys.readouterr().out
