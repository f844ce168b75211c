"""Backlog drain after a receiver outage: an hour of state changes pushed to a loopback LGSP.

For each scale, in a fresh database with the demo registry: the LGSP is down (503) while an hour's
worth of changes at the demo's rate (times the scale) is recorded as ingest records them; then it
comes back, and we time how long the real push worker (services/push, OAuth2 token endpoint on
loopback too) takes to deliver every change. The same run measures what the receiver alone takes:
the same bodies POSTed back to back by one client, no database (the limit for one ordered stream).

The demo's rate is estimated from simulator/scenario.py over the demo registry: random power cuts
(MTBF 8 h, 2 changes each), the flapping device (45-120 s up, 15-45 s down), and the router outage
every 30 min taking its ấp down with it.

    .venv/bin/python bench/push_drain.py [--scales 1,10,100] [--batch 500] [--backoff-cap 5]
"""

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loopback import LoopbackHttp  # noqa: E402
from cli.embedded import Postgres  # noqa: E402
from services import feed, registry, registry_file  # noqa: E402
from services.migrate import migrate  # noqa: E402
from services.push import upstreams  # noqa: E402
from services.push.worker import PushSettings, PushWorker  # noqa: E402
from services.settings import load  # noqa: E402
from services.vault import Vault  # noqa: E402
from simulator import demo, scenario  # noqa: E402

SECRET = "bench-secret"


class Lgsp(LoopbackHttp):
    """Token endpoint and receiver; counts items taken (once per Idempotency-Key)."""

    def __init__(self) -> None:
        self.down = True
        self.items = 0
        self.keys: set[str] = set()
        self.posts = 0
        self.last_at = 0.0
        self.first_ok_at = 0.0
        self.lock = threading.Lock()
        self.basic = "Basic " + base64.b64encode(f"ioc:{SECRET}".encode()).decode()
        super().__init__(self._take)

    def _take(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if path == "/token":
            ok = headers.get("authorization") == self.basic
            return (200 if ok else 401), {"access_token": "t1", "token_type": "Bearer", "expires_in": 3600}
        if headers.get("authorization") != "Bearer t1":
            return 401, {"error": "invalid_token"}
        with self.lock:
            self.posts += 1
            if self.down:
                return 503, {"ok": False}
            key = headers.get("idempotency-key") or ""
            if key not in self.keys:
                self.keys.add(key)
                self.items += len(json.loads(body)["items"])
            self.last_at = time.monotonic()
            self.first_ok_at = self.first_ok_at or self.last_at
        return 200, {"ok": True}


def demo_rate_per_hour() -> float:
    """State changes an hour in the demo, from the scenario's parameters."""
    reg = registry_file.parse_yaml(demo.TEMPLATE.read_text())
    sc = scenario.pick(reg, 0)
    n = len(reg.devices)
    random_cuts = n * (3600 / scenario.RANDOM_OUTAGE_MTBF_S) * 2
    flap_cycle = sum(scenario.FLAP_UP_S) / 2 + sum(scenario.FLAP_DOWN_S) / 2
    flapping = len(sc.flapping) * 3600 / flap_cycle * 2
    routers = set(sc.router_outage)
    below = [d for d in reg.devices if d.parent_id in routers or d.id in routers]
    router = len(below) * 2 * 3600 / scenario.ROUTER_OUTAGE.period_s
    return random_cuts + flapping + router


def load_hour(url: str, n: int) -> None:
    """n state changes spread over the last hour, as ingest records them (1,000 a transaction)."""
    with psycopg.connect(url) as conn:
        devs = conn.execute("SELECT id, commune_id, village_id, kind FROM devices ORDER BY id").fetchall()
        start = datetime.now(UTC) - timedelta(hours=1)
        state: dict[str, str] = {}
        for first in range(0, n, 1000):
            rows = []
            for i in range(first, min(n, first + 1000)):
                d = devs[i % len(devs)]
                prev = state.get(d[0], "online")
                new = "offline" if prev == "online" else "online"
                state[d[0]] = new
                rows.append(
                    (d[0], d[1], d[2], d[3], new, prev, start + timedelta(seconds=3600 * i / n), "bench")
                )
            feed.record_changes(conn, rows)
            conn.commit()


def receiver_alone(port: int, bodies: list[bytes]) -> float:
    """Items/s the receiver takes from one client POSTing back to back."""
    items = sum(len(json.loads(b)["items"]) for b in bodies)
    with httpx.Client(headers={"Authorization": "Bearer t1", "Content-Type": "application/json"}) as c:
        t = time.perf_counter()
        for i, b in enumerate(bodies):
            c.post(f"http://127.0.0.1:{port}/push", content=b, headers={"Idempotency-Key": f"alone-{i}"})
        return items / (time.perf_counter() - t)


def run_scale(pg: Postgres, scale: float, per_hour: float, args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_push_{int(scale * 100)}_{os.getpid()}"
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE bench_push_template')
    url = pg.url(name)
    lgsp = Lgsp()
    os.environ["IOC_BENCH_LGSP_SECRET"] = SECRET
    ups = upstreams.parse(
        "upstreams:\n  - id: lgsp\n"
        f"    url: http://127.0.0.1:{lgsp.port}/push\n"
        f"    oauth2: {{token_url: 'http://127.0.0.1:{lgsp.port}/token', client_id: ioc,"
        " client_secret: '${IOC_BENCH_LGSP_SECRET}'}\n"
        f"    send: [changes]\n    batch: {args.batch}\n"
    )
    s = load(
        PushSettings,
        _env_file=None,
        database_url=url,
        push_poll_s=1.0,
        push_backoff_s=1.0,
        push_backoff_cap_s=args.backoff_cap,
    )
    worker = PushWorker(s, ups, ngsi=None)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(worker.run(stop)), daemon=True)
    thread.start()
    try:
        while not worker.active:
            time.sleep(0.05)
        time.sleep(1.5)  # cursors start at the current head: changes from here on are pushed
        n = round(per_hour * scale)
        load_hour(url, n)
        while lgsp.posts < 2:
            time.sleep(0.1)
        time.sleep(args.outage_tail_s)  # the worker backs off up to the cap while the LGSP is down
        with psycopg.connect(url) as conn:
            queued = conn.execute(
                "SELECT coalesce(sum(items), 0) FROM push_outbox WHERE status = 'pending'"
            ).fetchone()
        up_at = time.monotonic()
        lgsp.down = False
        deadline = up_at + args.timeout_s
        while lgsp.items < n and time.monotonic() < deadline:
            time.sleep(0.05)
        done_at = lgsp.last_at
        delivered = lgsp.items
        with psycopg.connect(url) as conn:
            bodies = [
                r[0].encode()
                for r in conn.execute(
                    "SELECT body::text FROM push_outbox WHERE status = 'delivered' ORDER BY seq"
                )
            ]
            rows = conn.execute("SELECT count(*) FROM push_outbox").fetchone()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
    alone = receiver_alone(lgsp.port, bodies)
    lgsp.close()
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    drain_s = max(1e-9, done_at - lgsp.first_ok_at) if delivered >= n else None
    return {
        "scale": scale,
        "changes": n,
        "delivered": delivered,
        "queued_in_outbox_during_outage": int(queued[0]) if queued else 0,
        "outbox_rows": int(rows[0]) if rows else 0,
        "first_delivery_after_receiver_up_s": round(lgsp.first_ok_at - up_at, 2)
        if lgsp.first_ok_at
        else None,
        "drain_s": round(drain_s, 3) if drain_s else None,
        "receiver_up_to_all_delivered_s": round(done_at - up_at, 2) if delivered >= n else None,
        "drain_items_per_s": round(n / drain_s) if drain_s and n > args.batch else None,
        "receiver_alone_items_per_s": round(alone),
        "ratio_to_receiver_alone": round(n / drain_s / alone, 2) if drain_s and n > args.batch else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,10,100", help="multiples of the demo's rate of changes")
    ap.add_argument("--batch", type=int, default=500, help="items per POST (the upstream's batch:)")
    ap.add_argument("--backoff-cap", type=float, default=5.0, help="IOC_PUSH_BACKOFF_CAP_S for the run")
    ap.add_argument("--outage-tail-s", type=float, default=3.0)
    ap.add_argument("--timeout-s", type=float, default=600.0)
    args = ap.parse_args()
    per_hour = demo_rate_per_hour()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        Path(tmp).chmod(0o755)
        pg = Postgres(Path(tmp), fast_unsafe=True)
        pg.start()
        try:
            with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench_push_template")
            migrate(pg.url("bench_push_template"))
            with psycopg.connect(pg.url("bench_push_template")) as conn:
                registry.import_registry(
                    conn,
                    registry_file.parse_yaml(demo.TEMPLATE.read_text()),
                    Vault("bench-secret-key-0123456789"),
                )
            results = [run_scale(pg, float(x), per_hour, args) for x in args.scales.split(",")]
        finally:
            pg.stop()
    print(
        json.dumps(
            {
                "bench": "push_drain",
                "note": "shared machine (2 cores, other work running); one upstream, all communes",
                "demo_changes_per_hour_estimated": round(per_hour, 1),
                "batch": args.batch,
                "backoff_cap_s": args.backoff_cap,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
