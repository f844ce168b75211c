"""`ioc simulate`: simulated devices for a registry file (MQTT devices and ONVIF cameras)."""

import argparse
import asyncio
import csv
import json
import logging
import signal
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli import context
from cli.embedded import free_port, port_open
from services import registry_file
from services.errors import ConfigError, InvalidInput
from services.models import Registry
from services.settings import IocSettings
from simulator import demo
from simulator.cameras import start_farms
from simulator.devices import Simulator
from simulator.probed import serve as serve_probed
from simulator.scenario import Scenario, pick

log = logging.getLogger("ioc.simulate")
DEMO_FILE = "demo-registry.yaml"
DEMO_META = "demo.json"
# the ports of the demo's vendor broker and polled devices (template port -> chosen port)
DEMO_PORTS = "demo-ports.json"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "simulate",
        parents=[context.common()],
        help="simulated devices for a registry file",
        description="Simulated devices: MQTT devices of the registry publish availability, status and "
        "events to the broker (IOC_MQTT_URL or the embedded one in the data dir); cameras "
        "whose ONVIF host is loopback answer ONVIF SOAP on their port. Faults (power cuts, a "
        "router taking its ấp down, a flapping link, a skewed clock) are chosen by --seed. "
        "With --demo, the demo communes are written to DATA_DIR/demo-registry.yaml "
        "(import it with `ioc devices import`; `ioc up --demo` does this for you).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", type=Path, help="registry file (.yaml or .csv)")
    src.add_argument("--demo", action="store_true", help="the demo communes (Thoại Sơn, Long Thành)")
    p.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="X times faster: heartbeats every heartbeat_s/X, faults X times as often (default 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same devices and faults")
    p.add_argument(
        "--credentials",
        type=Path,
        metavar="CSV",
        help="credentials.csv from `ioc mqtt-auth` (device_id,username,password)",
    )
    p.add_argument("--quiet-faults", action="store_true", help="no outages or other faults")
    # `ioc up` binds the demo cameras' port itself and hands the listening socket over.
    p.add_argument("--onvif-fd", type=int, help=argparse.SUPPRESS)
    # ... and the ports of the demo devices the IOC polls (HTTP, TCP), the same way.
    p.add_argument("--listen-fd", type=int, action="append", default=[], help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _read_meta(data_dir: Path) -> dict[str, Any]:
    meta = data_dir / DEMO_META
    try:
        saved = json.loads(meta.read_text()) if meta.exists() else {}
    except ValueError:
        return {}
    return saved if isinstance(saved, dict) else {}


def _saved_ports(data_dir: Path) -> dict[int, int]:
    """Template port -> the port the last run chose, for the demo's other loopback services."""
    try:
        ports = json.loads((data_dir / DEMO_PORTS).read_text())
    except (OSError, ValueError):
        return {}
    return {int(k): int(v) for k, v in ports.items()} if isinstance(ports, dict) else {}


def _write_meta(data_dir: Path, onvif_port: int, ports: dict[int, int]) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_META).write_text(json.dumps({"onvif_port": onvif_port}))
    (data_dir / DEMO_PORTS).write_text(json.dumps({str(k): v for k, v in sorted(ports.items())}))
    return demo.write(data_dir / DEMO_FILE, onvif_port, ports)


def demo_registry(data_dir: Path) -> tuple[Path, int]:
    """Render the demo registry into the data dir with the ports saved by `ioc up`."""
    saved = _read_meta(data_dir)
    port = saved.get("onvif_port")
    if port is None:
        port = demo.TEMPLATE_PORT if not port_open(demo.TEMPLATE_PORT) else free_port()
    ports = _saved_ports(data_dir)
    for template in (*demo.LISTEN_PORTS, demo.VENDOR_BROKER_PORT):
        if template not in ports:
            ports[template] = template if not port_open(template) else free_port()
    return _write_meta(data_dir, port, ports), port


def _listen(port: int, udp: bool = False) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        if not udp:
            sock.listen(4096)
    except OSError:
        sock.close()
        return None
    return sock


def _bind_one(saved: int | None, template: int, what: str, udp: bool = False) -> socket.socket:
    for port in (saved, template, 0):
        if port is not None and (sock := _listen(port, udp)) is not None:
            return sock
    raise InvalidInput(f"cannot bind a loopback port for {what}")


@dataclass
class DemoPorts:
    """The rendered demo registry and the listening sockets named in it (for `ioc up`)."""

    path: Path
    onvif: socket.socket
    # template port -> the bound socket of the device(s) the IOC polls there (HTTP, TCP)
    listen: dict[int, socket.socket] = field(default_factory=dict)

    def close(self) -> None:
        for sock in (self.onvif, *self.listen.values()):
            sock.close()


def reserve_demo(data_dir: Path, vendor_broker_port: int | None = None) -> DemoPorts:
    """Bind the demo's loopback ports, then render the registry with them (for `ioc up`).

    Every port is bound before it is written down and the bound socket is handed to the
    simulator (`--onvif-fd`, `--listen-fd`): a port that was merely free when chosen was once
    taken by another program before the simulator came to bind it. Saved ports are kept across
    runs when they can be bound, so the imported registry does not change. The vendor broker's
    port is the one its Mosquitto listens on (`ioc up` starts it first).
    """
    saved = _read_meta(data_dir)
    saved_ports = _saved_ports(data_dir)
    onvif = _bind_one(saved.get("onvif_port"), demo.TEMPLATE_PORT, "the demo cameras")
    listen: dict[int, socket.socket] = {}
    try:
        for template in demo.LISTEN_PORTS:
            listen[template] = _bind_one(
                saved_ports.get(template), template, "the demo's polled devices", template in demo.UDP_PORTS
            )
    except InvalidInput:
        DemoPorts(data_dir, onvif, listen).close()
        raise
    ports = {t: int(s.getsockname()[1]) for t, s in listen.items()}
    ports[demo.VENDOR_BROKER_PORT] = vendor_broker_port or saved_ports.get(
        demo.VENDOR_BROKER_PORT, demo.VENDOR_BROKER_PORT
    )
    path = _write_meta(data_dir, int(onvif.getsockname()[1]), ports)
    return DemoPorts(path, onvif, listen)


def reserve_demo_port(data_dir: Path) -> tuple[Path, socket.socket]:
    """The demo registry and its cameras' bound socket (`reserve_demo`, without the others)."""
    d = reserve_demo(data_dir)
    for sock in d.listen.values():
        sock.close()
    return d.path, d.onvif


def read_credentials(path: Path) -> dict[str, tuple[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise InvalidInput(f"cannot read {path}: {err}") from err
    return {r["device_id"]: (r["username"], r["password"]) for r in rows if r.get("device_id")}


async def simulate(
    reg: Registry,
    mqtt_url: str,
    scenario: Scenario,
    *,
    rate_scale: float,
    seed: int,
    credentials: dict[str, tuple[str, str]],
    tz: str,
    sockets: dict[int, socket.socket] | None = None,
) -> None:
    sim = Simulator(
        reg, mqtt_url, rate_scale=rate_scale, seed=seed, scenario=scenario, credentials=credentials, tz=tz
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sim.stop)
    async with AsyncExitStack() as stack:
        # a camera below a router that lost power stops answering with it
        await start_farms(stack, reg, scenario, sockets=sockets, off_air=sim.off_air)
        # devices the IOC polls (HTTP, TCP) answer while they and their routers are on the air
        await serve_probed(stack, reg, sim.off_air, sim.readings, sim.stopping, sockets=sockets)
        await sim.run()
    log.info(
        "stopped: %d statuses, %d events, %d connections",
        sim.stats.statuses,
        sim.stats.events,
        sim.stats.connects,
    )


def run(args: argparse.Namespace) -> int:
    context.setup_logging(args.verbose)
    context.data_dir_arg(args.data_dir)
    s: IocSettings = context.settings(need_db=False, need_mqtt=True)
    assert s.mqtt_url
    if args.rate_scale <= 0:
        raise ConfigError("--rate-scale must be > 0")
    if args.demo:
        path, port = demo_registry(s.data_dir)
        log.info(
            "demo registry in %s (cameras on 127.0.0.1:%d); import it with `ioc devices import %s`",
            path,
            port,
            path,
        )
        reg = registry_file.read(path)
        scenario = demo.SCENARIO
    else:
        reg = registry_file.read(args.file)
        scenario = pick(reg, args.seed)
    if args.quiet_faults:
        scenario = Scenario.quiet()
    creds = read_credentials(args.credentials) if args.credentials else {}
    sockets = {}
    if args.onvif_fd is not None:
        sock = socket.socket(fileno=args.onvif_fd)
        sockets[int(sock.getsockname()[1])] = sock
    for fd in args.listen_fd:
        sock = socket.socket(fileno=fd)
        sockets[int(sock.getsockname()[1])] = sock
    asyncio.run(
        simulate(
            reg,
            s.mqtt_url,
            scenario,
            rate_scale=args.rate_scale,
            seed=args.seed,
            credentials=creds,
            tz=s.tz,
            sockets=sockets,
        )
    )
    return 0
