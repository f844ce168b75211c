"""`ioc keys create|list|revoke`: API keys for the province, a neighbouring commune or another partner."""

import argparse
import sys
from datetime import UTC, datetime

from cli import context
from services import csvcells, keys
from services.db import connect
from services.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "keys",
        help="API keys for data sharing",
        description="API keys for the province, a neighbouring commune or another partner.",
    )
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = s.add_parser(
        "create",
        parents=[context.common()],
        help="create a key (printed once, on the last line)",
        description="Create an API key. The key is printed once, on the last line of the output; "
        "only its hash is stored, so it cannot be shown again.",
    )
    c.add_argument(
        "--name", required=True, help="who the key is for, e.g. 'Sở Khoa học và Công nghệ tỉnh An Giang'"
    )
    scope = c.add_mutually_exclusive_group(required=True)
    scope.add_argument("--communes", help="comma-separated commune ids the key may read")
    scope.add_argument("--all-communes", action="store_true", help="the key may read every commune")
    c.add_argument("--kinds", help="comma-separated device kinds the key may read (default: all)")
    c.add_argument(
        "--rate",
        default=f"{keys.DEFAULT_RATE_PER_MIN}/min",
        help="calls allowed per minute, counted across all gateways (default %(default)s)",
    )
    c.add_argument(
        "--expires",
        help="DATE (YYYY-MM-DD, the key stops at the start of that day, IOC_TZ) or an ISO 8601 time",
    )
    c.set_defaults(func=run_create)
    ls = s.add_parser(
        "list",
        parents=[context.common()],
        help="list keys (never the secrets)",
        description="List API keys as CSV; secrets are never shown.",
    )
    ls.set_defaults(func=run_list)
    rv = s.add_parser(
        "revoke",
        parents=[context.common()],
        help="revoke a key by its id",
        description="Revoke a key: it stops working at once on every gateway.",
    )
    rv.add_argument("id", type=int)
    rv.set_defaults(func=run_revoke)


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise InvalidInput(f"empty list {text!r}")
    return items


def _url(args: argparse.Namespace) -> tuple[str, context.IocSettings]:
    context.data_dir_arg(args.data_dir)
    s = context.settings()
    assert s.database_url
    return s.database_url, s


def run_create(args: argparse.Namespace) -> int:
    url, s = _url(args)
    communes = None if args.all_communes else _split(args.communes)
    expires = keys.parse_expiry(args.expires, s.tz) if args.expires else None
    with connect(url) as conn:
        key, secret = keys.create(
            conn, args.name, communes, _split(args.kinds), keys.parse_rate(args.rate), expires
        )
    scope = ",".join(key.communes) if key.communes is not None else "all communes"
    print(
        f"created key {key.id} ({key.name}) for {scope}"
        + (f", kinds {','.join(key.kinds)}" if key.kinds else "")
        + f", {key.rate_per_min}/min"
        + (f", expires {key.expires_at.isoformat()}" if key.expires_at else "")
    )
    print("store it now: it is shown only once")
    print(secret)
    return 0


def run_list(args: argparse.Namespace) -> int:
    url, _ = _url(args)
    with connect(url) as conn:
        rows = keys.list_keys(conn)
    w = csvcells.writer(sys.stdout)
    w.writerow(
        ["id", "name", "prefix", "communes", "kinds", "rate_per_min", "expires_at", "created_at", "status"]
    )
    for k in rows:
        expired = k.expires_at is not None and k.expires_at <= datetime.now(UTC)
        status = "revoked" if k.revoked_at else "expired" if expired else "active"
        w.writerow(
            [
                k.id,
                k.name,
                k.prefix,
                ",".join(k.communes) if k.communes is not None else "*",
                ",".join(k.kinds) if k.kinds is not None else "*",
                k.rate_per_min,
                k.expires_at.isoformat() if k.expires_at else "",
                k.created_at.isoformat(),
                status,
            ]
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    url, _ = _url(args)
    with connect(url) as conn:
        key = keys.revoke(conn, args.id)
    print(f"revoked key {key.id} ({key.name})")
    return 0
