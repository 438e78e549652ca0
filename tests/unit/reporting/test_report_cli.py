"""``aislewatch report`` as an operator runs it: periods that include today, failures that exit non-zero, and
the Kubernetes CronJob's own command e-mailing the PDF through a real SMTP server on loopback."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiosmtpd.controller import Controller

from common.app.cli import main
from common.db import Database
from common.settings import load_settings
from reporting.periods import PeriodError, ReportPeriod

from .conftest import alert
from .test_job import _free_port, _Inbox

REPO = Path(__file__).resolve().parents[3]
LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 7, 8, 15, 30, tzinfo=UTC)  # a Wednesday afternoon, 16:30 in London


@pytest.mark.parametrize(("text", "start", "end"), [
    ("today", "2026-07-08T00:00:00+01:00", "2026-07-09T00:00:00+01:00"),  # the whole day: alerts dated ahead too
    ("yesterday", "2026-07-07T00:00:00+01:00", "2026-07-08T00:00:00+01:00"),
    ("last-7-days", "2026-07-01T00:00:00+01:00", "2026-07-08T00:00:00+01:00"),
    ("2026-06-01..2026-06-30", "2026-06-01T00:00:00+01:00", "2026-07-01T00:00:00+01:00"),
    ("2026-03-28..2026-03-29", "2026-03-28T00:00:00+00:00", "2026-03-30T00:00:00+01:00"),  # across the DST change
])
def test_periods_in_the_store_time_zone(text: str, start: str, end: str) -> None:
    got = ReportPeriod.parse(text).bounds(NOW, LONDON)
    assert (got[0].isoformat(), got[1].isoformat()) == (start, end)


@pytest.mark.parametrize(("text", "reason"), [
    ("tomorrow", "not a period"),
    ("2026-06-31..2026-07-02", "ISO dates"),
    ("2026-07-02..2026-07-01", "before FROM"),
    ("last-0-days", "at least 1 day"),
    ("last-99999999-days", "at most 36600 days, got 99999999"),  # an OverflowError per store, once
    ("1850-01-01..1850-01-31", "between 1900-01-01 and 9998-12-31"),
    ("0001-01-01..9999-12-31", "between"),
    ("1900-01-01..2100-12-31", "at most 36600 days"),
])
def test_a_bad_period_says_why(text: str, reason: str) -> None:
    with pytest.raises(PeriodError, match=reason):
        ReportPeriod.parse(text)


def test_a_bad_period_on_the_command_line_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--period", "2026-07-02..2026-07-01"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "TO (2026-07-01) is before FROM (2026-07-02)" in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "reason"), [
    (["--days", "0"], "1 to 36600 days, got 0"),  # was: silently the default period
    (["--days", "-3"], "1 to 36600 days, got -3"),  # was: a PeriodError traceback
    (["--days", "99999999"], "1 to 36600 days, got 99999999"),  # was: OverflowError for every store
    (["--days", "seven"], "a whole number of days, got 'seven'"),
    (["--period", "last-99999999-days"], "at most 36600 days"),
])
def test_a_bad_number_of_days_is_a_usage_error(args: list[str], reason: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["report", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, err
    assert f"aislewatch report: error: argument {args[0]}: " in err and reason in err, err


def test_zero_days_given_to_the_job_is_refused_not_the_default(tmp_path: Path, db: Database) -> None:
    from reporting.job import generate_reports

    settings = load_settings(_config(tmp_path))
    with pytest.raises(PeriodError, match="at least 1 day, got 0"):
        generate_reports(settings, db, now=NOW, period_days=0)


# -- the command line, end to end on a real SQLite database ------------------------------------------------
def _config(tmp_path: Path, *, timezone: str = "Europe/London", output: Path | None = None,
            smtp_port: int | None = None) -> Path:
    settings = {
        "database": {"url": f"sqlite:///{tmp_path / 'aislewatch.db'}"},  # the `db` fixture's
        "stores": [
            {"id": "store-a", "name": "Alpha Market", "timezone": timezone,
             "manager_emails": ["alpha-manager@example.com"],
             "cameras": [{"id": "a-entrance", "name": "Alpha Entrance", "source": "a.mp4"}]},
            {"id": "store-b", "name": "Bravo Foods", "timezone": "America/New_York",
             "cameras": [{"id": "b-till", "name": "Bravo Tills", "source": "c.mp4"}]},
        ],
        "reporting": {"output_dir": str(output or tmp_path / "reports")},
        "service": {"evidence_dir": str(tmp_path / "evidence")},
    }
    if smtp_port is not None:
        settings["notifications"] = {"email": {"enabled": True, "host": "127.0.0.1", "port": smtp_port}}
    path = tmp_path / "aislewatch.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _pdf_text(path: Path) -> str:
    return " ".join(subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())


def _alerts_raised(text: str) -> int:
    """The PDF's headline count of alerts, from the line under it (``N suspicious, M camera offline``)."""
    found = re.search(r"(\d+) suspicious, (\d+) camera offline", text)
    assert found, text[:400]
    return int(found[1]) + int(found[2])


def test_period_today_includes_the_alerts_of_today(
    tmp_path: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    # a recording analysed faster than real time dates its alerts ahead of the clock (still today)
    ahead = now + timedelta(seconds=30)
    if ahead.astimezone(LONDON).date() != now.astimezone(LONDON).date():
        ahead = now
    db.write_alerts([alert("store-a", "a-entrance", now - timedelta(minutes=2)),
                           alert("store-a", "a-entrance", ahead)])
    config = _config(tmp_path)

    assert main(["report", "-c", str(config)]) == 0  # the schedule's default: whole past days, never today
    default_pdfs = capsys.readouterr().out.split()
    assert _alerts_raised(_pdf_text(Path(default_pdfs[0]))) == 0

    assert main(["report", "-c", str(config), "--period", "today"]) == 0
    pdfs = [Path(p) for p in capsys.readouterr().out.split()]
    assert [p.parent.name for p in pdfs] == ["store-a", "store-b"]
    local_today = now.astimezone(LONDON).date()
    assert pdfs[0].name == f"store-a-{local_today:%Y%m%d}-{local_today:%Y%m%d}-today.pdf"
    assert _alerts_raised(_pdf_text(pdfs[0])) == 2  # the alert of two minutes ago and the one dated ahead
    assert _alerts_raised(_pdf_text(pdfs[1])) == 0  # the other store's own report: not its alert


def test_period_from_to_covers_both_dates(tmp_path: Path, db: Database,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    db.write_alerts([alert("store-a", "a-entrance", datetime(2026, 6, 1, 9, tzinfo=UTC)),
                           alert("store-a", "a-entrance", datetime(2026, 6, 30, 21, tzinfo=UTC)),  # 22:00 London
                           alert("store-a", "a-entrance", datetime(2026, 6, 30, 23, 30, tzinfo=UTC))])  # 1 July
    assert main(["report", "-c", str(_config(tmp_path)), "--period", "2026-06-01..2026-06-30"]) == 0
    pdf = Path(capsys.readouterr().out.split()[0])
    assert pdf.name == "store-a-20260601-20260630.pdf"
    assert _alerts_raised(_pdf_text(pdf)) == 2


@pytest.mark.parametrize("failure", ["unknown time zone", "output is a file"])
def test_a_failed_store_report_exits_non_zero_naming_store_and_reason(
    failure: str, tmp_path: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    if failure == "unknown time zone":
        config, reason = _config(tmp_path, timezone="Europe/Londn"), "Europe/Londn"
    else:
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the report folder should be")
        config, reason = _config(tmp_path, output=blocker), "not-a-folder"
    code = main(["report", "-c", str(config)])
    captured = capsys.readouterr()
    assert code != 0, captured
    assert "Traceback" not in captured.err
    failed = [line for line in captured.err.splitlines() if line.startswith("aislewatch: report for store")]
    if code == 2:  # refused by the settings themselves (config check knows time zones): one line, also fine
        assert "store" in captured.err and reason in captured.err
        return
    assert any("store-a" in line and reason in line for line in failed), captured.err
    if failure == "unknown time zone":
        assert "store-b" in captured.out  # the other store's report was still written


def test_email_sends_now_through_the_ledger(tmp_path: Path, db: Database,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    inbox, port = _Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        db.write_alerts([alert("store-a", "a-entrance", datetime.now(UTC) - timedelta(minutes=1))])
        config = _config(tmp_path, smtp_port=port)
        assert main(["report", "-c", str(config), "--period", "today", "--email"]) == 0
        out = capsys.readouterr().out
        assert "store-a\tsent\t" in out and "store-b\trendered\t" in out  # store-b has no manager_emails
        (envelope,) = inbox.envelopes
        assert envelope.rcpt_tos == ["alpha-manager@example.com"]  # type: ignore[attr-defined]
        controller.stop()
        # the relay is gone: the next send fails, the command says so and exits 1
        assert main(["report", "-c", str(config), "--period", "today", "--email"]) == 1
        err = capsys.readouterr().err
        assert "report store-a failed: not sent: cannot connect to 127.0.0.1" in err and "Traceback" not in err
    finally:
        if controller._thread is not None:  # type: ignore[attr-defined]
            controller.stop()


def test_email_without_mail_configured_is_refused(tmp_path: Path, db: Database,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "-c", str(_config(tmp_path)), "--email"]) == 1
    assert "notifications.email.enabled is false" in capsys.readouterr().err


# -- the CronJob as deployed -------------------------------------------------------------------------------
def _k8s(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((REPO / "deploy" / "k8s" / name).read_text()) if doc]


def test_the_report_cronjob_command_emails_the_managers(tmp_path: Path) -> None:
    (job,) = _k8s("50-report-cronjob.yaml")
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert env.get("AISLEWATCH__NOTIFICATIONS__EMAIL__ENABLED") == "true"
    chain_yaml = next(d for d in _k8s("10-config.yaml") if d["metadata"]["name"] == "aislewatch-chain")
    config = tmp_path / "etc" / "aislewatch.yaml"
    config.parent.mkdir()
    config.write_text(chain_yaml["data"]["aislewatch.yaml"])
    store = yaml.safe_load(config.read_text())["stores"][0]

    db = Database.from_url(f"sqlite:///{tmp_path}/aw.db")
    db.upgrade()
    zone = ZoneInfo(store["timezone"])
    yesterday_noon = datetime.combine(datetime.now(zone).date() - timedelta(days=1), datetime.min.time(),
                                      tzinfo=zone) + timedelta(hours=12)
    db.write_alerts([alert(store["id"], store["cameras"][0]["id"], yesterday_noon.astimezone(UTC))])
    db.close()

    inbox, port = _Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        # the Job's own arguments and environment; what an operator points at their own servers is replaced by
        # the test's: the database, and the relay's address (smtp.example.com in the file)
        run_env = {**os.environ, **env, "AISLEWATCH_CONFIG": str(config),
                   "AISLEWATCH__DATABASE__URL": f"sqlite:///{tmp_path}/aw.db",
                   "AISLEWATCH__NOTIFICATIONS__EMAIL__HOST": "127.0.0.1",
                   "AISLEWATCH__NOTIFICATIONS__EMAIL__PORT": str(port)}
        run_env.pop("AISLEWATCH_SECRETS_DIR", None)
        work = tmp_path / "var-lib-aislewatch"  # the image's working directory: relative paths land here
        work.mkdir()
        done = _run_cli(args, work, run_env)
    finally:
        controller.stop()
    assert done.returncode == 0, done.stderr
    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == store["manager_emails"]  # type: ignore[attr-defined]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[attr-defined]
    assert message["From"] == env["AISLEWATCH__NOTIFICATIONS__EMAIL__SENDER"]
    (attachment,) = message.iter_attachments()
    assert attachment.get_content_type() == "application/pdf"
    pdf = tmp_path / "received.pdf"
    pdf.write_bytes(attachment.get_content())
    text = _pdf_text(pdf)
    assert store["name"] in text and _alerts_raised(text) == 1


def _run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``aislewatch ARGS`` (the image's entry point) with this checkout's code."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "common.app.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
