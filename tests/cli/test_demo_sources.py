"""The demo's devices heard through each source (SPEC §8), on real components: the IOC's Mosquitto
and a second one as the "vendor cloud", PostgreSQL with ingest and the vendor bridge, and the
simulator answering HTTP and TCP on loopback. A router outage takes every child down through every
source, and they come back with it."""

import asyncio
import shutil
import socket
import subprocess
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as paho
import psycopg
import pytest

from cli.cmd_simulate import reserve_demo
from cli.embedded import Mosquitto
from ingest.service import IngestService
from services import registry, registry_file
from services.sources.model import HttpSource, MqttSource, TcpSource
from services.vault import Vault
from simulator import demo, probed
from simulator.devices import Simulator
from simulator.scenario import Scenario
from tests.fix_pg import private_dir
from tests.sources.stack import ingest_settings as poll_settings
from tests.sources.test_vendor_bridge import SECRET, bridges, listening, state
from tests.support import wait_for


def free_listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as `ioc up` binds them
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


# a smart-radio vendor server's status request (base64 of GET_ALL_DEVICE_STATUS)
TT_ASK = "eyJEYXRhVHlwZSI6MjAsIkRhdGEiOiJHRVRfQUxMX0RFVklDRV9TVEFUVVMifQ=="


def registry_text(vendor_port: int, http_port: int, tcp_port: int, snmp_port: int = 9) -> str:
    return f"""
commune: {{id: thoai-giang, name: Thoai Giang}}
villages:
  - {{id: bac-thanh, name: Bac Thanh}}
brokers:
  - {{id: vendor-cloud, url: "mqtt://127.0.0.1:{vendor_port}", client_id: ioc-test-demo}}
devices:
  - {{id: gw-bac-thanh, kind: gateway, village: bac-thanh, heartbeat_s: 30}}
  - {{id: loa-bac-thanh, kind: speaker, village: bac-thanh, parent: gw-bac-thanh, heartbeat_s: 60,
     source: {{mqtt: {{profile: tasmota, id: loa_bac_thanh, broker: vendor-cloud}}}}}}
  - {{id: eb-bac-thanh, kind: eboard, village: bac-thanh, parent: gw-bac-thanh, source: {{http: {{
     url: "http://127.0.0.1:{http_port}/eboard/eb-bac-thanh/status", poll_s: 5,
     fields: {{screen_on: display.on, brightness_pct: display.brightness, content_id: content.id}}}}}}}}
  - {{id: ap-bac-thanh, kind: wifi, village: bac-thanh, parent: gw-bac-thanh, heartbeat_s: 60,
     source: {{tcp: {{host: 127.0.0.1, port: {tcp_port}, poll_s: 5}}}}}}
  - {{id: tt-bac-thanh, kind: speaker, village: bac-thanh, parent: gw-bac-thanh, source: {{http: {{
     url: "http://127.0.0.1:{http_port}/{TT_ASK}", profile: truyenthanh, id: TT0001, poll_s: 5}}}}}}
  - {{id: ap-truong, kind: wifi, village: bac-thanh, parent: gw-bac-thanh, heartbeat_s: 60,
     source: {{snmp: {{host: 127.0.0.1, port: {snmp_port}, community: demo-community, profile: unifi}}}}}}
"""


def snmpget(port: int, *oids: str, community: str = "demo-community") -> str | None:
    """net-snmp's own client: what the agent answered, or None when it said nothing."""
    r = subprocess.run(
        ["snmpget", "-v2c", "-c", community, "-t", "1", "-r", "0", "-On", f"127.0.0.1:{port}", *oids],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return r.stdout if r.returncode == 0 else None


def http_status(url: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class VendorWatch:
    """A subscriber on the vendor broker: what the Tasmota firmware published."""

    def __init__(self, port: int) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-vendor-watch")
        self.c.on_connect = lambda c, *a: c.subscribe("tele/#", qos=1)
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def of(self, topic: str) -> list[bytes]:
        return [p for t, p in list(self.got) if t == topic]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_demo_registry_names_the_bound_ports_and_a_device_per_source(tmp_path: Path) -> None:
    ports = reserve_demo(tmp_path, vendor_broker_port=41883)
    try:
        reg = registry_file.read(ports.path)
        bound = {t: s.getsockname()[1] for t, s in ports.listen.items()}
        assert set(bound) == set(demo.LISTEN_PORTS)
        assert [b.url for b in reg.brokers] == ["mqtt://127.0.0.1:41883"]
        sources = {d.id: d.source for d in reg.devices if d.source is not None}
        vendor = {i for i, s in sources.items() if isinstance(s, MqttSource)}
        assert {"tg-spk-bac-thanh-2", "lt-spk-xom-6"} <= vendor
        assert all(
            isinstance(s, MqttSource) and s.profile == "tasmota" and s.broker == "vendor-cloud"
            for i, s in sources.items()
            if i in vendor
        )
        http = sources["lt-eb-ubnd"]
        assert isinstance(http, HttpSource) and http.url.startswith(f"http://127.0.0.1:{bound[18081]}/")
        tcp = {s.port for s in sources.values() if isinstance(s, TcpSource)}
        assert tcp == {bound[18091], bound[18092]}
        # every demo router whose outage is scripted has children heard another way than the IOC's MQTT
        parents = {d.id: d.parent_id for d in reg.devices}
        for router in demo.SCENARIO.router_outage:
            heard = {type(sources[d]).__name__ for d, p in parents.items() if p == router and d in sources}
            cams = [d.id for d in reg.devices if d.parent_id == router and d.onvif is not None]
            assert heard or cams, router
        assert {"MqttSource", "HttpSource"} <= {
            type(sources[d]).__name__ for d, p in parents.items() if p == "lt-gw-xom-6" and d in sources
        }
        # smart-radio receivers in their vendor server's list, one of them under Bắc Thạnh's router
        listed = {
            i: s for i, s in sources.items() if isinstance(s, HttpSource) and s.profile == "truyenthanh"
        }
        assert {"tg-spk-bac-thanh-3", "lt-spk-xom-3-2"} <= set(listed)
        assert parents["tg-spk-bac-thanh-3"] in demo.SCENARIO.router_outage
        assert all(s.url.startswith(f"http://127.0.0.1:{bound[18081]}/") and s.id for s in listed.values())
    finally:
        ports.close()
    # the saved ports are kept on the next start (the imported registry does not change)
    again = reserve_demo(tmp_path, vendor_broker_port=41883)
    try:
        assert {t: s.getsockname()[1] for t, s in again.listen.items()} == bound
    finally:
        again.close()


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("snmpget") is None, reason="net-snmp's snmpget is not installed")
def test_router_outage_takes_every_child_down_through_every_source(db_url: str, mqtt_url: str) -> None:
    vendor = Mosquitto(private_dir("ioc-vendor-cloud-"))
    vendor.start()
    http_sock, tcp_sock = free_listener(), free_listener()
    http_port, tcp_port = http_sock.getsockname()[1], tcp_sock.getsockname()[1]
    snmp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    snmp_sock.bind(("127.0.0.1", 0))
    snmp_port = snmp_sock.getsockname()[1]
    assert vendor.port
    text = registry_text(vendor.port, http_port, tcp_port, snmp_port)
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(text, profiles_dir=None), Vault(SECRET))
    reg = registry_file.parse_yaml(text, profiles_dir=None)
    eb_url = f"http://127.0.0.1:{http_port}/eboard/eb-bac-thanh/status"
    watch = VendorWatch(vendor.port)
    sim = Simulator(reg, mqtt_url, rate_scale=10, seed=4, scenario=Scenario.quiet())

    def db_state(device_id: str) -> str | None:
        s = state(db_url, device_id)
        return s[0] if s else None

    async def main() -> None:
        async with AsyncExitStack() as stack:
            await probed.serve(
                stack,
                reg,
                sim.off_air,
                sim.readings,
                sim.stopping,
                sockets={http_port: http_sock, tcp_port: tcp_sock, snmp_port: snmp_sock},
            )
            task = asyncio.create_task(sim.run())
            try:
                await sim.ready.wait()

                def everything_up() -> bool:
                    doc = http_status(eb_url)
                    return bool(
                        db_state("loa-bac-thanh") == "online"
                        and db_state("gw-bac-thanh") == "online"
                        # polled by the IOC (HTTP, TCP every 5 s), heard through the pipeline
                        and db_state("eb-bac-thanh") == "online"
                        and db_state("ap-bac-thanh") == "online"
                        and db_state("tt-bac-thanh") == "online"
                        and doc
                        and "on" in doc.get("display", {})
                        and tcp_open(tcp_port)
                    )

                await asyncio.to_thread(wait_for, everything_up, 40)
                doc = await asyncio.to_thread(http_status, eb_url)
                assert doc is not None and set(doc) == {"display", "content"}
                assert isinstance(doc["display"]["brightness"], int)
                # the receiver, read from its vendor server's list as the shipped profile reads it
                tt = state(db_url, "tt-bac-thanh")
                assert tt is not None and isinstance(tt[2].get("volume"), int | float) and "playing" in tt[2]
                # the speaker spoke Tasmota to the vendor cloud, and the bridge mapped it
                state_doc = orjson.loads(watch.of("tele/loa_bac_thanh/STATE")[-1])
                assert {"Time", "UptimeSec", "POWER", "Wifi"} <= set(state_doc)
                s = state(db_url, "loa-bac-thanh")
                assert s is not None and isinstance(s[2].get("rssi_dbm"), int) and "playing" in s[2]
                # the Wi-Fi point's SNMP agent, asked by net-snmp: sysUpTime, IF-MIB, UniFi's client count
                sys_up, if_oper, vap0 = (
                    "1.3.6.1.2.1.1.3.0",
                    "1.3.6.1.2.1.2.2.1.8.1",
                    "1.3.6.1.4.1.41112.1.6.1.2.1.8.0",
                )
                got = await asyncio.to_thread(snmpget, snmp_port, sys_up, if_oper, vap0)
                assert got is not None and "Timeticks" in got and f".{if_oper} = INTEGER: 1" in got, got
                assert f".{vap0} = INTEGER:" in got
                assert await asyncio.to_thread(snmpget, snmp_port, sys_up, community="public") is None

                sim.outage("gw-bac-thanh", 30)

                def everything_down() -> bool:
                    return (
                        db_state("gw-bac-thanh") == "offline"
                        and db_state("loa-bac-thanh") == "offline"
                        # the IOC's own polls fail twice (fail_after 2): offline, as SPEC §8 says
                        and db_state("eb-bac-thanh") == "offline"
                        and db_state("ap-bac-thanh") == "offline"
                        # its vendor server no longer lists it (not connected): offline too
                        and db_state("tt-bac-thanh") == "offline"
                        and http_status(eb_url) is None
                        and not tcp_open(tcp_port)
                    )

                await asyncio.to_thread(wait_for, everything_down, 28)
                assert await asyncio.to_thread(snmpget, snmp_port, sys_up) is None  # silent, as unpowered
                assert watch.of("tele/loa_bac_thanh/LWT")[-1] == b"Offline"  # its last will, by the broker
                await asyncio.to_thread(wait_for, everything_up, 40)
                assert watch.of("tele/loa_bac_thanh/LWT")[-1] == b"Online"
                await asyncio.to_thread(wait_for, lambda: snmpget(snmp_port, sys_up), 20)
            finally:
                sim.stop()
                await task

    try:
        with IngestService(poll_settings(db_url, mqtt_url, "ingest-demo-sources", poll=True)) as svc:
            wait_for(lambda: svc.health.check())
            with bridges(db_url, mqtt_url) as sb:
                wait_for(lambda: listening(sb, "vendor-cloud"))
                asyncio.run(main())
    finally:
        watch.close()
        vendor.stop()
        http_sock.close()
        tcp_sock.close()
        snmp_sock.close()
