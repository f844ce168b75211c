"""Ingest throughput: N QoS 1 status messages from 5,000 devices, publish -> committed rows.

Prints JSON with, from the same run on the same machine:
  raw_broker_msg_s        the same messages through the broker to mosquitto_sub, QoS 1 (a C
                          client, publishing and receiving at once: the limit for the live figure)
  raw_broker_drain_msg_s  mosquitto_sub draining the same backlog queued for its persistent
                          session (C client: the broker's limit for the drain figure)
  raw_copy_rows_s         a bare binary COPY of the same rows into a hypertable (the database's limit)
  live_msg_s              ingest while a publisher sends: first publish -> last row committed
  drain_msg_s             ingest draining a backlog queued by the broker for its persistent session
                          (from starting the process; drain_steady_msg_s: 10 % to 90 % of it)
Both ingest figures are end to end: parsed, validated, stored idempotently, state updated,
acknowledged after commit. The publisher is bench/fastpub.py (paho publishes ~5k msg/s here,
which would make the live figure a measure of paho).

    .venv/bin/python bench/ingest.py [--messages 200000] [--devices 5000] [--processes 1]

`--ab BEFORE_TREE` instead measures the live figure only, for variants back to back in one run,
each on a fresh broker and database: `fast` and `plain` (IOC_INGEST_FAST on/off) of this tree,
and `before_fast` — the same ingest from BEFORE_TREE, a checkout of an older commit (e.g.
`git worktree add --detach /tmp/before cb203e6~1`: the write path before poison isolation), run
with that directory first on the import path. `--rounds N` repeats the set in rotated order.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fastpub import FastPublisher  # noqa: E402
from cli.embedded import Mosquitto, Postgres  # noqa: E402
from services import registry, registry_file  # noqa: E402
from services.migrate import migrate  # noqa: E402
from services.topics import device_topic  # noqa: E402

KINDS = ("speaker", "eboard", "wifi", "gateway")
START = datetime(2026, 11, 1, tzinfo=UTC)


def payload(kind: str, i: int, rnd: random.Random) -> dict:
    if kind == "speaker":
        return {
            "volume": rnd.randint(0, 100),
            "playing": rnd.random() < 0.3,
            "source": "fm",
            "rssi_dbm": rnd.randint(-90, -50),
            "power": "mains",
            "temperature_c": round(rnd.uniform(28, 45), 1),
        }
    if kind == "eboard":
        return {
            "screen_on": True,
            "brightness_pct": rnd.randint(40, 100),
            "temperature_c": 38.5,
            "content_id": f"tin-{i % 7}",
            "errors": [],
        }
    if kind == "wifi":
        return {
            "clients": rnd.randint(0, 40),
            "uptime_s": 86400 + i,
            "uplink_up": True,
            "rx_bytes": rnd.randint(0, 10**9),
            "tx_bytes": rnd.randint(0, 10**9),
            "cpu_pct": 12.5,
        }
    return {"uplink_up": True, "uptime_s": 86400 + i, "rtt_ms": round(rnd.uniform(5, 60), 1), "cpu_pct": 8}


def make_messages(n: int, devices: int) -> list[tuple[str, bytes]]:
    rnd = random.Random(42)
    out = []
    for i in range(n):
        d = i % devices
        kind = KINDS[d % len(KINDS)]
        body = {"ts": (START + timedelta(seconds=i // devices)).isoformat(), **payload(kind, i, rnd)}
        out.append((device_topic("bench", kind, f"d{d}", "status"), json.dumps(body).encode()))
    return out


def registry_text(devices: int) -> str:
    lines = ["commune: {id: bench, name: Bench}", "villages: [{id: v, name: V}]", "devices:"]
    lines += [f"  - {{id: d{d}, kind: {KINDS[d % len(KINDS)]}, village: v}}" for d in range(devices)]
    return "\n".join(lines) + "\n"


def raw_broker_rate(broker: Mosquitto, msgs: list[tuple[str, bytes]]) -> float:
    """The same messages and topics through the broker to `mosquitto_sub -C N`, QoS 1, published
    by the same publisher as the live run (`mosquitto_pub -l` waits on its acknowledgements and
    tops out near 20k msg/s here: it would measure itself, not the broker)."""
    sub = subprocess.Popen(
        ["mosquitto_sub", "-p", str(broker.port), "-h", "127.0.0.1", "-q", "1", "-t", "ioc/v1/#",
         "-C", str(len(msgs)), "-i", "raw-sub"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    t0 = time.perf_counter()
    with FastPublisher(broker.url(), "raw-pub") as pub:
        pub.publish(msgs)
    sub.wait(300)
    return len(msgs) / (time.perf_counter() - t0)


def raw_broker_drain_rate(broker: Mosquitto, msgs: list[tuple[str, bytes]]) -> float:
    """mosquitto_sub draining a backlog queued for its persistent session, QoS 1."""
    sub = [
        "mosquitto_sub", "-p", str(broker.port), "-h", "127.0.0.1", "-q", "1", "-c", "-i", "raw-drain",
        "-t", "drain/#",
    ]  # fmt: skip
    subprocess.run([*sub, "-W", "1"], stdout=subprocess.DEVNULL, check=False)  # creates the session
    with FastPublisher(broker.url(), "raw-drain-pub") as pub:
        pub.publish([(f"drain/{t.split('/')[4]}", p) for t, p in msgs])
    t0 = time.perf_counter()
    subprocess.run([*sub, "-C", str(len(msgs))], stdout=subprocess.DEVNULL, check=True, timeout=600)
    return len(msgs) / (time.perf_counter() - t0)


def raw_copy_rate(url: str, msgs: list[tuple[str, bytes]]) -> float:
    rows = []
    for topic, p in msgs:
        doc = json.loads(p)
        ts = datetime.fromisoformat(doc.pop("ts"))
        rows.append((topic.split("/")[4], ts, ts, json.dumps(doc)))
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE raw_copy (device_id text, ts timestamptz, received_at timestamptz, metrics jsonb)"
        )
        conn.execute("SELECT create_hypertable('raw_copy', 'ts', chunk_time_interval => interval '1 day')")
        conn.commit()
        t0 = time.perf_counter()
        for k in range(0, len(rows), 10_000):
            with conn.cursor() as cur, cur.copy("COPY raw_copy FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["text", "timestamptz", "timestamptz", "jsonb"])
                for r in rows[k : k + 10_000]:
                    cp.write_row(r)
            conn.commit()
        rate = len(rows) / (time.perf_counter() - t0)
        conn.execute("DROP TABLE raw_copy")
    return rate


def committed(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COALESCE(sum(value), 0) FROM metric_counters WHERE name = 'ioc_ingest_messages_total'"
        ).fetchone()
        return int(row[0]) if row else 0


def start_ingest(
    url: str, mqtt_url: str, data_dir: Path, index: int = 0, tree: Path | None = None, fast: bool = True
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "IOC_DATABASE_URL": url,
        "IOC_MQTT_URL": mqtt_url,
        "IOC_INGEST_ID": f"bench-ingest-{index}",
        "IOC_INGEST_ONVIF": "false",
        "IOC_DATA_DIR": str(data_dir),
        "IOC_INGEST_FAST": "true" if fast else "false",
    }
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ingest"],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir / "ingest.log", "ab"),
    )  # noqa: SIM115


def publish_all(mqtt_url: str, msgs: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1; returns the time the last PUBACK arrived."""
    with FastPublisher(mqtt_url, "bench-pub") as pub:
        return pub.publish(msgs)


def wait_committed(
    url: str, target: int, timeout: float = 900, marks: dict[int, float] | None = None
) -> float:
    """Wait until `target` messages are committed; `marks` (count -> None) get the time each was passed."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        n = committed(url)
        now = time.perf_counter()
        for mark in marks or {}:
            if n >= mark and marks is not None and marks[mark] == 0.0:
                marks[mark] = now
        if n >= target:
            return now
        time.sleep(0.05)
    raise RuntimeError(f"only {committed(url)} of {target} committed in {timeout}s")


def ab(args: argparse.Namespace) -> None:
    """Live rate of each variant, back to back, each on its own broker and database."""
    before = Path(args.ab).resolve()
    variants: list[tuple[str, Path | None, bool]] = [
        ("before_fast", before, True),
        ("fast", None, True),
        ("plain", None, False),
    ]
    base = Path(tempfile.mkdtemp(prefix="ioc-bench-ab-"))
    base.chmod(0o755)
    pg = Postgres(base / "pg")
    pg.start()
    msgs = make_messages(args.messages // 2, args.devices)
    rates: dict[str, list[int]] = {name: [] for name, _, _ in variants}
    # CPU seconds of the ingest process per 100k messages: on a loaded machine the wall-clock
    # rate moves with other work; the CPU an ingest spends per message much less.
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    try:
        for r in range(args.rounds):
            for name, tree, fast in variants[r % 3 :] + variants[: r % 3]:
                db = f"ab_{name}_{r}"
                with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{db}"')
                url = pg.url(db)
                migrate(url)
                with psycopg.connect(url) as conn:
                    registry.import_registry(
                        conn, registry_file.parse_yaml(registry_text(args.devices)), None
                    )
                broker = Mosquitto(base / f"mqtt-{db}")
                broker.start()
                proc = start_ingest(url, broker.url(), base, 0, tree, fast)
                try:
                    while _sessions_ready(url) < 1:
                        time.sleep(0.2)
                    c0 = _cpu_s(proc.pid)
                    t0 = time.perf_counter()
                    publish_all(broker.url(), msgs)
                    t1 = wait_committed(url, len(msgs))
                    rates[name].append(round(len(msgs) / (t1 - t0)))
                    cpu[name].append(round((_cpu_s(proc.pid) - c0) * 100_000 / len(msgs), 2))
                finally:
                    proc.terminate()
                    proc.wait(60)
                    broker.stop()
        result: dict[str, object] = {
            "messages_per_variant": len(msgs),
            "devices": args.devices,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "live_msg_s": rates,
            "median_live_msg_s": {k: sorted(v)[len(v) // 2] for k, v in rates.items()},
            "ingest_cpu_s_per_100k": cpu,
            "median_ingest_cpu_s_per_100k": {k: sorted(v)[len(v) // 2] for k, v in cpu.items()},
        }
        med = result["median_live_msg_s"]
        assert isinstance(med, dict)
        result["fast_vs_before"] = round(med["fast"] / med["before_fast"], 3)
        result["plain_vs_fast"] = round(med["plain"] / med["fast"], 3)
        mcpu = result["median_ingest_cpu_s_per_100k"]
        assert isinstance(mcpu, dict)
        result["cpu_fast_vs_before"] = round(mcpu["fast"] / mcpu["before_fast"], 3)
        print(json.dumps(result, indent=2))
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--devices", type=int, default=5_000)
    ap.add_argument("--processes", type=int, default=1, help="ingest processes sharing the subscription")
    ap.add_argument(
        "--ab", metavar="BEFORE_TREE", help="A/B of the live rate: this tree fast/plain vs BEFORE_TREE"
    )
    ap.add_argument("--rounds", type=int, default=3, help="with --ab: rounds of the variants")
    args = ap.parse_args()
    if args.ab:
        ab(args)
        return
    base = Path(tempfile.mkdtemp(prefix="ioc-bench-"))
    base.chmod(0o755)
    pg, broker = Postgres(base / "pg"), Mosquitto(base / "mqtt")
    pg.start()
    broker.start()
    ingests: list[subprocess.Popen[bytes]] = []
    try:
        url = pg.url()
        migrate(url)
        with psycopg.connect(url) as conn:
            registry.import_registry(conn, registry_file.parse_yaml(registry_text(args.devices)), None)
        msgs = make_messages(args.messages, args.devices)
        half = len(msgs) // 2
        live, backlog = msgs[:half], msgs[half:]
        result: dict[str, object] = {
            "messages": len(msgs),
            "devices": args.devices,
            "qos": 1,
            "ingest_processes": args.processes,
            "payload_bytes_avg": round(sum(len(p) for _, p in msgs) / len(msgs)),
            "cpus": os.cpu_count(),
        }
        result["raw_broker_msg_s"] = round(raw_broker_rate(broker, msgs))
        result["raw_broker_drain_msg_s"] = round(raw_broker_drain_rate(broker, msgs))
        result["raw_copy_rows_s"] = round(raw_copy_rate(url, msgs))

        ingests = [start_ingest(url, broker.url(), base, i) for i in range(args.processes)]
        while _sessions_ready(url) < args.processes:
            time.sleep(0.2)
        t0 = time.perf_counter()
        pub_done = publish_all(broker.url(), live)
        t1 = wait_committed(url, len(live))
        result["live_msg_s"] = round(len(live) / (t1 - t0))
        result["live_publish_msg_s"] = round(len(live) / (pub_done - t0))

        for p in ingests:
            p.terminate()
            p.wait(60)
        publish_all(broker.url(), backlog)  # queued by the broker for the stopped ingests' sessions
        t0 = time.perf_counter()
        ingests = [start_ingest(url, broker.url(), base, i) for i in range(args.processes)]
        lo, hi = len(live) + len(backlog) // 10, len(live) + len(backlog) * 9 // 10
        marks = {lo: 0.0, hi: 0.0}
        t1 = wait_committed(url, len(msgs), marks=marks)
        result["drain_msg_s"] = round(len(backlog) / (t1 - t0))
        # The same without the process's start (imports, connecting): 10 % to 90 % of the backlog.
        result["drain_steady_msg_s"] = round((hi - lo) / (marks[hi] - marks[lo]))
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM status_samples").fetchone()[0]  # type: ignore[index]
        result["stored_rows"] = stored
        result["exact"] = stored == len(msgs)
        result["live_vs_raw_broker"] = round(result["live_msg_s"] / result["raw_broker_msg_s"], 3)  # type: ignore[operator]
        result["drain_steady_vs_raw_broker_drain"] = round(
            result["drain_steady_msg_s"] / result["raw_broker_drain_msg_s"],  # type: ignore[operator]
            3,
        )
        print(json.dumps(result, indent=2))
    finally:
        for p in ingests:
            p.terminate()
            p.wait(60)
        broker.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sessions_ready(url: str) -> int:
    """How many ingest processes hear the broker (their persistent sessions then exist)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM process_health WHERE name LIKE 'bench-ingest-%'").fetchone()
        return int(row[0]) if row else 0


if __name__ == "__main__":
    main()
