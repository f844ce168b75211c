"""Ping poll benchmark: N ping devices (127.0.0.0/8: loopback answers for the whole /8) every
--period seconds through the real poll scheduler (ingest/sources/poll.py: registry, membership,
slots, bounded concurrency, one shared ICMP socket, every reading published on the IOC broker), on
an embedded PostgreSQL and Mosquitto; and the raw limit in the same run: `fping` (C) pinging the same
targets with the same count.

Prints JSON: polls per round and per second, how late probes started after their slot (mean, max),
CPU seconds of the scheduler's process per round, per 1,000 polls and as a share of one core, and
fping's wall time and CPU for one round. Only the scheduler's process is measured (the broker and
ingest's cost of the published statuses is what bench/ingest.py measures). Traffic: 127.0.0.0/8 only.

With `--snmp-agents N` the same scheduler also polls N SNMP v2c agents (one snmpsim process on
127.1.x.y:1161 replaying a UniFi AP, as bench/snmp_poll.py) every `--snmp-period` s: SPEC §8's
budget (5,000 pings every 30 s and 2,000 SNMP agents every 60 s in a quarter of a core) measured in
one process, statuses published. snmpsim's own CPU is reported apart.

    .venv/bin/python bench/probe_poll.py [--targets 5000] [--period 30] [--rounds 2] [--count 3]
        [--snmp-agents 2000 --snmp-period 60]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.embedded import Mosquitto, Postgres  # noqa: E402
from ingest.sources.poll import PollScheduler  # noqa: E402
from services import registry, registry_file  # noqa: E402
from services.migrate import migrate  # noqa: E402
from services.vault import Vault  # noqa: E402


def address(i: int) -> str:
    return f"127.2.{i // 250}.{i % 250 + 1}"


SNMP_PORT = 1161
SNMP_COMMUNITY = "bench"
SECRET = "bench-secret-key-0123456789"


def snmp_address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def registry_text(n: int, period: int, count: int, snmp: int = 0, snmp_period: int = 60) -> str:
    lines = [
        'commune: {id: xa-bench, name: "Xã Bench"}',
        "villages:",
        "  - {id: ap-1, name: Ấp 1}",
        "devices:",
    ]
    lines += [
        f"  - {{id: gw-{i}, kind: gateway, village: ap-1,"
        f" source: {{ping: {{host: {address(i)}, poll_s: {period}, count: {count}}}}}}}"
        for i in range(n)
    ]
    lines += [
        f"  - {{id: ap-{i}, kind: wifi, village: ap-1, source: {{snmp: {{host: {snmp_address(i)},"
        f" port: {SNMP_PORT}, community: {SNMP_COMMUNITY}, profile: unifi, uplink: eth0,"
        f" poll_s: {snmp_period}, timeout_s: 10}}}}}}"
        for i in range(snmp)
    ]
    return "\n".join(lines) + "\n"


def start_agents(n: int, base: Path) -> tuple[Any, Any]:
    """snmpsim answering on n loopback addresses (as bench/snmp_poll.py), once they answer."""
    from tests.fix_snmp import SNMPREC_DIR, SNMPSIM, snmp_answers, start_snmpsim

    if not SNMPSIM.exists() or shutil.which("snmpget") is None:
        raise SystemExit("needs snmpsim and net-snmp's tools: bash deploy/install-deps.sh")
    data = base / "snmp-data"
    data.mkdir()
    (data / f"{SNMP_COMMUNITY}.snmprec").write_text((SNMPREC_DIR / "unifi.snmprec").read_text())
    log = (base / "snmpsim.log").open("wb")
    proc = start_snmpsim(base, data, [f"{snmp_address(i)}:{SNMP_PORT}" for i in range(n)], log)
    deadline = time.monotonic() + 180
    for i in (0, n - 1):
        while not snmp_answers(snmp_address(i), SNMP_PORT, SNMP_COMMUNITY, 1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("snmpsim did not start")
            time.sleep(0.5)
    return proc, log


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fping(n: int, count: int, base: Path) -> dict[str, Any] | None:
    """One round of the same pings with fping: -c count, 200 ms between a target's packets (as the
    prober), 1 s timeout, 1 ms between packets to different targets (fping's floor without root)."""
    exe = shutil.which("fping")
    if exe is None:
        return None
    targets = base / "targets.txt"
    targets.write_text("".join(f"{address(i)}\n" for i in range(n)))
    c0, t0 = children_cpu_s(), time.perf_counter()
    out = subprocess.run(
        [exe, "-q", "-c", str(count), "-p", "200", "-t", "1000", "-i", "1", "-f", str(targets)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall, cpu = time.perf_counter() - t0, children_cpu_s() - c0
    # one line per target on stderr: "127.2.0.1 : xmt/rcv/%loss = 3/3/0%, min/avg/max = ..."
    answered = sum(1 for line in out.stderr.splitlines() if "/0%" in line)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "answered": answered}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=5000)
    ap.add_argument("--period", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--snmp-agents", type=int, default=0)
    ap.add_argument("--snmp-period", type=int, default=60)
    args = ap.parse_args()
    devices = args.targets + args.snmp_agents
    window = max(args.period, args.snmp_period if args.snmp_agents else 0)
    base = Path(tempfile.mkdtemp(prefix="ioc-bench-probe-"))
    base.chmod(0o755)
    pg, broker = Postgres(base / "pg"), Mosquitto(base / "mqtt")
    pg.start()
    broker.start()
    stop = threading.Event()
    agents: Any = None
    try:
        if args.snmp_agents:
            agents = start_agents(args.snmp_agents, base)
        url = pg.url()
        migrate(url)
        with psycopg.connect(url) as conn:
            registry.import_registry(
                conn,
                registry_file.parse_yaml(
                    registry_text(args.targets, args.period, args.count, args.snmp_agents, args.snmp_period)
                ),
                Vault(SECRET),
            )
        s = PollScheduler(url, broker.url(), SECRET, "bench", profiles_dir=None)
        t = threading.Thread(target=s.run, args=(stop,), name="bench.poll", daemon=True)
        t.start()
        t_start = time.monotonic()
        # warm-up: every device owned and polled once (the first polls are spread over 10 s)
        while len(s.owned()) < devices or len(s.started) < devices:
            if time.monotonic() - t_start > 120:
                raise SystemExit(f"warm-up: {len(s.owned())} owned, {len(s.started)} polled")
            time.sleep(0.2)
        warmup_s = time.monotonic() - t_start
        done0, failed0, lag0 = s.probes_done, s.probes_failed, s.lag_sum_s
        s.lag_max_s = 0.0
        c0, w0 = self_cpu_s(), time.perf_counter()
        a0 = proc_cpu_s(agents[0].pid) if agents else 0.0
        time.sleep(window * args.rounds)
        cpu, wall = self_cpu_s() - c0, time.perf_counter() - w0
        agent_cpu = proc_cpu_s(agents[0].pid) - a0 if agents else None
        done, failed = s.probes_done - done0, s.probes_failed - failed0
        lag_mean = (s.lag_sum_s - lag0) / done if done else None
        stop.set()
        t.join(30)
        raw = fping(args.targets, args.count, base) if args.targets else None
        result: dict[str, Any] = {
            "targets": args.targets,
            "period_s": args.period,
            "count": args.count,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "warmup_s": round(warmup_s, 1),
            "polls": done,
            "polls_failed": failed,
            "snmp_agents": args.snmp_agents,
            "snmp_period_s": args.snmp_period if args.snmp_agents else None,
            "window_s": window,
            "polls_per_round": round(done / args.rounds),
            "polls_per_s": round(done / wall, 1),
            "start_lag_mean_ms": None if lag_mean is None else round(lag_mean * 1000, 1),
            "start_lag_max_ms": round(s.lag_max_s * 1000, 1),
            "cpu_s_per_round": round(cpu / args.rounds, 2),
            "cpu_s_per_1000_polls": round(cpu / done * 1000, 3) if done else None,
            "cpu_share_of_one_core": round(cpu / wall, 3),
            "icmp_sockets": "unprivileged" if os.geteuid() else "raw (root)",
            "snmpsim_cpu_s": None if agent_cpu is None else round(agent_cpu, 2),
            "raw_fping_one_round": raw,
        }
        if raw:
            result["raw_fping_cpu_share_at_period"] = round(raw["cpu_s"] / args.period, 3)
        print(json.dumps(result, indent=2))
    finally:
        stop.set()
        if agents:
            agents[0].terminate()
            agents[0].wait(30)
            agents[1].close()
        broker.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
