"""Live feed: MQTT publish -> `ioc ingest` -> feed table -> `ioc gateway` -> WebSocket clients.

Starts its own embedded PostgreSQL+TimescaleDB and Mosquitto, one `ioc ingest` and one
`ioc gateway`, then runs two phases and prints JSON:
  latency   `--rate` msg/s (default 2,000) for `--seconds` to a few clients: p50/p99/max of
            publish -> WebSocket receive, and the share of messages delivered
  fanout    `--fanout-rate` msg/s (default 2,000) to `--clients` (default 200) concurrent WebSocket
            clients in `?batch=1` mode, as the dashboard connects (`--unbatched`: one message per
            frame): the same figures, and how many clients were closed as too slow (1013)
Every status carries its publish time (`bench_t`, kept by ingest as an unknown field), so
latency is measured end to end on one clock (per frame, from the oldest message in it). Ingest
puts at most one status per device every 5 s on the feed, so the registry has enough devices that
each one reports less often than that. Each phase reports the CPU of ingest, the gateway,
Mosquitto and the bench's own client process (% of one core) while publishing; `--deflate` makes
the clients negotiate permessage-deflate as browsers do (the gateway then compresses every frame
for every client).

    .venv/bin/python bench/live.py [--rate 2000] [--seconds 20] [--clients 200] [--fanout-rate 2000]
                                   [--unbatched] [--deflate]
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc_cpu import CpuMeter  # noqa: E402 - after the path is set


def percentile(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000, 1)


# -- the WebSocket clients (run in a child process so they do not share a core with the publisher)


def _client(out: dict, ready: asyncio.Event) -> Callable[[bytes, float], None]:
    """A message handler for one client: the snapshot first, then counts and latencies."""
    snapshot = True

    def on_message(message: bytes, now: float) -> None:
        nonlocal snapshot
        if snapshot:
            # Only the type is kept: 200 parsed snapshots of 12,000 devices are 2.4 M dicts, and
            # one full collection of them stalled every client in this process for ~2 s.
            assert json.loads(message)["type"] == "snapshot"
            snapshot = False
            out["ready"] += 1
            if out["ready"] == out["clients"]:
                ready.set()
            return
        # Byte scanning, not JSON parsing: 200 clients at 2,000 msg/s would otherwise measure
        # this process's parser. Latency is taken from the oldest message of each frame (the
        # worst in it); every message is counted.
        k = message.find(b'"bench_t":')
        if k >= 0:
            j = k + len(b'"bench_t":')
            end = min(x for x in (message.find(b",", j), message.find(b"}", j)) if x >= 0)
            out["latencies"].append(now - float(message[j:end]))
            out["messages"] += message.count(b'"bench_t":')

    return on_message


async def _clients(url: str, token: str, n: int, deflate: bool) -> dict:
    from bench import wsreader

    out: dict = {"clients": n, "ready": 0, "latencies": [], "messages": 0, "closed": []}
    ready = asyncio.Event()
    readers = []
    for _ in range(n):
        readers.append(
            await wsreader.connect(
                url, {"Authorization": f"Bearer {token}"}, _client(out, ready), deflate=deflate
            )
        )
        await asyncio.sleep(0.01)
    await asyncio.wait_for(ready.wait(), 300)
    print("ready", flush=True)
    # The parent says when to stop (a line on stdin), after its last message had time to arrive.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for r in readers:
        if r.closed.done():
            out["closed"].append(r.closed.result())
        else:
            r.close()
    return out


def client_main(args: argparse.Namespace) -> None:
    out = asyncio.run(_clients(args.url, args.token, args.client, args.deflate))
    Path(args.out).write_text(json.dumps(out))


# -- the run


def seed(url: str, devices: int) -> str:
    import psycopg

    from services import auth

    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO communes (id, name) VALUES ('bench', 'Bench')")
        conn.execute("INSERT INTO villages (commune_id, id, name) VALUES ('bench', 'v', 'V')")
        conn.execute(
            "INSERT INTO devices (id, commune_id, village_id, kind, heartbeat_s)"
            " SELECT 'spk-' || i, 'bench', 'v', 'speaker', 600 FROM generate_series(1, %s) i",
            (devices,),
        )
        conn.execute("INSERT INTO device_state (device_id) SELECT id FROM devices")
        conn.execute("UPDATE registry_version SET version = version + 1")
        auth.add_user(conn, "bench", "bench-password", "admin")
        token, _ = auth.login(conn, "bench", "bench-password")
    return token


def wait_http(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def publish(mqtt_port: int, devices: int, rate: float, seconds: float, start: int = 0) -> int:
    """Round-robin statuses over the devices at `rate` msg/s; returns how many were sent.

    Each payload is made, stamped (`bench_t`) and written to the socket at its due time.
    """
    from bench.fastpub import FastPublisher
    from services.topics import device_topic

    total = int(rate * seconds)
    with FastPublisher(f"mqtt://127.0.0.1:{mqtt_port}", f"bench-pub-{os.getpid()}") as pub:
        t0 = time.perf_counter()
        for n in range(total):
            delay = t0 + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            d = (start + n) % devices + 1
            body = json.dumps({"volume": n % 100, "bench_t": time.time()}).encode()
            pub.send(device_topic("bench", "speaker", f"spk-{d}", "status"), body)
        pub.wait_acked()
    return total


def phase(
    name: str,
    batch: bool,
    args: argparse.Namespace,
    gw: str,
    token: str,
    mqtt_port: int,
    clients: int,
    rate: float,
    start: int,
    base: Path,
) -> dict:
    out = base / f"{name}.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--client",
            str(clients),
            "--url",
            gw.replace("http", "ws") + "/ws/live" + ("?batch=1" if batch else ""),
            "--token",
            token,
            *(["--deflate"] if args.deflate else []),
            "--out",
            str(out),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    cpu = CpuMeter(os.getpid())
    cpu.mark()
    sent = publish(mqtt_port, args.devices, rate, args.seconds, start)
    # % of one core while publishing; `bench_clients` is this bench's WebSocket client process,
    # which shares the 2 cores with the system under test.
    cpu_pct = cpu.percent()
    cpu_pct.pop("chromium_all", None)
    # Let the last messages arrive, then stop the clients.
    time.sleep(10)
    assert proc.stdin is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    proc.wait(120)
    res = json.loads(out.read_text())
    lat = res["latencies"]
    return {
        "clients": clients,
        "batch": batch,
        "rate_msg_s": rate,
        "seconds": args.seconds,
        "sent": sent,
        "received_per_client": round(res["messages"] / clients, 1),
        "delivered_share": round(res["messages"] / (sent * clients), 4) if sent else None,
        "frames_per_client": round(len(lat) / clients, 1),
        "latency_ms": {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": percentile(lat, 100)},
        "clients_closed": {str(c): res["closed"].count(c) for c in sorted(set(res["closed"]))},
        "cpu_pct_of_a_core": cpu_pct,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=0, help="devices in the registry (default: rate x 6 s)")
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--latency-clients", type=int, default=5)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--fanout-rate", type=float, default=2000)
    p.add_argument("--unbatched", action="store_true", help="fan-out clients take one message per frame")
    p.add_argument(
        "--deflate", action="store_true", help="clients negotiate permessage-deflate, as browsers do"
    )
    p.add_argument("--client", type=int, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        client_main(args)
        return

    from cli.embedded import Mosquitto, Postgres, free_port
    from services.migrate import migrate
    from tests.fix_pg import private_dir

    args.devices = args.devices or int(max(args.rate, args.fanout_rate) * 6)
    base = private_dir("ioc-bench-live-")
    pg = Postgres(base / "pg", fast_unsafe=True)
    mq = Mosquitto(base / "mqtt")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pg.start()
        mq.start()
        migrate(pg.url())
        token = seed(pg.url(), args.devices)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update(
            IOC_DATABASE_URL=pg.url(), IOC_MQTT_URL=mq.url(), IOC_DATA_DIR=str(base), PYTHONPATH=str(ROOT)
        )
        port = free_port()
        log = (base / "procs.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", "ingest", "--no-onvif", "--id", "bench"],
                env=env,
                cwd=base,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", "gateway", "--port", str(port)],
                env=env,
                cwd=base,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        gw = f"http://127.0.0.1:{port}"
        wait_http(gw + "/healthz")
        # Warm-up: every device heard once (unknown -> online), then past ingest's 5 s feed throttle.
        publish(mq.port, args.devices, max(args.rate, 2000), args.devices / max(args.rate, 2000))
        time.sleep(8)
        result = {
            "devices": args.devices,
            "latency": phase(
                "latency", False, args, gw, token, mq.port, args.latency_clients, args.rate, 0, base
            ),
        }
        time.sleep(6)
        result["fanout"] = phase(
            "fanout", not args.unbatched, args, gw, token, mq.port, args.clients, args.fanout_rate, 0, base
        )
        result["cpus"] = os.cpu_count()
        print(json.dumps(result, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        mq.stop()
        pg.stop()


if __name__ == "__main__":
    main()
