"""The command line explains itself: every option has help text and shows its default; --version works."""

from __future__ import annotations

import argparse

import pytest

from common.app.cli import build_parser, main
from common.app.help import DefaultsShownFormatter, show_defaults, walk_parsers


def _options() -> list[tuple[str, argparse.Action, argparse.ArgumentParser]]:
    found = []
    for path, parser in walk_parsers(show_defaults(build_parser())):
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                found.append((" ".join(("aislewatch", *path)), action, parser))
    return found


def test_the_walk_reaches_every_subcommand() -> None:
    paths = {path for path, _ in walk_parsers(build_parser())}
    assert {("report",), ("users", "add"), ("model", "compare"), ("synth", "stream"), ("classify",)} <= paths


def test_every_option_has_help_text() -> None:
    # argparse.SUPPRESS is a deliberate hiding (``users add --password`` exists only to refuse a password
    # given on the command line), not a forgotten help text
    missing = [f"{command} {'/'.join(action.option_strings)}" for command, action, _ in _options()
               if action.help != argparse.SUPPRESS and not (action.help or "").strip()]
    assert missing == [], f"options without help: {missing}"


def test_every_option_with_a_default_shows_it() -> None:
    hidden = []
    for command, action, parser in _options():
        if action.default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._VersionAction):
            continue
        shown = parser._get_formatter()._expand_help(action) if action.help else ""
        expanded = DefaultsShownFormatter("x")._get_help_string(action) or ""
        if "default" not in shown.lower() and "default" not in expanded.lower():
            hidden.append(f"{command} {'/'.join(action.option_strings)} (default {action.default!r})")
    assert hidden == [], f"defaults not shown: {hidden}"


def test_top_level_help_says_what_aislewatch_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "shoplifting" in out and "The ``aislewatch`` command line" not in out
    assert "--log-format" in out and "--verbose" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    out = capsys.readouterr().out.strip()
    assert exit_.value.code == 0 and out.startswith("aislewatch ") and len(out.split()) >= 2
    assert out.split()[1][0].isdigit()


def test_a_default_appears_in_the_rendered_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    assert "(default: 4.0)" in " ".join(capsys.readouterr().out.split())
