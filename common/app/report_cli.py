"""``aislewatch report``: per-store PDFs for a chosen period, e-mailed now or on the schedule.

Every form exits non-zero when any store's report failed, and names the store and the reason on stderr, so
cron or a Kubernetes CronJob records the failure (a report that silently did not happen is the worst kind).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common.logs import setup_logging
from common.settings import Settings
from common.words import count

SettingsLoader = Callable[[argparse.Namespace], Settings]


def _period(text: str) -> Any:
    from reporting.periods import PeriodError, ReportPeriod

    try:
        return ReportPeriod.parse(text)
    except PeriodError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _days(text: str) -> int:
    """``--days``: a whole number of days, 1 to ``MAX_PERIOD_DAYS``."""
    from reporting.periods import MAX_PERIOD_DAYS

    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, got {text!r}") from None
    if not 1 <= days <= MAX_PERIOD_DAYS:
        raise argparse.ArgumentTypeError(f"a report covers 1 to {MAX_PERIOD_DAYS} days, got {days}")
    return days


def _fail(lines: list[str]) -> int:
    for line in lines:
        print(f"aislewatch: {line}", file=sys.stderr)
    return 1 if lines else 0


def cmd_report(args: argparse.Namespace, settings_of: SettingsLoader) -> int:
    from common.app.runtime import open_database
    from reporting.job import (
        ReportPeriod,
        ReportScheduler,
        StoreFailure,
        build_chain_report,
        generate_reports,
        run_reports,
    )

    settings = settings_of(args)
    setup_logging(settings.service.log_level, settings.service.log_json)
    period: ReportPeriod | None = args.period
    if args.schedule and (period is not None or args.email or args.chain):
        return _fail(["report --schedule runs every store and the chain on reporting.schedule_cron over "
                      "reporting.period_days; --period, --email and --chain do not apply to it"])
    mail = settings.notifications.email
    if args.email and not mail.enabled:
        return _fail(["report --email: notifications.email.enabled is false, so nothing can be sent "
                      "(set notifications.email in the config, or drop --email to only write the PDFs)"])
    if not settings.stores:
        print("aislewatch: warning: the configuration has no stores; no report to make", file=sys.stderr)
    db = open_database(settings)
    try:
        if args.schedule:
            from common.app.runtime import install_stop_signals

            stop = threading.Event()
            install_stop_signals(stop)
            ReportScheduler(settings, db, stop=stop).run()
            return 0
        now = datetime.now(UTC)
        if args.email:  # what a scheduled slot does: through the report_runs ledger, never a period twice
            problems: list[str] = []
            for run in run_reports(settings, db, now=now, period_days=args.days, period=period):
                print(f"{run.scope}\t{run.status}\t{run.pdf or ''}")
                if run.status in ("failed", "uncertain"):
                    problems.append(f"report {run.scope} {run.status}: {run.reason or 'see the log above'}")
                elif run.status == "rendered":
                    print(f"aislewatch: note: report {run.scope} written but not e-mailed: "
                          + ("no reporting.chain_recipients" if run.scope == "chain" else
                             f"store {run.scope} has no manager_emails"), file=sys.stderr)
                elif run.status == "skipped":
                    print(f"aislewatch: note: report {run.scope} for {run.start:%Y-%m-%d} .. {run.end:%Y-%m-%d} "
                          "was already made (report_runs); not sent again", file=sys.stderr)
            return _fail(problems)
        if args.chain:
            chain = build_chain_report(settings, db, now=now, period_days=args.days, period=period)
            print(chain.pdf)
            return _fail([f"chain summary: store {store} left out, its data could not be read (see the log above)"
                          for store in chain.data.failed])
        failures: list[StoreFailure] = []
        for path in generate_reports(settings, db, now=now, period_days=args.days, period=period,
                                     failures=failures):
            print(path)
        if failures:
            print(f"aislewatch: {count(len(failures), 'report')} of {count(len(settings.stores), 'store')} "
                  "failed", file=sys.stderr)
        return _fail([f"report for store {f.scope} failed: {f.reason}" for f in failures])
    finally:
        db.close()


def add_report_command(sub: Any, parents: list[argparse.ArgumentParser], settings_of: SettingsLoader) -> None:
    from reporting.periods import PERIOD_HELP

    report = sub.add_parser(
        "report", parents=parents,
        help="render per-store PDF reports (now, for a chosen period, or on the schedule)",
        description="Render each store's PDF report (charts beside it) under reporting.output_dir. Exits 1 "
        "when any store's report failed, naming the store and the reason.",
    )
    when = report.add_mutually_exclusive_group()
    when.add_argument("--period", type=_period, default=None, metavar="PERIOD",
                      help=f"what to cover, in each store's time zone: {PERIOD_HELP}; unset: the schedule's "
                      "whole past days (--days, else reporting.period_days), which never include today")
    when.add_argument("--days", type=_days, default=None,
                      help="whole past days to cover (unset: reporting.period_days)")
    report.add_argument("--schedule", action="store_true",
                        help="keep running and render (and e-mail) on reporting.schedule_cron")
    report.add_argument("--chain", action="store_true",
                        help="render the chain-wide summary ranking every store (for admins) instead")
    report.add_argument("--email", "--send", dest="email", action="store_true",
                        help="e-mail now, as a scheduled slot would: every store's report to its manager_emails "
                        "and the chain summary to reporting.chain_recipients, once per period (recorded in "
                        "report_runs)")
    report.set_defaults(func=lambda args: cmd_report(args, settings_of))
