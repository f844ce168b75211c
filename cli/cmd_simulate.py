"""`ioc simulate`: simulated devices for a registry file (MQTT devices and ONVIF cameras)."""

import argparse
import asyncio
import csv
import json
import logging
import signal
from contextlib import AsyncExitStack
from pathlib import Path

from cli import context
from cli.embedded import free_port, port_open
from services import registry_file
from services.errors import ConfigError, InvalidInput
from services.models import Registry
from services.settings import IocSettings
from simulator import demo
from simulator.cameras import start_farms
from simulator.devices import Simulator
from simulator.scenario import Scenario, pick

log = logging.getLogger("ioc.simulate")
DEMO_FILE = "demo-registry.yaml"
DEMO_META = "demo.json"


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
    src.add_argument("--demo", action="store_true", help="the demo communes (Thoại Giang, Long Thành)")
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
    p.set_defaults(func=run)


def demo_registry(data_dir: Path, *, choose_port: bool) -> tuple[Path, int]:
    """Render the demo registry into the data dir; the ONVIF port is kept across runs.

    `choose_port` (for `ioc up`, before it imports the file) picks a new port when the
    saved one is taken by someone else; the simulator itself keeps the saved one.
    """
    meta = data_dir / DEMO_META
    port = json.loads(meta.read_text()).get("onvif_port") if meta.exists() else None
    if port is None or (choose_port and port_open(port)):
        port = demo.TEMPLATE_PORT if not port_open(demo.TEMPLATE_PORT) else free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"onvif_port": port}))
    return demo.write(data_dir / DEMO_FILE, port), port


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
) -> None:
    sim = Simulator(
        reg, mqtt_url, rate_scale=rate_scale, seed=seed, scenario=scenario, credentials=credentials, tz=tz
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sim.stop)
    async with AsyncExitStack() as stack:
        await start_farms(stack, reg, scenario)
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
        path, port = demo_registry(s.data_dir, choose_port=False)
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
    asyncio.run(
        simulate(
            reg, s.mqtt_url, scenario, rate_scale=args.rate_scale, seed=args.seed, credentials=creds, tz=s.tz
        )
    )
    return 0
