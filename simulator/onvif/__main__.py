"""`python -m simulator.onvif --count 1000`: a farm of simulated cameras in its own process.

Prints one JSON line (`port`, `discovery_port`, `url_template`) and serves until SIGINT/SIGTERM.
"""

import argparse
import asyncio
import json
import signal
import sys

from simulator.onvif import FAULTS, CameraFarm, CameraSpec


async def serve(args: argparse.Namespace) -> None:
    faults = frozenset(f for f in (args.faults or "").split(",") if f)
    unknown = faults - FAULTS
    if unknown:
        raise SystemExit(f"unknown fault(s): {', '.join(sorted(unknown))}")
    specs = [CameraSpec(f"{args.prefix}{i}", args.username, args.password, faults) for i in range(args.count)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with CameraFarm(specs, host=args.host, port=args.port, multicast=not args.no_multicast) as farm:
        print(
            json.dumps(
                {
                    "port": farm.port,
                    "discovery_port": farm.discovery_port,
                    "url_template": f"http://{farm.host}:{farm.port}/onvif/{{device_id}}/device_service",
                }
            ),
            flush=True,
        )
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m simulator.onvif", description=__doc__)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--prefix", default="cam-")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--username", default="admin")
    p.add_argument("--password", default="admin-pw")
    p.add_argument("--faults", help=f"comma-separated, for every camera: {', '.join(sorted(FAULTS))}")
    p.add_argument("--no-multicast", action="store_true", help="answer WS-Discovery by unicast only")
    args = p.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
