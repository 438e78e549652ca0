"""Logging set-up, with camera credentials scrubbed from every message."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from common.redaction import redact


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data)


_overrides: dict[str, bool | None] = {"verbose": False, "json_lines": None}
"""The command line's ``--verbose`` and ``--log-format``: they win over what each command asks for."""

NOISY_LOGGERS = ("kafka", "matplotlib", "PIL", "alembic", "tensorflow", "absl")
"""Kept at WARNING (or the chosen level, when higher) unless verbose: library chatter, not our events."""


def set_log_overrides(*, verbose: bool, json_lines: bool | None) -> None:
    """Process-wide overrides for every later :func:`setup_logging` (set once, by the CLI's ``main``)."""
    _overrides.update(verbose=verbose, json_lines=json_lines)


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """One stderr handler on the root logger: JSON Lines or text, credentials scrubbed.

    With ``--verbose`` the level is at least INFO and the libraries' loggers are not quieted; with
    ``--log-format`` that format is used whatever the command or the settings ask for."""
    verbose = bool(_overrides["verbose"])
    if _overrides["json_lines"] is not None:
        json_lines = bool(_overrides["json_lines"])
    if verbose and logging.getLevelName(level) > logging.INFO:
        level = "INFO"
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.NOTSET if verbose else max(logging.WARNING,
                                                                              logging.getLevelName(level)))
