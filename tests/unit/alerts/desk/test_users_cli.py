"""``aislewatch users``: accounts from the command line, passwords never on argv nor in any output."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from alerts.desk.accounts import Accounts
from common.app.cli import main
from common.db import Database

PASSWORD = "s3cret-desk-password"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "aislewatch.yaml"
    path.write_text(
        f"database:\n  url: sqlite:///{tmp_path / 'cli.db'}\n"
        "stores:\n  - id: store-1\n    name: High Street\n  - id: store-2\n"
    )
    return path


@pytest.fixture(autouse=True)
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def run(config: Path, monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["users", *argv, "-c", str(config)])


def accounts(tmp_path: Path) -> Accounts:
    return Accounts(Database.from_url(f"sqlite:///{tmp_path / 'cli.db'}"))


def assert_never_shown(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, *secrets: str) -> str:
    out, err = capsys.readouterr()
    for secret in secrets:
        assert secret not in out and secret not in err and secret not in caplog.text
    return out + err


def test_list_of_an_empty_desk_names_its_database(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty table alone does not tell a wrong (or missing) -c from a desk with no users yet."""
    assert run(config, monkeypatch, "list") == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert f"no users in sqlite:///{tmp_path / 'cli.db'}" in err and "aislewatch users add" in err


def test_add_list_and_sign_in(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    every_log: pytest.LogCaptureFixture,
) -> None:
    assert run(config, monkeypatch, "add", "Gina", "--role", "guard", "--store", "store-1", "--password-stdin",
               stdin=PASSWORD + "\n") == 0
    assert run(config, monkeypatch, "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD) == 0
    assert run(config, monkeypatch, "list") == 0
    out = assert_never_shown(capsys, every_log, PASSWORD)
    assert "added user gina, role guard, stores: store-1" in out
    lines = [line.split() for line in out.splitlines() if line.startswith(("USERNAME", "gina", "root"))]
    assert lines[0] == ["USERNAME", "ROLE", "STORES", "DISABLED", "CREATED"]
    assert lines[1][:4] == ["gina", "guard", "store-1", "no"]
    assert lines[2][:4] == ["root", "admin", "-", "no"]
    assert run(config, monkeypatch, "list", "--json") == 0
    printed = capsys.readouterr().out.splitlines()  # JSON Lines: one compact object per user
    listed = [json.loads(line) for line in printed]
    assert len(printed) == 2
    assert [(u["username"], u["role"], u["stores"]) for u in listed] == [
        ("gina", "guard", ["store-1"]), ("root", "admin", [])]
    assert accounts(tmp_path).authenticate("gina", PASSWORD) is not None


@pytest.mark.parametrize("argv, stdin, reason", [
    (["add", "gina", "--role", "guard", "--store", "store-9"], PASSWORD, "unknown store id(s): store-9"),
    (["add", "gina", "--role", "guard"], PASSWORD, "needs at least one store"),
    (["add", "gina", "--role", "manager", "--store", "store-1"], "Zq9#xw", "too short"),
    (["add", "gina", "--role", "guard", "--store", "store-1"], "", "no password on standard input"),
    (["disable", "ghost"], "", "unknown user 'ghost'"),
    (["set-password", "ghost"], PASSWORD, "unknown user 'ghost'"),
    (["token", "ghost", "--name", "x"], "", "unknown user 'ghost'"),
    (["revoke-token", "7"], "", "unknown token id 7"),
])
def test_refusals_are_one_line_and_exit_2(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    every_log: pytest.LogCaptureFixture, argv: list[str], stdin: str, reason: str,
) -> None:
    password_option = ["--password-stdin"] if argv[0] in ("add", "set-password") else []
    assert run(config, monkeypatch, *argv, *password_option, stdin=stdin) == 2
    out, err = capsys.readouterr()
    assert err == f"aislewatch: {err.removeprefix('aislewatch: ')}" and err.count("\n") == 1
    assert reason in err
    if stdin:
        assert stdin not in out + err + every_log.text


def test_a_duplicate_user_is_refused(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("add", "gina", "--role", "guard", "--store", "store-1", "--password-stdin")
    assert run(config, monkeypatch, *argv, stdin=PASSWORD) == 0
    assert run(config, monkeypatch, *argv, stdin=PASSWORD) == 2
    assert "user 'gina' exists already" in capsys.readouterr().err


def test_the_prompt_asks_twice(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert run(config, monkeypatch, "add", "gina", "--role", "guard", "--store", "store-1") == 2
    assert "the two passwords differ" in capsys.readouterr().err
    answers = iter([PASSWORD, PASSWORD])
    assert run(config, monkeypatch, "add", "gina", "--role", "guard", "--store", "store-1") == 0
    assert accounts(tmp_path).authenticate("gina", PASSWORD) is not None


def test_password_is_never_accepted_on_argv(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        run(config, monkeypatch, "add", "gina", "--role", "guard", "--store", "store-1", "--password", PASSWORD)


def test_disable_enable_and_set_password(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    every_log: pytest.LogCaptureFixture,
) -> None:
    assert run(config, monkeypatch, "add", "mo", "--role", "manager", "--store", "store-1", "--store", "store-2",
               "--password-stdin", stdin=PASSWORD) == 0
    assert run(config, monkeypatch, "disable", "MO") == 0
    assert accounts(tmp_path).authenticate("mo", PASSWORD) is None
    assert run(config, monkeypatch, "enable", "mo") == 0
    new_password = "another-long-password"
    assert run(config, monkeypatch, "set-password", "mo", "--password-stdin", stdin=new_password + "\n") == 0
    out = assert_never_shown(capsys, every_log, PASSWORD, new_password)
    assert "disabled mo" in out and "enabled mo" in out and "password of mo changed" in out
    assert accounts(tmp_path).authenticate("mo", new_password) is not None


def test_tokens_are_shown_once_listed_and_revoked(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    every_log: pytest.LogCaptureFixture,
) -> None:
    assert run(config, monkeypatch, "add", "gina", "--role", "guard", "--store", "store-1", "--password-stdin",
               stdin=PASSWORD) == 0
    capsys.readouterr()
    assert run(config, monkeypatch, "token", "gina", "--name", "door sensor") == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("aw_") and "\n" not in token
    assert "will not be shown again" in err
    principal = accounts(tmp_path).token_principal(token)
    assert principal is not None and principal.username == "gina"

    assert run(config, monkeypatch, "tokens") == 0
    assert run(config, monkeypatch, "tokens", "gina") == 0
    listed = capsys.readouterr().out
    assert token not in listed and token not in every_log.text
    rows = [line.split() for line in listed.splitlines() if line.startswith("1 ")]
    assert len(rows) == 2 and rows[0][:4] == ["1", "gina", "door", "sensor"] and rows[0][-1] == "-"

    assert run(config, monkeypatch, "revoke-token", "1") == 0
    assert accounts(tmp_path).token_principal(token) is None
    assert run(config, monkeypatch, "tokens") == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[-1] != "-"  # revoked: a time, not "-"


def test_a_password_on_the_command_line_is_refused_without_being_echoed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from common.app.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["users", "add", "bob", "--role", "admin", "--password", "hunter2-hunter2"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "never taken on the command line" in err and "hunter2" not in err


def test_ctrl_d_at_the_password_prompt_is_a_clean_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    import getpass

    from common.app import users_cli

    def eof(_prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", eof)
    with pytest.raises(users_cli._Refused, match="no password given"):
        users_cli._read_password(argparse.Namespace(password_stdin=False))


def test_without_a_terminal_the_prompt_refuses_rather_than_read_an_echoed_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getpass's own fallback (no /dev/tty: a cron job, a pipe, a container without -t) warns and then reads
    standard input with echo on; the command says to use --password-stdin and reads nothing."""
    import argparse
    import getpass
    import io

    from common.app import users_cli

    stdin = io.StringIO(PASSWORD + "\n")
    monkeypatch.setattr("sys.stdin", stdin)
    monkeypatch.setattr(getpass, "getpass", getpass.fallback_getpass)
    with pytest.raises(users_cli._Refused, match=r"no terminal to type the password at.*--password-stdin"):
        users_cli._read_password(argparse.Namespace(password_stdin=False))
    assert stdin.read() == PASSWORD + "\n"  # nothing was read from it
