"""SNMP poll benchmark: N simulated agents (one snmpsim process listening on N loopback addresses,
127.1.x.y:1161, replaying a UniFi AP's walk), polled by the real prober (ingest/sources/snmp.py)
on one event loop, as `ioc ingest`'s scheduler runs it; and the raw limit in the same run: net-snmp's
C `snmpbulkget` asking every agent the same GETBULK.

Prints JSON: cycle time of a steady round of polls, CPU seconds of this process per round and per
1,000 polls, the share of one core that is at one round every --period seconds, the agent's CPU,
and the C tools' time and CPU for the same agents. Traffic goes to 127.0.0.0/8 only.

    .venv/bin/python bench/snmp_poll.py [--agents 2000] [--period 60] [--rounds 2] [--concurrency 200]

`--v3 N` measures SNMP v3 instead (authPriv SHA/AES, pysnmp's engine in the prober): N of the
simulator's v3 agents (simulator/snmp_agent.py V3Agent) in another process on 127.0.0.1 ports
V3_BASE..V3_BASE+N-1, the same UniFi-like table; prober CPU per poll and share of a core.
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.sources.snmp import COLUMNS, SYS_DESCR, SYS_UPTIME, SnmpProber  # noqa: E402
from services.models import Device  # noqa: E402
from services.sources.model import SnmpSource  # noqa: E402
from services.sources.profiles import shipped  # noqa: E402
from tests.fix_pg import private_dir  # noqa: E402
from tests.fix_snmp import SNMPREC_DIR, SNMPSIM, snmp_answers, start_snmpsim  # noqa: E402

PORT = 1161
COMMUNITY = "bench"
TICK = os.sysconf("SC_CLK_TCK")


def address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_for_agents(n: int, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    for i in (0, n - 1):
        while not snmp_answers(address(i), PORT, COMMUNITY, 1.0):
            if time.monotonic() > deadline:
                raise SystemExit(f"snmpsim does not answer on {address(i)}:{PORT}")
            time.sleep(0.5)


V3_BASE = 21161
V3_USER = ("ioc-bench", "sha", "bench-auth-key-1", "aes", "bench-priv-key-1")
V3_AGENTS = """
import asyncio, sys
from simulator import snmp_agent
READINGS = {"firmware": "6.5.28", "rx_bytes": 10**9, "tx_bytes": 2 * 10**9, "clients": 19}

async def main(n, base):
    agents = []
    for i in range(n):
        a = snmp_agent.V3Agent(*sys.argv[3:8], lambda: snmp_agent.table("ap", "wifi", READINGS, 86400))
        await a.serve(None, base + i)
        agents.append(a)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


async def prober_rounds(n: int, rounds: int, concurrency: int, v3: bool = False) -> list[dict[str, Any]]:
    profiles = shipped()
    prober = SnmpProber(lambda: profiles)
    device = Device("bench", "xa-bench", "wifi")
    states: list[dict[str, Any]] = [{} for _ in range(n)]
    if v3:
        user, auth, akey, priv, pkey = V3_USER
        sources = [
            SnmpSource("127.0.0.1", V3_BASE + i, "3", user, auth, priv, "eth0", "unifi", timeout_s=10)
            for i in range(n)
        ]
        secrets = {"auth_key": akey, "priv_key": pkey}
    else:
        sources = [
            SnmpSource(address(i), PORT, "2c", profile="unifi", uplink="eth0", timeout_s=10) for i in range(n)
        ]
        secrets = {"community": COMMUNITY}
    sem = asyncio.Semaphore(concurrency)
    out = []

    async def one(i: int) -> bool:
        async with sem:
            r = await prober.probe(device, sources[i], secrets, states[i])
            return r.ok and r.metrics.get("clients") == 19

    try:
        for _ in range(rounds):
            c0, t0 = self_cpu_s(), time.perf_counter()
            ok = await asyncio.gather(*(one(i) for i in range(n)))
            out.append({"wall_s": time.perf_counter() - t0, "cpu_s": self_cpu_s() - c0, "ok": sum(ok)})
    finally:
        prober.close()
    return out


def c_tools(n: int, parallel: int) -> dict[str, Any]:
    """The same GETBULK per agent with net-snmp's snmpbulkget (a process per agent)."""
    args = ["-m", "", "-v2c", "-c", COMMUNITY, "-t", "10", "-r", "0", "-Cn2", "-Cr25"]
    oids = [SYS_UPTIME, SYS_DESCR, *COLUMNS.values(), "1.3.6.1.4.1.41112.1.6.1.2.1.8"]

    def run(i: int) -> bool:
        cmd = ["snmpbulkget", *args, f"{address(i)}:{PORT}", *oids]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0

    c0, t0 = children_cpu_s(), time.perf_counter()
    with ThreadPoolExecutor(parallel) as ex:
        ok = sum(ex.map(run, range(n)))
    return {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(children_cpu_s() - c0, 2), "ok": ok}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--period", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--c-parallel", type=int, default=8)
    ap.add_argument("--v3", type=int, default=0, metavar="N")
    a = ap.parse_args()
    if a.v3:
        v3_main(a)
        return
    if not SNMPSIM.exists() or shutil.which("snmpbulkget") is None:
        raise SystemExit("needs snmpsim and net-snmp's tools: bash deploy/install-deps.sh")
    d = private_dir("ioc-bench-snmp-")
    data = d / "data"
    data.mkdir()
    (data / f"{COMMUNITY}.snmprec").write_text((SNMPREC_DIR / "unifi.snmprec").read_text())
    log = (d / "snmpsim.log").open("wb")
    sim = start_snmpsim(d, data, [f"{address(i)}:{PORT}" for i in range(a.agents)], log)
    try:
        wait_for_agents(a.agents, 120)
        sim0 = proc_cpu_s(sim.pid)
        rounds = asyncio.run(prober_rounds(a.agents, a.rounds, a.concurrency))
        sim_prober = proc_cpu_s(sim.pid) - sim0
        sim1 = proc_cpu_s(sim.pid)
        raw = c_tools(a.agents, a.c_parallel)
        raw["agent_cpu_s"] = round(proc_cpu_s(sim.pid) - sim1, 2)
    finally:
        sim.terminate()
        sim.wait(30)
        log.close()
        shutil.rmtree(d, ignore_errors=True)
    steady = rounds[-1]
    print(
        json.dumps(
            {
                "agents": a.agents,
                "period_s": a.period,
                "concurrency": a.concurrency,
                "rounds": [
                    {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in rounds
                ],
                "steady_cycle_s": round(steady["wall_s"], 2),
                "steady_cpu_s_per_round": round(steady["cpu_s"], 2),
                "cpu_ms_per_poll": round(steady["cpu_s"] / a.agents * 1000, 2),
                "core_share_at_period": round(steady["cpu_s"] / a.period, 3),
                "agent_cpu_s_during_prober_rounds": round(sim_prober, 2),
                "raw_snmpbulkget": raw,
                "load_avg": os.getloadavg()[0],
            },
            indent=2,
        )
    )


def v3_main(a: argparse.Namespace) -> None:
    repo = Path(__file__).resolve().parents[1]
    sim = subprocess.Popen(
        [sys.executable, "-c", V3_AGENTS, str(a.v3), str(V3_BASE), *V3_USER],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
    )
    try:
        assert sim.stdout is not None
        if sim.stdout.readline().strip() != b"ready":
            raise SystemExit("the v3 agents did not start")
        sim0 = proc_cpu_s(sim.pid)
        rounds = asyncio.run(prober_rounds(a.v3, a.rounds, a.concurrency, v3=True))
        agent_cpu = proc_cpu_s(sim.pid) - sim0
    finally:
        sim.terminate()
        sim.wait(30)
    steady = rounds[-1]
    print(
        json.dumps(
            {
                "v3_agents": a.v3,
                "security": "authPriv SHA/AES",
                "period_s": a.period,
                "rounds": [
                    {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in rounds
                ],
                "cpu_ms_per_poll": round(steady["cpu_s"] / a.v3 * 1000, 2),
                "core_share_at_period": round(steady["cpu_s"] / a.period, 3),
                "agent_cpu_s": round(agent_cpu, 2),
                "load_avg": os.getloadavg()[0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
