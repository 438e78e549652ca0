"""Help text conventions of the command line: every option's default shown, machine output as JSON Lines."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any


class DefaultsShownFormatter(argparse.HelpFormatter):
    """Appends "(default: …)" to an option's help unless it says its default already or has none to show
    (a flag, an unset value that the help explains, a suppressed one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or "%(default)" in text or not action.option_strings:
            return text
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._StoreConstAction):
            return text
        return f"{text} (default: %(default)s)"


def walk_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path (``("report",)``, ``("users", "add")`` …)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if child is not parser:
                    yield from walk_parsers(child, (*path, name))


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every parser of the tree :class:`DefaultsShownFormatter` (unless it chose a formatter itself)."""
    for _, each in walk_parsers(parser):
        if each.formatter_class is argparse.HelpFormatter:
            each.formatter_class = DefaultsShownFormatter
    return parser


def json_line(value: Any) -> str:
    """One compact JSON document on one line (JSON Lines: ``jq -c``, ``pandas.read_json(lines=True)``)."""
    return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)
