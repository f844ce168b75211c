"""The simulator's SNMP agent asked by net-snmp's own tools: walks (GETNEXT and GETBULK), v1 and
v2c errors, a wrong community and malformed datagrams answered by silence, never a crash."""

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from simulator import snmp_agent

pytestmark = pytest.mark.skipif(
    shutil.which("snmpbulkwalk") is None, reason="net-snmp tools are not installed"
)
READINGS = {"firmware": "6.6.55", "clients": 19, "rx_bytes": 2**32 + 5, "tx_bytes": 1234, "uplink_up": False}


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


def with_agent(body: Callable[[int, snmp_agent.Agent], Any], on_air: list[bool] | None = None) -> None:
    state = on_air if on_air is not None else [True]

    def view() -> list[tuple[Any, Any]] | None:
        return snmp_agent.table("ap-1", "wifi", READINGS, 3600) if state[0] else None

    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        agent = snmp_agent.Agent("demo-c", view)
        transport = await snmp_agent.serve(sock, port, agent)
        try:
            await asyncio.to_thread(body, port, agent)
        finally:
            transport.close()

    asyncio.run(main())


def test_walks_see_the_system_group_interfaces_and_unifi_clients() -> None:
    def body(port: int, agent: snmp_agent.Agent) -> None:
        bulk = run(["snmpbulkwalk", "-v2c", "-c", "demo-c", "-On", "-t", "1", f"127.0.0.1:{port}", "1.3.6.1"])
        assert bulk.returncode == 0, bulk.stderr
        walk = run(["snmpwalk", "-v1", "-c", "demo-c", "-On", "-t", "1", f"127.0.0.1:{port}", "1.3.6.1"])
        assert walk.returncode == 0, walk.stderr
        for out in (bulk.stdout, walk.stdout):
            assert '.1.3.6.1.2.1.1.1.0 = STRING: "UniFi UAP-AC-Lite 6.6.55"' in out
            assert ".1.3.6.1.2.1.1.3.0 = Timeticks: (360000)" in out
            assert ".1.3.6.1.2.1.2.2.1.8.1 = INTEGER: 2" in out  # the uplink is down
            assert ".1.3.6.1.2.1.2.2.1.10.1 = Counter32: 5" in out  # 32-bit counter wrapped
            assert ".1.3.6.1.4.1.41112.1.6.1.2.1.8.0 = INTEGER: 6" in out
            assert ".1.3.6.1.4.1.41112.1.6.1.2.1.8.1 = INTEGER: 13" in out
        assert ".1.3.6.1.2.1.31.1.1.1.6.1 = Counter64: 4294967301" in bulk.stdout
        missing = run(
            ["snmpget", "-v2c", "-c", "demo-c", "-On", "-t", "1", f"127.0.0.1:{port}", "1.3.6.1.2.1.1.3.7"]
        )
        assert "No Such Instance" in missing.stdout
        v1 = run(
            ["snmpget", "-v1", "-c", "demo-c", "-On", "-t", "1", f"127.0.0.1:{port}", "1.3.6.1.2.1.1.9.0"]
        )
        assert "noSuchName" in v1.stdout + v1.stderr or "no such" in (v1.stdout + v1.stderr).lower()

    with_agent(body)


def test_a_wrong_community_junk_and_an_agent_off_the_air_get_no_answer() -> None:
    on_air = [True]

    def body(port: int, agent: snmp_agent.Agent) -> None:
        get = ["snmpget", "-v2c", "-On", "-t", "1", "-r", "0", f"127.0.0.1:{port}", "1.3.6.1.2.1.1.3.0"]
        assert run([*get[:1], "-c", "public", *get[1:]]).returncode != 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for junk in (
                b"",
                b"\x30\x03\x02\x01",
                b"\xff" * 64,
                b"\x30\x0c\x02\x01\x01\x04\x03abc\xa0\x02\x30\x00",
            ):
                s.sendto(junk, ("127.0.0.1", port))
        # still answering; three tries, so a busy machine does not read as silence
        patient = ["snmpget", "-v2c", "-On", "-t", "1", "-r", "2", "-c", "demo-c", *get[-2:]]
        assert run(patient).returncode == 0
        on_air[0] = False
        assert run([*get[:1], "-c", "demo-c", *get[1:]]).returncode != 0

    with_agent(body, on_air)
