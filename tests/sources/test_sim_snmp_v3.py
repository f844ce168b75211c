"""The simulator's SNMP v3 agent (simulator/snmp_agent.py V3Agent): authNoPriv and authPriv users
polled by the real prober and by net-snmp's snmpget; a wrong key is auth_failed, off the air is
silence."""

import asyncio
import subprocess
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ingest.sources.reading import Reading
from ingest.sources.snmp import SnmpProber
from services import registry_file
from services.models import Device
from services.sources.model import SnmpSource
from simulator import probed, snmp_agent
from tests.fix_snmp import free_udp_port

AP = Device("ap-v3", "xa-test", "wifi")
READINGS = {"firmware": "6.5.28", "rx_bytes": 123456, "tx_bytes": 654321, "clients": 9, "uplink_up": True}


def serve_and(
    user: dict[str, Any], calls: list[tuple[SnmpSource, dict[str, str]]], off_air: bool = False
) -> list[Reading]:
    port = free_udp_port()

    async def main() -> list[Reading]:
        def view() -> Any:
            return None if off_air else snmp_agent.table("ap-v3", "wifi", READINGS, 3600)

        agent = snmp_agent.V3Agent(view=view, **user)
        await agent.serve(None, port)
        await asyncio.sleep(0.1)
        prober = SnmpProber(dict)
        try:
            return [await prober.probe(AP, _at(s, port), k, {}) for s, k in calls]
        finally:
            prober.close()
            agent.close()

    return asyncio.run(main())


def _at(src: SnmpSource, port: int) -> SnmpSource:
    return replace(src, port=port)


AUTH_PRIV = {
    "user": "ioc-ap",
    "auth": "sha",
    "auth_key": "demo-auth-key-1",
    "priv": "aes",
    "priv_key": "demo-priv-key-1",
}
AUTH_ONLY = {"user": "ioc-ro", "auth": "md5", "auth_key": "demo-auth-key-2", "priv": None, "priv_key": None}


@pytest.mark.parametrize("user", [AUTH_PRIV, AUTH_ONLY], ids=["authPriv", "authNoPriv"])
def test_v3_agent_answers_the_prober_with_the_devices_table(user: dict[str, Any]) -> None:
    src = SnmpSource("127.0.0.1", 0, "3", user["user"], user["auth"], user["priv"], "eth0", timeout_s=1.0)
    secrets = {"auth_key": user["auth_key"], **({"priv_key": user["priv_key"]} if user["priv_key"] else {})}
    (r,) = serve_and(user, [(src, secrets)])
    assert r.ok, r
    assert r.metrics["uptime_s"] == 3600 and "6.5.28" in r.metrics["firmware"]
    assert r.metrics["uplink_up"] is True and r.metrics["rx_bytes"] == 123456
    assert {i["name"] for i in r.metrics["interfaces"]} == {"eth0", "wlan0"}


def test_v3_agent_refuses_a_wrong_key_and_is_silent_off_the_air() -> None:
    src = SnmpSource("127.0.0.1", 0, "3", "ioc-ap", "sha", "aes", timeout_s=0.5)
    wrong = {"auth_key": "not-the-auth-key", "priv_key": "demo-priv-key-1"}
    (r,) = serve_and(AUTH_PRIV, [(src, wrong)])
    assert not r.ok and r.auth_failed and r.error_code == "auth", r
    right = {"auth_key": "demo-auth-key-1", "priv_key": "demo-priv-key-1"}
    (r,) = serve_and(AUTH_PRIV, [(src, right)], off_air=True)
    assert not r.ok and not r.auth_failed and r.error_code == "timeout", r


def test_v3_agent_answers_net_snmp() -> None:
    port = free_udp_port()

    async def main() -> str:
        agent = snmp_agent.V3Agent(view=lambda: snmp_agent.table("ap-v3", "wifi", READINGS, 42), **AUTH_PRIV)
        await agent.serve(None, port)
        await asyncio.sleep(0.1)
        try:
            proc = await asyncio.create_subprocess_exec(
                "snmpget", "-m", "", "-v3", "-l", "authPriv", "-u", "ioc-ap", "-a", "SHA", "-A", "demo-auth-key-1",
                "-x", "AES", "-X", "demo-priv-key-1", "-t", "5", "-r", "2", f"127.0.0.1:{port}",
                "1.3.6.1.2.1.1.3.0", "1.3.6.1.4.1.41112.1.6.1.2.1.8.1",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await proc.communicate()
            return out.decode()
        finally:
            agent.close()

    out = asyncio.run(main())
    assert "Timeticks: (4200)" in out and "41112.1.6.1.2.1.8.1 = INTEGER: 6" in out, out


def test_demo_snmp_devices_answer_in_their_own_versions_and_fall_silent_with_their_router() -> None:
    """The demo registry's SNMP devices (v3 authPriv, v3 authNoPriv, v2c) served by
    simulator.probed on free ports, each polled by the real prober with its registry secrets."""
    text = (Path(__file__).resolve().parents[2] / "simulator/demo/registry.yaml").read_text()
    reg = registry_file.parse_yaml(text, profiles_dir=None)
    snmp = [d for d in reg.devices if isinstance(d.source, SnmpSource)]
    assert {d.source.version for d in snmp} == {"2c", "3"}  # type: ignore[union-attr]
    assert {d.source.priv for d in snmp if d.source.version == "3"} == {"aes", None}  # type: ignore[union-attr]
    moved = tuple(replace(d, source=_at(d.source, free_udp_port())) for d in snmp)  # type: ignore[arg-type]
    reg = replace(reg, devices=moved)
    down: set[str] = set()

    async def main() -> list[tuple[str, Reading, Reading]]:
        async with AsyncExitStack() as stack:
            stopping = asyncio.Event()
            await probed.serve(
                stack,
                reg,
                lambda i: "router down" if i in down else None,
                lambda _i: dict(READINGS),
                stopping,
            )
            await asyncio.sleep(0.1)
            prober = SnmpProber(dict)
            out = []
            try:
                for d in moved:
                    assert isinstance(d.source, SnmpSource)
                    src = replace(d.source, timeout_s=0.5)
                    on = await prober.probe(d, src, reg.source_secrets[d.id], {})
                    down.add(d.id)
                    off = await prober.probe(d, src, reg.source_secrets[d.id], {})
                    out.append((d.id, on, off))
            finally:
                prober.close()
                stopping.set()
            return out

    for device_id, on, off in asyncio.run(main()):
        assert on.ok and on.metrics["uptime_s"] >= 0 and on.metrics["if_up"] >= 1, (device_id, on)
        assert not off.ok and off.error_code == "timeout", (device_id, off)
