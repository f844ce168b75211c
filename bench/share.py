"""Sharing with the province at scale: 5,000 devices and 30 days of history.

Prints JSON: /api/share/v1/status latency (p50/p99, one page of 1000 and all 5000 devices in one
call), /availability over 30 days by village (p50/p99; also in-process, without HTTP, key and
audit), the full raw /history export rate (rows/s, CSV pages of 10000 produced by PostgreSQL's
COPY; JSON on a part of it), and the availability rollup: its first run over the backfilled days,
the next minute's run, and a minute's run once the tables are analyzed (as autovacuum
leaves them in a running deployment). The gateway runs in its own process; data is
generated with SQL. Uses a private PostgreSQL in a temp dir.

    .venv/bin/python bench/share.py [--devices 5000] [--days 30] [--sample-minutes 60]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.embedded import Postgres  # noqa: E402
from services import keys, reports, rollup, share  # noqa: E402
from services.migrate import migrate  # noqa: E402

KINDS = ("speaker", "camera", "eboard", "wifi", "gateway")
COMMUNES, VILLAGES = 5, 20


def generate(url: str, devices: int, days: int, sample_min: int, now: datetime) -> dict[str, float]:
    """Registry, device state, hourly-ish samples and ~1 outage a device a day, all by SQL."""
    t = time.monotonic()
    start = now - timedelta(days=days)
    per_village = max(1, devices // (COMMUNES * VILLAGES))
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO communes (id, name) SELECT 'xa-' || c, 'Xã ' || c FROM generate_series(1, %s) c",
            (COMMUNES,),
        )
        conn.execute(
            "INSERT INTO villages (commune_id, id, name) SELECT 'xa-' || c, 'xom-' || v, 'Xóm ' || v"
            " FROM generate_series(1, %s) c, generate_series(1, %s) v",
            (COMMUNES, VILLAGES),
        )
        conn.execute(
            "INSERT INTO devices (id, commune_id, village_id, kind, name, lat, lon)"
            " SELECT format('dev-%%s-%%s-%%s', c, v, i), 'xa-' || c, 'xom-' || v, (%s::text[])[1 + i %% 5],"
            " 'Thiết bị ' || i, 10 + random(), 105 + random()"
            " FROM generate_series(1, %s) c, generate_series(1, %s) v, generate_series(1, %s) i",
            (list(KINDS), COMMUNES, VILLAGES, per_village),
        )
        conn.execute(
            "INSERT INTO device_state (device_id, state, since, last_seen, metrics)"
            " SELECT id, 'online', %s, %s, '{\"volume\": 70, \"rssi_dbm\": -60}' FROM devices",
            (start, now),
        )
        conn.commit()
        # Samples, one COPY-speed INSERT ... SELECT per day (keeps each statement short).
        for d in range(days):
            conn.execute(
                "INSERT INTO status_samples (device_id, ts, received_at, metrics)"
                " SELECT d.id, g, g, jsonb_build_object('volume', (random() * 100)::int, 'rssi_dbm',"
                " -50 - (random() * 40)::int, 'temperature_c', 30 + random() * 10, 'playing', random() < 0.5)"
                " FROM devices d, generate_series(%s::timestamptz, %s::timestamptz - interval '1 second',"
                " make_interval(mins => %s)) g",
                (start + timedelta(days=d), start + timedelta(days=d + 1), sample_min),
            )
            conn.commit()
        t_samples = time.monotonic() - t
        # Each device: online at the start, then one outage of 2..30 min each day.
        conn.execute(
            "WITH ev AS ("
            "  SELECT id AS device_id, commune_id, village_id, kind, 'online' AS state, 'unknown' AS prev, %(s)s AS at"
            "  FROM devices"
            "  UNION ALL"
            "  SELECT d.id, d.commune_id, d.village_id, d.kind, x.state, x.prev,"
            "         %(s)s + make_interval(days => g) + make_interval(secs => (hashtext(d.id || g) & 65535)) + x.off"
            "  FROM devices d, generate_series(0, %(days)s - 1) g,"
            "       LATERAL (VALUES ('offline', 'online', interval '0'),"
            "                       ('online', 'offline', make_interval(mins => 2 + (hashtext(d.id) & 15)))) x(state, prev, off)"
            ")"
            " INSERT INTO state_changes (seq, device_id, commune_id, village_id, kind, state, prev_state, at, reason)"
            " SELECT row_number() OVER (ORDER BY at, device_id), device_id, commune_id, village_id, kind, state, prev,"
            " at, 'bench' FROM ev WHERE at < %(now)s",
            {"s": start, "days": days, "now": now},
        )
        conn.execute(
            "UPDATE counters SET value = (SELECT max(seq) FROM state_changes) WHERE name = 'changes'"
        )
        conn.commit()
        conn.execute("ANALYZE")
        counts = {
            "devices": conn.execute("SELECT count(*) FROM devices").fetchone()[0],  # type: ignore[index]
            "samples": conn.execute("SELECT count(*) FROM status_samples").fetchone()[0],  # type: ignore[index]
            "state_changes": conn.execute("SELECT count(*) FROM state_changes").fetchone()[0],  # type: ignore[index]
        }
        t_rollup = time.monotonic()
        hours = rollup.run(conn, now)
        t_rollup = time.monotonic() - t_rollup
        t_next = time.monotonic()
        rollup.run(conn, now + timedelta(minutes=1))
        t_next = time.monotonic() - t_next
        conn.commit()
        conn.autocommit = True
        # A minute's run as planned with the statistics of a running deployment.
        conn.execute("ANALYZE")
        t_steady = time.monotonic()
        rollup.run(conn, now + timedelta(minutes=2))
        t_steady = time.monotonic() - t_steady
        # What autovacuum does in a running deployment (visibility map for index-only scans).
        conn.execute("VACUUM ANALYZE")
    return {
        **counts,
        "generate_s": round(t_samples, 1),
        "rollup_first_run_s": round(t_rollup, 2),
        "rollup_device_hours": hours,
        "rollup_next_run_s": round(t_next, 3),
        "rollup_run_after_analyze_s": round(t_steady, 3),
    }


def in_process(url: str, now: datetime, days: int, n: int = 10) -> dict[str, float]:
    """The village report as the route computes it, without HTTP, key check and audit."""
    lat = []
    with psycopg.connect(url) as conn:
        for _ in range(n):
            t = time.perf_counter()
            devices = share.report_devices(conn, share.Scope(None, None))
            reports.availability(conn, devices, now - timedelta(days=days), now, "village", now)
            lat.append(time.perf_counter() - t)
            conn.rollback()
    return {"p50_ms": pct(lat, 0.5), "n": n}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 1)


def timed(client: httpx.Client, path: str, n: int, **params: object) -> dict[str, float]:
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path, params=params)
        lat.append(time.perf_counter() - t)
        r.raise_for_status()
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "n": n}


def export(
    client: httpx.Client, t0: datetime, t1: datetime, fmt: str, max_pages: int = 0
) -> dict[str, float]:
    rows, pages, cursor = 0, 0, None
    t = time.perf_counter()
    while True:
        params = {"from": t0.isoformat(), "to": t1.isoformat(), "limit": 10000, "format": fmt}
        if cursor:
            params["cursor"] = cursor
        r = client.get("/api/share/v1/history", params=params)
        r.raise_for_status()
        if fmt == "csv":
            rows += r.content.count(b"\n") - 1
            cursor = r.headers.get("x-next-cursor")
        else:
            body = r.json()
            rows += len(body["items"])
            cursor = body["next_cursor"]
        pages += 1
        if cursor is None or (max_pages and pages >= max_pages):
            break
    dt = time.perf_counter() - t
    return {"rows": rows, "pages": pages, "seconds": round(dt, 2), "rows_per_s": int(rows / dt)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--sample-minutes", type=int, default=60)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="ioc-bench-share-"))
    d.chmod(0o755)
    pg = Postgres(d)
    pg.start()
    gw = None
    try:
        url = pg.url()
        migrate(url)
        now = datetime.now(UTC).replace(microsecond=0)
        data = generate(url, args.devices, args.days, args.sample_minutes, now)
        with psycopg.connect(url) as conn:
            _, secret = keys.create(conn, "bench", None, None, 1_000_000)
        port = free_port()
        env = {**os.environ, "IOC_DATABASE_URL": url}
        env.pop("IOC_MQTT_URL", None)
        gw = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import uvicorn; from gateway.app import create_app;"
                " from gateway.settings import GatewaySettings;"
                f" uvicorn.run(create_app(GatewaySettings()), host='127.0.0.1', port={port}, log_level='warning')",
            ],
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {secret}"}, timeout=60
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.2)
        client.get("/api/share/v1/status")  # warm up the pool
        out = {
            "data": data,
            "status_page_1000": timed(client, "/api/share/v1/status", args.requests),
            "status_all_in_one_call": timed(
                client, "/api/share/v1/status", max(20, args.requests // 5), limit=10000
            ),
            "availability_30d_by_village": timed(
                client,
                "/api/share/v1/availability",
                20,
                **{
                    "from": (now - timedelta(days=args.days)).isoformat(),
                    "to": now.isoformat(),
                    "group_by": "village",
                    "limit": 10000,
                },
            ),
            "availability_30d_by_village_in_process": in_process(url, now, args.days),
            "availability_30d_by_device": timed(
                client,
                "/api/share/v1/availability",
                5,
                **{
                    "from": (now - timedelta(days=args.days)).isoformat(),
                    "to": now.isoformat(),
                    "group_by": "device",
                    "limit": 10000,
                },
            ),
            "history_export_csv": export(client, now - timedelta(days=args.days), now, "csv"),
            "history_export_json_50_pages": export(client, now - timedelta(days=args.days), now, "json", 50),
            "targets": {"status_p99_ms": 100, "availability_ms": 500, "export_rows_per_s": 100000},
        }
        client.close()
        print(json.dumps(out, indent=2))
    finally:
        if gw is not None:
            gw.terminate()
            gw.wait(10)
        pg.stop()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
