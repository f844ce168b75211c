"""A router losing power takes its ONVIF cameras with it: the simulated cameras below it stop
answering, and the IOC's real ONVIF poller (registry in PostgreSQL, status on Mosquitto) says
`reachable: false` for them, and only for them, until the router is back."""

import asyncio
import socket
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

import httpx
import psycopg
import pytest

from cli.embedded import Mosquitto
from ingest.onvif import run_onvif
from services import registry, registry_file
from services.vault import Vault
from simulator.cameras import start_farms
from simulator.devices import Simulator
from simulator.scenario import Scenario
from tests.onvif.conftest import QUICK
from tests.onvif.test_run_onvif import SECRET, Subscriber, topic

PASSWORD = "demo-Pa55word-1"


@contextmanager
def listening() -> Iterator[tuple[int, socket.socket]]:
    """A listening loopback socket (as `ioc up` hands the simulator) and its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield int(sock.getsockname()[1]), sock


def registry_yaml(port: int) -> str:
    def cam(cam_id: str, village: str, parent: str) -> str:
        return (
            f"  - {{id: {cam_id}, kind: camera, village: {village}, parent: {parent}, onvif: {{host: 127.0.0.1,"
            f" port: {port}, path: /onvif/{cam_id}/device_service, username: admin, password: '{PASSWORD}',"
            " poll_s: 1}}\n"
        )

    return (
        "commune: {id: thoai-giang, name: Thoai Giang}\n"
        "villages:\n  - {id: bac-thanh, name: Bac Thanh}\n  - {id: trung-binh, name: Trung Binh}\n"
        "devices:\n"
        "  - {id: gw-bac-thanh, kind: gateway, village: bac-thanh, heartbeat_s: 30}\n"
        "  - {id: gw-trung-binh, kind: gateway, village: trung-binh, heartbeat_s: 30}\n"
        "  - {id: wifi-mau-giao, kind: wifi, village: bac-thanh, parent: gw-bac-thanh, heartbeat_s: 30}\n"
        + cam("cam-mau-giao", "bac-thanh", "wifi-mau-giao")  # two hops below the router
        + cam("cam-cau-bac-thanh", "bac-thanh", "gw-bac-thanh")
        + cam("cam-ubnd", "trung-binh", "gw-trung-binh")
    )


BELOW = ("cam-mau-giao", "cam-cau-bac-thanh")


def soap_answers(port: int, cam: str) -> bool:
    body = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
        '<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body></s:Envelope>'
    )
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/onvif/{cam}/device_service", content=body, timeout=3)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


@pytest.mark.timeout(90)
def test_router_outage_takes_its_cameras_off_the_air(db_url: str, broker: Mosquitto) -> None:
    mqtt_url = broker.url()
    sub = Subscriber(mqtt_url)
    with listening() as (port, sock):
        text = registry_yaml(port)
        reg = registry_file.parse_yaml(text)
        with psycopg.connect(db_url) as conn:
            registry.import_registry(conn, reg, Vault(SECRET))
        sim = Simulator(reg, mqtt_url, rate_scale=1, seed=3, scenario=Scenario.quiet())

        def reachable(cam: str) -> list[bool]:
            return [p["reachable"] for p in sub.of(topic(cam)) if "reachable" in p]

        async def main() -> None:
            stop = asyncio.Event()
            async with AsyncExitStack() as stack:
                assert (
                    await start_farms(stack, reg, sim.scenario, sockets={port: sock}, off_air=sim.off_air)
                    == 3
                )
                sim_task = asyncio.create_task(sim.run())
                onvif = asyncio.create_task(
                    run_onvif(db_url, mqtt_url, SECRET, stop, tuning=QUICK, reload_s=0.3)
                )
                try:
                    await sim.ready.wait()
                    await sub.until(
                        lambda: all(reachable(c)[-1:] == [True] for c in (*BELOW, "cam-ubnd")), 30
                    )
                    assert all([await asyncio.to_thread(soap_answers, port, c) for c in BELOW])
                    sim.outage("gw-bac-thanh", 6)
                    assert sim.off_air("cam-mau-giao") == "gw-bac-thanh is down"
                    # the cameras below the dead router answer nothing; the IOC's poller sees it
                    assert not any([await asyncio.to_thread(soap_answers, port, c) for c in BELOW])
                    await sub.until(lambda: all(reachable(c)[-1:] == [False] for c in BELOW), 20)
                    assert reachable("cam-ubnd")[-1] is True and False not in reachable("cam-ubnd")
                    assert await asyncio.to_thread(soap_answers, port, "cam-ubnd")
                    # back with their router
                    await sub.until(lambda: all(reachable(c)[-1:] == [True] for c in BELOW), 30)
                    assert sim.off_air("cam-mau-giao") is None
                finally:
                    stop.set()
                    sim.stop()
                    await onvif
                    await sim_task

        try:
            asyncio.run(main())
        finally:
            sub.close()
