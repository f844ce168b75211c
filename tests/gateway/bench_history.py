"""Latency of the operators' list and history routes on a private cluster; prints JSON.

    .venv/bin/python -m tests.gateway.bench_history [--devices 5000] [--days 30]

One speaker with a status every 30 s for `--days` days and a state change every ~2 h; `--devices`
devices in the registry. Each route is timed in-process (TestClient, JSON included), median of 5.
"""

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from cli.embedded import Postgres
from gateway.app import create_app
from services import registry, registry_file
from services.migrate import migrate
from tests.fix_pg import private_dir
from tests.gateway.conftest import gateway_settings, headers_for, password_hash


def registry_yaml(n: int) -> str:
    lines = ["commune: {id: bench, name: Bench}", "villages:", "  - {id: v1, name: V1}", "devices:"]
    lines += [f"  - {{id: spk-{i:05d}, kind: speaker, village: v1, heartbeat_s: 30}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def fill(url: str, devices: int, days: int, now: datetime) -> None:
    with psycopg.connect(url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(registry_yaml(devices)), None)
        conn.execute(
            "INSERT INTO users (username, password_hash, role) VALUES ('admin', %s, 'admin')",
            (password_hash(),),
        )
        start = now - timedelta(days=days)
        conn.execute(
            "INSERT INTO status_samples (device_id, ts, received_at, metrics)"
            " SELECT 'spk-00000', t, t, jsonb_build_object('volume', (random() * 100)::int,"
            " 'battery_pct', 50 + random() * 50, 'playing', random() > 0.5)"
            " FROM generate_series(%s::timestamptz, %s, interval '30 seconds') AS t",
            (start, now),
        )
        conn.execute(
            "INSERT INTO state_changes (seq, device_id, commune_id, village_id, kind, state, at)"
            " SELECT row_number() OVER (), 'spk-00000', 'bench', 'v1', 'speaker',"
            " CASE WHEN row_number() OVER () %% 2 = 0 THEN 'offline' ELSE 'online' END, t"
            " FROM generate_series(%s::timestamptz, %s, interval '2 hours 7 minutes') AS t",
            (start, now),
        )
        conn.execute("ANALYZE")


def timed(client: TestClient, url: str, headers: dict[str, str], runs: int = 5) -> dict[str, object]:
    times, rows = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(url, headers=headers)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
        rows = len(r.json()["items"])
    return {"route": url, "rows": rows, "median_ms": round(statistics.median(times) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    pg = Postgres(private_dir("ioc-bench-"), fast_unsafe=True)
    pg.start()
    try:
        migrate(pg.url())
        now = datetime.now(UTC)
        fill(pg.url(), args.devices, args.days, now)
        h = headers_for(pg.url())()
        d = f"{args.days}"
        with TestClient(create_app(gateway_settings(pg.url()))) as c:
            results = [
                timed(c, "/api/v1/devices?limit=10000", h),
                timed(c, "/api/v1/status?limit=10000", h),
                timed(c, "/api/v1/devices/spk-00000/history", h),
                timed(
                    c, f"/api/v1/devices/spk-00000/history?from={(now - timedelta(days=args.days)).date()}", h
                ),
                timed(
                    c,
                    f"/api/v1/devices/spk-00000/history?from={(now - timedelta(days=6)).date()}&bucket=1m"
                    "&limit=10000",
                    h,
                ),
            ]
        print(json.dumps({"devices": args.devices, "samples_days": d, "results": results}, indent=1))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
