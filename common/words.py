"""Counts in words: "1 incident", "2 incidents" (never "1 incidents")."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number it takes (``plural`` for irregular nouns, else ``singular + "s"``)."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"
