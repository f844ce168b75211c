"""`ioc cameras discover`: ONVIF cameras on the network that are not in the registry yet."""

import argparse
import asyncio
import sys

from cli import context
from services import csvcells
from services.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cameras", help="ONVIF cameras", description="ONVIF camera tools.")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = s.add_parser(
        "discover",
        parents=[context.common()],
        help="find ONVIF cameras not yet in the registry",
        description="Send a WS-Discovery Probe (UDP multicast 239.255.255.250:3702, or unicast with "
        "--address) and list, as CSV, the ONVIF devices that answered and are not in the "
        "registry yet (matched on host, port and device service path).",
    )
    d.add_argument("--interface", metavar="ADDR", help="local IPv4 address to send the multicast probe from")
    d.add_argument(
        "--address", metavar="HOST[:PORT]", help="probe this address by unicast instead (port 3702)"
    )
    d.add_argument("--timeout", type=float, default=3.0, metavar="S", help="seconds to wait for answers (3)")
    d.add_argument("--all", action="store_true", help="list every device that answered, registered or not")
    d.set_defaults(func=run_discover)


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    try:
        return host, int(port) if port else 3702
    except ValueError as err:
        raise InvalidInput(f"--address {value!r}: expected HOST or HOST:PORT") from err


def run_discover(args: argparse.Namespace) -> int:
    from ingest.onvif.discovery import probe
    from services import registry
    from services.db import connect

    context.data_dir_arg(args.data_dir)
    known: set[tuple[str, int, str]] = set()
    if not args.all:
        s: context.IocSettings = context.settings()
        assert s.database_url
        with connect(s.database_url) as conn:
            for dev in registry.devices(conn, include_retired=True):
                if dev.onvif:
                    known.add((dev.onvif.host, dev.onvif.port, dev.onvif.path))
    address = _address(args.address) if args.address else None
    found = asyncio.run(probe(interface=args.interface, address=address, timeout_s=args.timeout))
    new = [f for f in found if f.location not in known]
    w = csvcells.writer(sys.stdout)
    w.writerow(["name", "host", "port", "path", "hardware", "xaddr", "endpoint"])
    for f in new:
        host, port, path = f.location or ("", "", "")
        w.writerow([f.name or "", host, port, path, f.hardware or "", f.xaddr or "", f.endpoint])
    print(f"{len(found)} ONVIF device(s) answered, {len(new)} not in the registry", file=sys.stderr)
    return 0
