"""The gateway under concurrent HTTP load (issue 13, item 1), with ingest running beside it.

Starts its own PostgreSQL+TimescaleDB and Mosquitto, one `ioc ingest` and one `ioc gateway`
(bench/stack.py), a registry of `--devices` speakers, an admin session and an API key. A side
publisher sends `--ingest-rate` statuses/s for the whole run. Then, for each route
(`/api/v1/status` with the admin token, `/api/share/v1/status` with the key) and each concurrency
(16, 64, 200, 1000 connections), `--seconds` of closed-loop load from a child process (raw asyncio
sockets on uvloop, keep-alive, one request at a time per connection, Retry-After not honoured):
answers/s, p50/p99 of 200s and of all answers, counts of 200/503/other and of connection errors;
a /healthz probe on its own connection every 100 ms (answered, failed, slowest); the rows ingest
committed per second meanwhile and the slowest `SELECT 1` of a separate database connection (ingest
and alerts have their own connections; the gateway's pool is its own). First, the raw limit:
/healthz (no thread, no database) at 64 connections. Prints JSON.

    .venv/bin/python bench/http_load.py [--seconds 10] [--devices 200] [--ingest-rate 200]
                                         [--concurrency 16,64,200,1000]
"""

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000, 1)


# -- the load client (a child process: its CPU is not the publisher's or the probe's)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    if close:
        raise ConnectionResetError("closed by the gateway")
    return status


async def _load(url: str, path: str, token: str, concurrency: int, seconds: float) -> dict:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    raw = (
        f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    health_raw = f"GET /healthz HTTP/1.1\r\nHost: {u.netloc}\r\n\r\n".encode()
    statuses: dict[int, int] = {}
    ok_lat: list[float] = []
    all_lat: list[float] = []
    errors = {"connect": 0, "io": 0}
    health = {"answered": 0, "failed": 0, "slowest_ms": 0.0}
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        conn = None
        while time.perf_counter() < stop_at:
            if conn is None:
                try:
                    conn = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
                except (OSError, TimeoutError):
                    errors["connect"] += 1
                    await asyncio.sleep(0.05)
                    continue
            t = time.perf_counter()
            try:
                status = await asyncio.wait_for(_request(*conn, raw), 30)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors["io"] += 1
                conn[1].close()
                conn = None
                continue
            dt = time.perf_counter() - t
            statuses[status] = statuses.get(status, 0) + 1
            all_lat.append(dt)
            if status == 200:
                ok_lat.append(dt)
        if conn is not None:
            conn[1].close()

    async def prober() -> None:
        conn = None
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
                status = await asyncio.wait_for(_request(*conn, health_raw), 5)
                dt = (time.perf_counter() - t) * 1000
                health["answered" if status == 200 else "failed"] += 1
                health["slowest_ms"] = round(max(health["slowest_ms"], dt), 1)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                health["failed"] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
            await asyncio.sleep(0.1)
        if conn is not None:
            conn[1].close()

    t0 = time.perf_counter()
    await asyncio.gather(prober(), *(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 1),
        "answers_per_s": round(sum(statuses.values()) / elapsed, 1),
        "ok_per_s": round(statuses.get(200, 0) / elapsed, 1),
        "p50_ms_ok": percentile(ok_lat, 50),
        "p99_ms_ok": percentile(ok_lat, 99),
        "p50_ms_all": percentile(all_lat, 50),
        "p99_ms_all": percentile(all_lat, 99),
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
        "healthz_probe": health,
    }


def client_main(args: argparse.Namespace) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(_load(args.url, args.path, args.token, args.concurrency, args.seconds))
    print(json.dumps(out))
    return 0


# -- the bench


def seed(db_url: str, devices: int, creds: dict[str, str]) -> None:
    import psycopg

    from services import auth, keys

    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO communes (id, name) VALUES ('bench', 'Xã Bench')")
        conn.execute("INSERT INTO villages (commune_id, id, name) VALUES ('bench', 'xom-1', 'Xóm 1')")
        conn.execute(
            "INSERT INTO devices (id, commune_id, village_id, kind, name)"
            " SELECT 'spk-' || i, 'bench', 'xom-1', 'speaker', 'Loa ' || i FROM generate_series(1, %s) i",
            (devices,),
        )
        auth.add_user(conn, "admin", secrets.token_urlsafe(16), "admin")
        creds["token"] = secrets.token_urlsafe(32)
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " SELECT %s, id, now() + interval '1 day' FROM users WHERE username = 'admin'",
            (auth.token_hash(creds["token"]),),
        )
        _, creds["key"] = keys.create(conn, "bench", None, rate_per_min=100_000_000)


class SidePublisher(threading.Thread):
    """Statuses at a steady rate for the whole run (what ingest must keep committing)."""

    def __init__(self, mqtt_url: str, devices: int, rate: float) -> None:
        super().__init__(name="bench.side-publisher", daemon=True)
        self.mqtt_url, self.devices, self.rate = mqtt_url, devices, rate
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        from bench.fastpub import FastPublisher
        from services.topics import device_topic

        with FastPublisher(self.mqtt_url, f"bench-http-pub-{os.getpid()}") as pub:
            t0 = time.perf_counter()
            while not self.stopping.is_set():
                delay = t0 + self.sent / self.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                d = self.sent % self.devices + 1
                pub.send(device_topic("bench", "speaker", f"spk-{d}", "status"), b'{"volume": 50}')
                self.sent += 1
            pub.wait_acked()


class DbProbe(threading.Thread):
    """`SELECT 1` on its own connection every 100 ms: the slowest answer in a phase."""

    def __init__(self, db_url: str) -> None:
        super().__init__(name="bench.db-probe", daemon=True)
        self.db_url = db_url
        self.stopping = threading.Event()
        self.slowest_ms = 0.0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.stopping.is_set():
                t = time.perf_counter()
                conn.execute("SELECT 1")
                self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - t) * 1000)
                time.sleep(0.1)


def stored(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM status_samples").fetchone()
    return int(row[0]) if row else 0


def phase(gw: str, path: str, token: str, concurrency: int, seconds: float, db_url: str) -> dict:
    probe = DbProbe(db_url)
    probe.start()
    rows0, t0 = stored(db_url), time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            "--url",
            gw,
            "--path",
            path,
            "--token",
            token,
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows1, t1 = stored(db_url), time.monotonic()
    probe.stopping.set()
    probe.join()
    out = json.loads(proc.stdout)
    out["ingest_rows_per_s"] = round((rows1 - rows0) / (t1 - t0), 1)
    out["db_select1_slowest_ms"] = round(probe.slowest_ms, 1)
    return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--ingest-rate", type=float, default=200)
    ap.add_argument("--concurrency", default="16,64,200,1000")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--token", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        args.concurrency = int(args.concurrency)
        return client_main(args)

    from bench.stack import stack

    levels = [int(x) for x in args.concurrency.split(",")]
    creds: dict[str, str] = {}
    with stack(
        tempfile.gettempprefix() + "-ioc-bench-http-", lambda url: seed(url, args.devices, creds)
    ) as s:
        pub = SidePublisher(s.mqtt_url, args.devices, args.ingest_rate)
        pub.start()
        time.sleep(3)  # ingest has loaded the registry and is committing
        result: dict = {
            "devices": args.devices,
            "ingest_rate_published": args.ingest_rate,
            "load_average_before": load_average(),
            "raw_healthz_64": phase(s.gateway_url, "/healthz", creds["token"], 64, args.seconds, s.db_url),
        }
        for name, path, token in (
            ("operator_status", "/api/v1/status", creds["token"]),
            ("share_status", "/api/share/v1/status", creds["key"]),
        ):
            result[name] = []
            for c in levels:
                result[name].append(phase(s.gateway_url, path, token, c, args.seconds, s.db_url))
                time.sleep(2)  # the queue drains; the next level starts from a calm gateway
        pub.stopping.set()
        pub.join()
        result["published"] = pub.sent
        time.sleep(3)
        result["stored_after"] = stored(s.db_url)
        result["load_average_after"] = load_average()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
