"""A vendor server's list of receivers over HTTP (the shipped `truyenthanh` profile, SPEC §8): what
reading N receivers from one list costs the HTTP prober per poll cycle. A loopback aiohttp server
(the simulator's own, `simulator.probed.smart_radio_list`, nested objects raw inside quotes) lists
N receivers; each cycle the prober is asked about every one of them at once, as the scheduler does
when their slots fall together (the worst case), and the clock moves a poll period between cycles.

The limit measured in the same run: one plain httpx GET of the same answer per cycle and the
console's own repair and json decode of it, with nothing mapped (what any client must spend to read
the list once). Prints JSON: receivers, cycles, GETs the prober sent, the prober's CPU per cycle, the
raw read's, their ratio, and the prober's CPU per receiver.

    .venv/bin/python bench/vendor_list.py [--receivers 1000] [--cycles 20]
"""

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.sources.probes import HttpProber, repair_quoted_json  # noqa: E402
from services.models import Device  # noqa: E402
from services.sources import HttpSource  # noqa: E402
from services.sources.profiles import shipped  # noqa: E402
from simulator.probed import smart_radio_list  # noqa: E402

ASK = "/eyJEYXRhVHlwZSI6MjAsIkRhdGEiOiJHRVRfQUxMX0RFVklDRV9TVEFUVVMifQ=="


def serve(body: bytes) -> tuple[str, threading.Event]:
    """The list on a loopback port, in a thread of its own (its CPU is not the prober's)."""
    ready, stop, where = threading.Event(), threading.Event(), {}

    def run() -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_get(ASK, lambda _r: web.Response(body=body, content_type="text/plain"))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            where["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            await asyncio.to_thread(stop.wait)
            await runner.cleanup()

        asyncio.run(main())

    threading.Thread(target=run, name="bench.vendor_list", daemon=True).start()
    ready.wait(10)
    return f"http://127.0.0.1:{where['port']}{ASK}", stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--receivers", type=int, default=1000)
    ap.add_argument("--cycles", type=int, default=20)
    args = ap.parse_args()
    ids = [f"RX{n:013d}" for n in range(args.receivers)]
    body = smart_radio_list([(i, {"volume": 60, "playing": n % 2 == 0}) for n, i in enumerate(ids)])
    url, stop = serve(body)
    clock = [0.0]
    catalogue = shipped()  # read once, as the scheduler's registry cache holds it
    prober = HttpProber(profiles=lambda: catalogue, clock=lambda: clock[0])
    sources = [HttpSource(url, poll_s=30, profile="truyenthanh", id=i) for i in ids]
    devices = [Device(f"loa-{n}", "xa", "speaker") for n in range(len(ids))]

    async def cycles() -> tuple[float, list[Any]]:
        t0 = time.process_time()
        last: list[Any] = []
        for _ in range(args.cycles):
            last = await asyncio.gather(
                *(prober.probe(d, s, {}, {}) for d, s in zip(devices, sources, strict=True))
            )
            clock[0] += 30.0
        spent = time.process_time() - t0
        await prober.aclose()
        return spent, last

    async def raw() -> float:
        t0 = time.process_time()
        async with httpx.AsyncClient() as client:
            for _ in range(args.cycles):
                r = await client.get(url)
                repair_quoted_json(r.content)
        return time.process_time() - t0

    try:
        spent, last = asyncio.run(cycles())
        raw_s = asyncio.run(raw())
    finally:
        stop.set()
    ok = sum(1 for r in last if r.ok and "volume" in r.metrics)
    print(
        json.dumps(
            {
                "receivers": args.receivers,
                "cycles": args.cycles,
                "answer_bytes": len(body),
                "gets": prober.gets,
                "read_ok_last_cycle": ok,
                "prober_cpu_s_per_cycle": round(spent / args.cycles, 4),
                "raw_read_cpu_s_per_cycle": round(raw_s / args.cycles, 4),
                "ratio_to_raw": round(spent / raw_s, 1) if raw_s else None,
                "prober_cpu_us_per_receiver": round(spent / args.cycles / args.receivers * 1e6, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
