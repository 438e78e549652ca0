"""Checks of single setting values that can be made before anything starts: time zones, cron expressions,
e-mail addresses, webhook URLs, host names.

Each check returns the value (normalised where that is harmless) or raises ValueError with the reason, so
pydantic reports it with the key path and the YAML line like any other setting (``common.settings``).  The
cron check uses the parser the report scheduler uses (croniter), so what passes here is what it runs.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

# A host name (RFC 1123 labels) or an IPv4 address; IPv6 literals are checked by urlsplit in URLs.
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# What an SMTP server accepts as an envelope address: local@domain, no spaces, no display name.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")


def check_timezone(name: str) -> str:
    """An IANA time zone the system's zoneinfo knows (``Europe/London``, ``UTC``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/London or UTC") from None
    return name


def check_cron(expression: str) -> str:
    """A cron expression the report scheduler (croniter) can run: 5 fields (minute hour day month weekday)."""
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ValueError(
            f"{expression!r} is not a cron expression: use five fields, minute hour day-of-month month "
            "day-of-week, e.g. '0 6 * * 1' for Mondays at 06:00"
        )
    return expression


def check_hostname(host: str) -> str:
    """A host name or an IP address, without a scheme, port or path (``smtp.example.com``, ``10.0.0.5``)."""
    if "://" in host:
        raise ValueError(f"{host!r} is a URL: give the host name alone (the port is its own setting)")
    if host.startswith("[") and host.endswith("]"):
        return host  # an IPv6 literal
    if ":" in host and host.count(":") >= 2:
        return host  # a bare IPv6 address
    labels = host.rstrip(".").split(".")
    if not host or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return host


def check_email(address: str) -> str:
    """An address an SMTP server takes: ``local@domain`` (no display name, no spaces)."""
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.match(local) or local.startswith(".") or local.endswith("."):
        raise ValueError(f"{address!r} is not an e-mail address (expected name@domain)")
    try:
        check_hostname(domain)
    except ValueError:
        raise ValueError(f"{address!r} is not an e-mail address: {domain!r} is not a domain") from None
    return address


def check_http_url(url: str) -> str:
    """An absolute http(s) URL with a host (and a valid port, when it names one)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    try:
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
    if not host:
        raise ValueError(f"{url!r} names no host")
    if any(ch.isspace() for ch in url):
        raise ValueError(f"{url!r} contains spaces")
    check_hostname(host if ":" not in host else f"[{host}]")
    return url


TimeZoneName = Annotated[str, AfterValidator(check_timezone)]
CronExpression = Annotated[str, AfterValidator(check_cron)]
EmailAddress = Annotated[str, AfterValidator(check_email)]
HttpUrl = Annotated[str, AfterValidator(check_http_url)]
HostName = Annotated[str, AfterValidator(check_hostname)]
