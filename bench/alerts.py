"""Alert latency and noise: 5,000 devices, village routers going down, 1 % flapping.

Prints JSON: time from the state change (as ingest records it) to the notification received by a
local json:// receiver, minus the rule's `for` duration (p50/p99), and how many notifications were
sent per incident. Uses IOC_DATABASE_URL, or starts a private PostgreSQL in a temp dir.

    .venv/bin/python bench/alerts.py [--villages 50] [--per-village 100] [--routers 5] [--for-s 5]

With --idle, only the evaluator's tick on an idle commune: every device online with a few status
fields, no incident; prints the tick time (p50/max over --ticks) and the tick after one device's
status changed, and while --recent rows are inside the re-read margin (the rows that devices at a
60 s heartbeat write in ~10 s: statuses that change nothing but `updated_at`).
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loopback import LoopbackHttp  # noqa: E402
from cli.embedded import Postgres  # noqa: E402
from services import feed, registry, registry_file  # noqa: E402
from services.alerts.engine import AlertsSettings, Engine  # noqa: E402
from services.alerts.evaluator import Evaluator  # noqa: E402
from services.migrate import migrate  # noqa: E402
from services.settings import load  # noqa: E402

KINDS = ("speaker", "camera", "eboard", "wifi")


class Receiver(LoopbackHttp):
    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        super().__init__(self._take)

    def _take(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, None]:
        self.got.append((time.time(), json.loads(body)))
        return 200, None


def registry_yaml(villages: int, per_village: int) -> str:
    devices = []
    for v in range(villages):
        gw = f"gw-v{v}"
        devices.append({"id": gw, "kind": "gateway", "village": f"v{v}", "name": f"Router ấp {v}"})
        for i in range(per_village - 1):
            devices.append(
                {"id": f"d-v{v}-{i}", "kind": KINDS[i % len(KINDS)], "village": f"v{v}", "parent": gw}
            )
    return yaml.safe_dump(
        {
            "commune": {"id": "bench", "name": "Xã Bench"},
            "villages": [{"id": f"v{v}", "name": f"Ấp {v}"} for v in range(villages)],
            "devices": devices,
        }
    )


def transition(url: str, changes: list[tuple[str, str]]) -> float:
    """Write state transitions as ingest does (state, change log, live feed); returns commit time."""
    at = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.transaction():
        ids = [d for d, _ in changes]
        info = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT d.id, d.commune_id, d.village_id, d.kind, s.state FROM devices d JOIN device_state s"
                " ON s.device_id = d.id WHERE d.id = ANY(%s) ORDER BY d.id FOR UPDATE OF s",
                (ids,),
            )
        }
        conn.execute(
            "UPDATE device_state s SET state = u.state, since = %s, last_seen = %s, updated_at = now()"
            " FROM unnest(%s::text[], %s::text[]) AS u(id, state) WHERE s.device_id = u.id",
            (at, at, ids, [s for _, s in changes]),
        )
        feed.record_changes(conn, [(d, *info[d][:3], s, info[d][3], at, "bench") for d, s in changes])
        feed.publish(
            conn,
            [
                {
                    "type": "status",
                    "device_id": d,
                    "commune": info[d][0],
                    "village": info[d][1],
                    "kind": info[d][2],
                    "state": s,
                    "since": at.isoformat(),
                    "metrics": {},
                }
                for d, s in changes
            ],
        )
    return time.time()


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))], 3)


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    t_setup = time.monotonic()
    with psycopg.connect(url) as conn:
        registry.import_registry(
            conn, registry_file.parse_yaml(registry_yaml(args.villages, args.per_village)), None
        )
        conn.execute("UPDATE device_state SET state = 'online', since = now(), last_seen = now()")
        conn.commit()
        n_devices = conn.execute("SELECT count(*) FROM devices").fetchone()[0]  # type: ignore[index]
    receiver = Receiver()
    tmp = Path(tempfile.mkdtemp(prefix="ioc-bench-alerts-"))
    cfg = tmp / "alerts.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "rules": {
                    "offline": {
                        "for_s": args.for_s,
                        "flap_count": 4,
                        "flap_window_s": 600,
                        "flap_clear_s": 600,
                    }
                },
                "channels": {"ops": f"json://127.0.0.1:{receiver.port}/hook"},
                "routes": [{"channels": ["ops"]}],
            }
        )
    )
    settings = load(AlertsSettings, _env_file=None, database_url=url, alerts_file=cfg, alerts_name="bench")
    engine = Engine(settings)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(engine.run(stop)), daemon=True)
    thread.start()
    while not engine.active:
        time.sleep(0.05)
    time.sleep(2)  # let it load and settle
    setup_s = time.monotonic() - t_setup

    # 1 % of devices, outside the villages whose router goes down, flap every 0.5 s.
    routers = [f"gw-v{v}" for v in range(args.routers)]
    pool = [f"d-v{v}-{i}" for v in range(args.routers, args.villages) for i in range(args.per_village - 1)]
    flappers = pool[:: max(1, len(pool) // max(1, n_devices // 100))][: n_devices // 100]
    offline_count: dict[str, int] = {d: 0 for d in flappers}
    flap_start: dict[str, float] = {}
    flapping = threading.Event()
    flapping.set()

    def flap() -> None:
        state = "offline"
        while flapping.is_set():
            t = transition(url, [(d, state) for d in flappers])
            if state == "offline":
                for d in flappers:
                    offline_count[d] += 1
                    if offline_count[d] == 4:  # flap_count: the condition becomes true here
                        flap_start[d] = t
            state = "online" if state == "offline" else "offline"
            time.sleep(0.5)
        transition(url, [(d, "online") for d in flappers])

    flapper = threading.Thread(target=flap, daemon=True)
    flapper.start()
    router_down: dict[str, float] = {}
    for gw in routers:
        v = gw.removeprefix("gw-")
        children = [f"d-{v}-{i}" for i in range(args.per_village - 1)]
        # The router and every device behind it go offline together (their LWTs arrive at once).
        router_down[gw] = transition(url, [(gw, "offline")] + [(c, "offline") for c in children])
        time.sleep(1.0)
    deadline = time.time() + args.for_s + 10
    while time.time() < deadline and len(receiver.got) < len(routers) + len(flappers):
        time.sleep(0.2)
    time.sleep(2)
    flapping.clear()
    flapper.join()
    opened = list(receiver.got)
    for gw in routers:
        v = gw.removeprefix("gw-")
        transition(url, [(gw, "online")] + [(f"d-{v}-{i}", "online") for i in range(args.per_village - 1)])
    time.sleep(3)
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)

    def first(device: str) -> float | None:
        return next((t for t, m in opened if f"({device}," in m["message"]), None)

    router_lat = [first(gw) - router_down[gw] - args.for_s for gw in routers if first(gw)]  # type: ignore[operator]
    flap_lat = [first(d) - flap_start[d] for d in flappers if first(d) and d in flap_start]  # type: ignore[operator]
    with psycopg.connect(url, autocommit=True) as conn:
        by_device = dict(conn.execute("SELECT device_id, count(*) FROM alerts GROUP BY device_id").fetchall())
        affected = sorted(
            {
                r[0]
                for r in conn.execute("SELECT cardinality(affected) FROM alerts WHERE device_id LIKE 'gw-%'")
            }
        )
        bench_cfg = engine_cfg(cfg)
        ev = Evaluator(conn, lambda: bench_cfg, public_url="http://x")
        ev.load()
        ticks = []
        for _ in range(10):
            t0 = time.perf_counter()
            ev.tick()
            ticks.append((time.perf_counter() - t0) * 1000)
    alerts_children = sum(
        n for d, n in by_device.items() if d.startswith(tuple(f"d-{g[3:]}-" for g in routers))
    )
    sent = [m for _, m in receiver.got]
    return {
        "devices": n_devices,
        "routers_down": len(routers),
        "children_behind_them": len(routers) * (args.per_village - 1),
        "flapping_devices": len(flappers),
        "for_s": args.for_s,
        "tick_s": settings.alerts_tick_s,
        "latency_after_for_s": {
            "router_p50": pct(router_lat, 50),
            "router_p99": pct(router_lat, 99),
            "router_max": pct(router_lat, 100),
            "flapping_p50": pct(flap_lat, 50),
            "flapping_p99": pct(flap_lat, 99),
            "all_p50": pct(router_lat + flap_lat, 50),
            "all_p99": pct(router_lat + flap_lat, 99),
        },
        "incidents": len(routers) + len(flappers),
        "alerts": sum(by_device.values()),
        "alerts_for_devices_behind_down_routers": alerts_children,
        "max_alerts_per_device": max(by_device.values(), default=0),
        "notifications": {
            "open": sum(m["title"].startswith("[CẢNH BÁO]") for m in sent),
            "resolved": sum(m["title"].startswith("[ĐÃ KHẮC PHỤC]") for m in sent),
            "total": len(sent),
        },
        "affected_listed_per_router_alert": affected,
        "evaluator_tick_ms_idle_5000_devices": {"p50": pct(ticks, 50), "max": pct(ticks, 100)},
        "setup_s": round(setup_s, 1),
    }


def idle(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The cost of a tick when nothing happens, the steady state of a commune."""
    from services.alerts import config

    with psycopg.connect(url) as conn:
        registry.import_registry(
            conn, registry_file.parse_yaml(registry_yaml(args.villages, args.per_village)), None
        )
        conn.execute(
            "UPDATE device_state SET state = 'online', since = now(), last_seen = now(), updated_at = now(),"
            " metrics = jsonb_build_object('power', 'mains', 'battery_pct', 80, 'rssi', -61,"
            " 'temperature_c', 41.5, 'uptime_s', 86400, 'fw', '2.4.1', 'screen_on', true, 'uplink_up', true)"
        )
        conn.commit()
        n_devices = conn.execute("SELECT count(*) FROM device_state").fetchone()[0]  # type: ignore[index]
    cfg = config.build({"rules": {"offline": {"for_s": args.for_s}}})
    with psycopg.connect(url, autocommit=True) as conn:
        ev = Evaluator(conn, lambda: cfg, public_url="http://x")
        ev.load()
        t0 = time.perf_counter()
        ev.tick()  # the first tick after a takeover reads and evaluates everything
        full_ms = (time.perf_counter() - t0) * 1000
        # past the re-read margin of rows written just before: the steady state
        time.sleep(args.settle_s)
        ticks = []
        for _ in range(args.ticks):
            t0 = time.perf_counter()
            ev.tick()
            ticks.append((time.perf_counter() - t0) * 1000)
        with psycopg.connect(url, autocommit=True) as other:
            other.execute(
                "UPDATE device_state SET metrics = metrics || '{\"battery_pct\": 79}', updated_at = now()"
                " WHERE device_id = 'd-v1-1'"
            )
        t0 = time.perf_counter()
        ev.tick()
        changed_ms = (time.perf_counter() - t0) * 1000
        with psycopg.connect(url, autocommit=True) as other:
            other.execute(
                "UPDATE device_state SET last_seen = now(), updated_at = now() WHERE device_id IN"
                " (SELECT device_id FROM device_state ORDER BY device_id LIMIT %s)",
                (args.recent,),
            )
        ev.tick()
        recent = []
        for _ in range(args.ticks):
            t0 = time.perf_counter()
            ev.tick()
            recent.append((time.perf_counter() - t0) * 1000)
    return {
        "devices": n_devices,
        "ticks": len(ticks),
        "first_tick_full_read_ms": round(full_ms, 3),
        "idle_tick_ms": {"p50": pct(ticks, 50), "p90": pct(ticks, 90), "max": pct(ticks, 100)},
        "tick_after_one_status_ms": round(changed_ms, 3),
        f"idle_tick_ms_{args.recent}_rows_in_margin": {
            "p50": pct(recent, 50),
            "p90": pct(recent, 90),
            "max": pct(recent, 100),
        },
    }


def engine_cfg(path: Path) -> Any:
    from services.alerts import config

    return config.build(config.load_file(path))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--villages", type=int, default=50)
    p.add_argument("--per-village", type=int, default=100)
    p.add_argument("--routers", type=int, default=5, help="village routers that go down, 1 s apart")
    p.add_argument("--for-s", type=float, default=5.0, help="the offline rule's `for` duration")
    p.add_argument("--idle", action="store_true", help="measure only the idle tick")
    p.add_argument("--ticks", type=int, default=50, help="idle ticks measured (--idle)")
    p.add_argument("--settle-s", type=float, default=11.0, help="wait before measuring (--idle)")
    p.add_argument("--recent", type=int, default=900, help="rows written within the margin (--idle)")
    args = p.parse_args()
    url = os.environ.get("IOC_DATABASE_URL")
    pg = None
    if not url:
        d = Path(tempfile.mkdtemp(prefix="ioc-bench-pg-"))
        d.chmod(0o755)
        pg = Postgres(d, fast_unsafe=True)
        pg.start()
        url = pg.url()
    try:
        migrate(url)
        print(json.dumps((idle if args.idle else run)(url, args), indent=2, ensure_ascii=False))
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
