"""`ioc devices import|list|retire`: the device registry."""

import argparse
import sys
from pathlib import Path

from cli import context
from services import csvcells, registry, registry_file
from services.db import connect


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("devices", help="the device registry", description="Import, list and retire devices.")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = s.add_parser(
        "import",
        parents=[context.common()],
        help="upsert devices from a YAML or CSV file",
        description="Upsert communes, villages and devices; history is never deleted. "
        "A file with any bad row is rejected whole, with every error listed.",
    )
    imp.add_argument("file", type=Path)
    imp.set_defaults(func=run_import)
    ls = s.add_parser(
        "list", parents=[context.common()], help="list devices", description="List registered devices as CSV."
    )
    ls.add_argument("--all", action="store_true", help="include retired devices")
    ls.set_defaults(func=run_list)
    ret = s.add_parser(
        "retire",
        parents=[context.common()],
        help="retire a device (keeps its history)",
        description="Retire a device: it keeps its history and leaves state, alerts and sharing.",
    )
    ret.add_argument("id")
    ret.set_defaults(func=run_retire)


def _url(args: argparse.Namespace) -> tuple[str, context.IocSettings]:
    context.data_dir_arg(args.data_dir)
    s = context.settings()
    assert s.database_url
    return s.database_url, s


def run_import(args: argparse.Namespace) -> int:
    url, s = _url(args)
    reg = registry_file.read(args.file)
    with connect(url) as conn:
        r = registry.import_registry(
            conn, reg, context.vault(s), names_authoritative=args.file.suffix.lower() != ".csv"
        )
    print(
        f"imported {args.file}: {r.communes} commune(s), {r.villages} village(s), "
        f"{r.devices_added} device(s) added, {r.devices_updated} updated"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    url, _ = _url(args)
    with connect(url) as conn:
        devs = registry.devices(conn, include_retired=args.all)
    w = csvcells.writer(sys.stdout)
    w.writerow(["id", "commune", "village", "kind", "name", "parent", "retired_at"])
    for d in devs:
        w.writerow(
            [
                d.id,
                d.commune_id,
                d.village_id or "",
                d.kind,
                d.name or "",
                d.parent_id or "",
                d.retired_at.isoformat() if d.retired_at else "",
            ]
        )
    return 0


def run_retire(args: argparse.Namespace) -> int:
    url, _ = _url(args)
    with connect(url) as conn:
        registry.retire(conn, args.id)
    print(f"retired {args.id}")
    return 0
