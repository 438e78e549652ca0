"""A database the settings name but that cannot be used, as a configuration error (one line, exit 2).

``open_database`` runs where a command or worker starts.  By then every outage that waiting can cure has
been retried (``Database.retrying``): what still fails is a mistake in ``database.url`` or what it points
at, and the operator needs the key, the URL (credentials masked) and the reason, not a traceback.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

from common.redaction import redact
from common.settings import ConfigError, Settings

DATABASE_MISTAKES: tuple[type[BaseException], ...] = (SQLAlchemyError, ImportError, OSError)
"""What opening the database raises for a mistake: SQLAlchemy's errors (a file that is not a database, a
refused login, an unknown dialect), ImportError (the dialect's driver is not installed), OSError (the
SQLite file's folder cannot be made)."""


def database_reason(exc: BaseException) -> str:
    """Why the database could not be used, in one line, from what the driver or SQLAlchemy said."""
    if isinstance(exc, ImportError):
        missing = exc.name or str(exc)
        return f"its driver is not installed (no Python module {missing!r}; install it or pick another dialect)"
    if isinstance(exc, NoSuchModuleError):
        return f"unknown dialect or driver ({exc})"
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
    return str(exc).split("\n(Background on this error", 1)[0]


def database_config_error(settings: Settings, exc: BaseException, source: str = "") -> ConfigError:
    """ConfigError naming ``database.url`` (redacted) and the reason; ``source`` as ConfigError's."""
    reason = " ".join(database_reason(exc).split())
    return ConfigError(source, [redact(f"database.url ({settings.database.url}): cannot be used: {reason}")])
