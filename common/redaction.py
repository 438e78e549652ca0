"""Credential redaction: the one rule for what of a URL or message may be shown in logs, errors and pages.

Two layers.  Secrets this process knows (camera credentials filled in from the environment, the
database password) are registered and masked wherever they appear, whatever characters they hold.  And
any URL's user information is masked up to the last ``@`` of the URL, so a password holding ``@`` or ``/``
that nobody registered still does not show.
"""

from __future__ import annotations

import re
import threading

# "scheme://" then everything up to the last "@" of the URL (URLs end at white space).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)\S*@")
_SECRET_PARAMETER = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)=([^&\s]+)")
_MIN_SECRET_LENGTH = 3  # shorter values would mask ordinary words

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask ``value`` (and its URL-encoded form) in everything ``redact`` cleans from now on."""
    from urllib.parse import quote

    if len(value) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets.update({value, quote(value, safe="")})


def redact(text: str) -> str:
    """``text`` with registered secrets, credentials in URLs and ``password=...``-style parameters masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    return _SECRET_PARAMETER.sub(r"\1=***", text)
