"""`ioc migrate`: apply database migrations."""

import argparse

from cli import context
from services.migrate import migrate


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "migrate",
        parents=[context.common()],
        help="apply database migrations",
        description="Apply missing migrations.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    context.data_dir_arg(args.data_dir)
    s = context.settings()
    assert s.database_url
    applied = migrate(s.database_url)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0
