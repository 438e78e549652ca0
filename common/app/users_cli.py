"""``aislewatch users ...``: security-desk accounts and API tokens from the command line.

Passwords are read from a prompt (asked twice) or, with ``--password-stdin``, from one line of standard input;
never from the command line, where ``ps`` and shell history would show them.  They are never printed or logged.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from common.app.help import json_line
from common.settings import Settings

if TYPE_CHECKING:
    from alerts.desk.accounts import Accounts

ACTOR = "cli"  # how the audit log names changes made here


class _Refused(Exception):
    """A user error of these commands: printed as one line, exit 2."""


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise _Refused("no password on standard input")
        return password
    try:
        # Without a terminal getpass warns, then reads standard input with echo on: refuse instead
        with warnings.catch_warnings():
            warnings.simplefilter("error", getpass.GetPassWarning)
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Password again: ")
    except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the prompt: nothing was typed
        raise _Refused("no password given") from None
    except getpass.GetPassWarning:
        raise _Refused("no terminal to type the password at: pipe it with --password-stdin") from None
    if again != password:
        raise _Refused("the two passwords differ")
    return password


class _NoPasswordOnTheCommandLine(argparse.Action):
    """``--password X`` (or an abbreviation of --password-stdin with a value) is refused without echoing X:
    a password on the command line ends up in shell history and in every `ps` listing."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.exit(2, "aislewatch: passwords are never taken on the command line (shell history, ps): "
                       "type it at the prompt, or pipe it with --password-stdin\n")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


SettingsLoader = Callable[[argparse.Namespace], Settings]
Action = Callable[["Accounts", argparse.Namespace], None]


def _run(args: argparse.Namespace, settings_of: SettingsLoader, action: Action) -> int:
    """Open the database named by the settings (migrated, stores synced from ``stores:``) and run ``action``."""
    from alerts.desk.accounts import AccountError, Accounts
    from common.app.runtime import open_database

    settings = settings_of(args)
    db = open_database(settings)
    try:
        action(Accounts.from_settings(db, settings), args)
        return 0
    except (AccountError, _Refused) as exc:
        print(f"aislewatch: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()


def _add(accounts: Accounts, args: argparse.Namespace) -> None:
    from alerts.desk.accounts import normalize_username

    normalize_username(args.name)  # a bad name is refused before the password is asked
    info = accounts.add_user(args.name, _read_password(args), args.role, args.store or (), actor=ACTOR)
    print(f"added user {info.username}, role {info.role}" + (f", stores: {', '.join(info.stores)}" if info.stores else ""))


def _list(accounts: Accounts, args: argparse.Namespace) -> None:
    users = accounts.list_users()
    if args.json:
        for u in users:  # JSON Lines: one user per line
            print(json_line({"id": u.id, "username": u.username, "role": u.role.value, "stores": list(u.stores),
                             "disabled": u.disabled, "created_at": u.created_at.isoformat()}))
        return
    if not users:  # else an empty table, and nothing to tell a wrong (or missing) -c from an empty desk
        where = accounts.db.engine.url.render_as_string(hide_password=True)
        print(f"aislewatch: no users in {where}: add the first with `aislewatch users add` "
              "(or is this the wrong config? -c names it)", file=sys.stderr)
        return
    _table(("USERNAME", "ROLE", "STORES", "DISABLED", "CREATED"), [
        (u.username, u.role.value, ",".join(u.stores) or "-", "yes" if u.disabled else "no", _when(u.created_at))
        for u in users
    ])


def _disable(accounts: Accounts, args: argparse.Namespace) -> None:
    accounts.disable_user(args.name, actor=ACTOR)
    print(f"disabled {args.name.strip().lower()}: their sessions and API tokens are revoked")


def _enable(accounts: Accounts, args: argparse.Namespace) -> None:
    accounts.enable_user(args.name, actor=ACTOR)
    print(f"enabled {args.name.strip().lower()}")


def _set_password(accounts: Accounts, args: argparse.Namespace) -> None:
    name = accounts.user(args.name).username  # an unknown user is refused before the password is asked
    accounts.set_password(name, _read_password(args), actor=ACTOR)
    print(f"password of {name} changed: their sessions are signed out")


def _token(accounts: Accounts, args: argparse.Namespace) -> None:
    token = accounts.create_token(args.name, args.token_name, actor=ACTOR)
    print(token)  # alone on stdout, so `$(aislewatch users token ...)` captures just the token
    print("This token will not be shown again: store it now (only its hash is kept).", file=sys.stderr)


def _tokens(accounts: Accounts, args: argparse.Namespace) -> None:
    tokens = accounts.list_tokens(args.name)
    _table(("ID", "USER", "NAME", "CREATED", "LAST USED", "REVOKED"), [
        (str(t.id), t.username, t.name, _when(t.created_at), _when(t.last_used_at), _when(t.revoked_at))
        for t in tokens
    ])


def _revoke_token(accounts: Accounts, args: argparse.Namespace) -> None:
    accounts.revoke_token(args.token_id, actor=ACTOR)
    print(f"token {args.token_id} revoked")


def add_users_commands(sub: Any, config_option: argparse.ArgumentParser, settings_of: SettingsLoader) -> None:
    """Register ``users`` and its actions on the top-level subparsers ``sub``; ``settings_of`` loads the
    settings as the other commands do (``-c FILE``, else ``$AISLEWATCH_CONFIG``)."""

    def _command(action: Action) -> Callable[[argparse.Namespace], int]:
        return lambda args: _run(args, settings_of, action)

    users = sub.add_parser("users", help="security-desk users and API tokens").add_subparsers(
        dest="action", required=True
    )
    common = [config_option]
    password_stdin = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    password_stdin.add_argument("--password-stdin", action="store_true",
                                help="read the password from one line of standard input instead of a prompt")
    password_stdin.add_argument("--password", "--pass", "--pw", nargs="?", action=_NoPasswordOnTheCommandLine,
                                help=argparse.SUPPRESS)

    add = users.add_parser("add", parents=[*common, password_stdin], help="add a user (password prompted)",
                           allow_abbrev=False)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["guard", "manager", "admin"],
                     help="guard: the desk of their stores; manager: also reports and verdict edits; admin: all")
    add.add_argument("--store", action="append", metavar="ID",
                     help="a store the user works for (repeat for several; from the config's stores:)")
    add.set_defaults(func=_command(_add))

    listing = users.add_parser("list", parents=common, help="list users")
    listing.add_argument("--json", action="store_true", help="print JSON Lines: one object per user")
    listing.set_defaults(func=_command(_list))

    disable = users.add_parser("disable", parents=common, help="disable a user and revoke their sessions and tokens")
    disable.add_argument("name")
    disable.set_defaults(func=_command(_disable))
    enable = users.add_parser("enable", parents=common, help="enable a disabled user")
    enable.add_argument("name")
    enable.set_defaults(func=_command(_enable))

    set_password = users.add_parser("set-password", parents=[*common, password_stdin], allow_abbrev=False,
                                    help="set a user's password (signs out their sessions)")
    set_password.add_argument("name")
    set_password.set_defaults(func=_command(_set_password))

    token = users.add_parser("token", parents=common, help="create an API token for a user (shown once)")
    token.add_argument("name")
    token.add_argument("--name", dest="token_name", required=True, metavar="LABEL", help="what the token is for")
    token.set_defaults(func=_command(_token))

    tokens = users.add_parser("tokens", parents=common, help="list API tokens (of one user, or all)")
    tokens.add_argument("name", nargs="?", default=None)
    tokens.set_defaults(func=_command(_tokens))

    revoke = users.add_parser("revoke-token", parents=common, help="revoke an API token by its id")
    revoke.add_argument("token_id", type=int, metavar="ID")
    revoke.set_defaults(func=_command(_revoke_token))
