"""`ioc users add`: operators' accounts."""

import argparse
import sys

from cli import context
from services import auth
from services.db import connect
from services.errors import InvalidInput
from services.models import ROLES


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("users", help="operators' accounts", description="Manage operators' accounts.")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = s.add_parser(
        "add",
        parents=[context.common()],
        help="add a user; the password is read from stdin (one line)",
        description="Add a user. The password is read from standard input (one line).",
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--communes", help="comma-separated commune ids this user may see (default: all)")
    add.set_defaults(func=run_add)
    pw = s.add_parser(
        "passwd",
        parents=[context.common()],
        help="set a user's password from stdin",
        description="Set a password (stdin).",
    )
    pw.add_argument("name")
    pw.set_defaults(func=run_passwd)


def _password() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise InvalidInput("no password on stdin (give it as one line)")
    return line


def run_add(args: argparse.Namespace) -> int:
    context.data_dir_arg(args.data_dir)
    s = context.settings()
    assert s.database_url
    communes = [c.strip() for c in args.communes.split(",") if c.strip()] if args.communes else None
    with connect(s.database_url) as conn:
        auth.add_user(conn, args.name, _password(), args.role, communes)
    print(f"added {args.role} {args.name}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    context.data_dir_arg(args.data_dir)
    s = context.settings()
    assert s.database_url
    with connect(s.database_url) as conn:
        auth.set_password(conn, args.name, _password())
    print(f"password of {args.name} changed")
    return 0
