"""Credential redaction: the one rule for what of a URL or message may be shown in logs, errors and pages."""

from __future__ import annotations

import re

# Everything between "scheme://" and the last "@" of the authority: "user:password@", ":password@" or "user@".
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]*@")
_SECRET_PARAMETER = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)=([^&\s]+)")


def redact(text: str) -> str:
    """``text`` with credentials in URLs (``user:password@``) and ``password=...``-style parameters masked."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    return _SECRET_PARAMETER.sub(r"\1=***", text)
