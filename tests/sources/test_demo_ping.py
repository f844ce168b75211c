"""The simulator's ping device (simulator/probed.py): answering on its own loopback address while on
the air, unreachable while off it, answering again after, heard by the real ping prober. Run in the
test's own network namespace, so the routes it adds never touch this machine's table."""

import asyncio
from typing import Any

from ingest.sources.probes import PingProber
from services.models import Device
from services.sources.model import PingSource
from simulator.probed import PingDevice
from tests.sources.test_probes import Netns, netns  # noqa: F401 - the fixture

HOST = "127.77.1.1"


def test_ping_device_goes_unreachable_off_the_air_and_answers_again(netns: Netns) -> None:  # noqa: F811
    async def main() -> list[Any]:
        down = {"now": False}
        dev = PingDevice("ap-cho", HOST, lambda _id: "outage" if down["now"] else None)
        stopping = asyncio.Event()
        task = asyncio.create_task(dev.run(stopping, tick_s=0.05))
        prober = PingProber()
        src = PingSource(HOST, count=1, timeout_s=0.5)
        gw = Device("ap-cho", "c", "wifi")
        seen: list[Any] = []
        try:
            await asyncio.sleep(0.2)
            seen.append((await prober.probe(gw, src, {}, {})).ok)
            down["now"] = True
            await asyncio.sleep(0.5)
            r = await prober.probe(gw, src, {}, {})
            seen.append((r.ok, r.error_code, dev.down))
            down["now"] = False
            await asyncio.sleep(0.5)
            seen.append((await prober.probe(gw, src, {}, {})).ok)
            # off the air again when the simulator stops: the route goes with it
            down["now"] = True
            await asyncio.sleep(0.5)
        finally:
            stopping.set()
            await task
            prober.close()
        seen.append(dev.down)
        return seen

    seen = netns.call(lambda: asyncio.run(main()))
    assert seen[0] is True
    assert seen[1] == (False, "unreachable", True)
    assert seen[2] is True
    assert seen[3] is False  # stopping took the route away
