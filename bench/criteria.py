"""The smart-commune criteria report at scale: 5,000 devices, 30 days, a month of broadcasts and pulls.

Prints JSON: `services.criteria.report` for one commune and for all five (p50/p99 of in-process
calls), the PDF of one commune and of all five (render time and size), and as the limit measured in
the same run the availability report by village over the same month and devices (the criteria
report reads the same rollup, once per kind it judges, so it should cost a few times that, not
more). Data is generated with SQL (bench/share.py's world) in a private PostgreSQL in a temp dir.

    .venv/bin/python bench/criteria.py [--devices 5000] [--days 30] [--n 10]
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from share import generate, pct  # noqa: E402  (bench/share.py)

from cli.embedded import Postgres  # noqa: E402
from services import criteria, reports  # noqa: E402
from services import share as share_svc  # noqa: E402
from services.criteria import pdf  # noqa: E402
from services.migrate import migrate  # noqa: E402

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def broadcasts_and_pulls(url: str, now: datetime, days: int) -> dict[str, int]:
    """Two broadcasts a day to every speaker of a commune (one in ten misses a village), and 50
    pulls a day by a province key, as the worker and the audit log leave them."""
    with psycopg.connect(url) as conn:
        communes = [r[0] for r in conn.execute("SELECT id FROM communes ORDER BY id")]
        for d in range(days):
            for k in range(2):
                at = now - timedelta(days=days - d, hours=-8 - 6 * k)
                for c in communes:
                    (bid,) = conn.execute(  # type: ignore[misc]
                        "INSERT INTO broadcasts (title, priority, text, targets, communes, starts_at, expires_at,"
                        " state, created_by) VALUES ('Bản tin', 'normal', 'x', %s, %s, %s, %s, 'finished', 'op')"
                        " RETURNING id",
                        (Jsonb({}), [c], at, at + timedelta(hours=1)),
                    ).fetchone()
                    conn.execute(
                        "INSERT INTO deliveries (broadcast_id, device_id, commune_id, village_id, kind,"
                        " occurrence_at, expires_at, state) SELECT %s, id, commune_id, village_id, kind, %s, %s,"
                        " CASE WHEN (hashtext(village_id || %s) & 15) = 0 THEN 'expired' ELSE 'done' END"
                        " FROM devices WHERE commune_id = %s AND kind = 'speaker'",
                        (bid, at, at + timedelta(hours=1), str(bid), c),
                    )
        conn.execute(
            "INSERT INTO audit_log (at, actor_kind, actor, action, status, key_id, communes)"
            " SELECT %s - make_interval(mins => g * 29), 'key', 'Sở KH&CN', 'GET /api/share/v1/changes', 200, 1, NULL"
            " FROM generate_series(1, %s) g",
            (now, days * 50),
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        n_b = conn.execute("SELECT count(*) FROM deliveries").fetchone()
        return {"deliveries": int(n_b[0]) if n_b else 0, "pulls": days * 50}


def timed(fn, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "n": n}


def words(lang: str):  # type: ignore[no-untyped-def]
    from gateway.routes.criteria import _text

    return lambda key, **f: _text(key, lang, **f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--n", type=int, default=10)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="ioc-bench-criteria-"))
    d.chmod(0o755)
    pg = Postgres(d)
    pg.start()
    try:
        url = pg.url()
        migrate(url)
        now = datetime.now(UTC)
        world = generate(url, args.devices, args.days, 24 * 60, now)
        world.update(broadcasts_and_pulls(url, now, args.days))
        end = now.astimezone(TZ).date() - timedelta(days=1)
        start = end - timedelta(days=args.days - 1)
        t0 = datetime.combine(start, datetime.min.time(), TZ).astimezone(UTC)
        t1 = datetime.combine(end + timedelta(days=1), datetime.min.time(), TZ).astimezone(UTC)
        out: dict[str, object] = {"world": world, "period": [start.isoformat(), end.isoformat()]}
        with psycopg.connect(url) as conn:

            def one() -> None:
                criteria.report(conn, start, end, ["xa-1"], now=now)
                conn.rollback()

            def every() -> None:
                criteria.report(conn, start, end, None, now=now)
                conn.rollback()

            def limit() -> None:
                devs = share_svc.report_devices(conn, share_svc.Scope(None, None))
                reports.availability(conn, devs, t0, t1, "village", now)
                conn.rollback()

            out["availability_by_village_all_ms"] = timed(limit, args.n)
            out["criteria_one_commune_ms"] = timed(one, args.n)
            out["criteria_all_communes_ms"] = timed(every, args.n)
            rep = criteria.report(conn, start, end, ["xa-1"], now=now)
            out["values_xa_1"] = {i["id"]: i["value"] for i in rep["items"]}
            names = dict(conn.execute("SELECT id, name FROM villages WHERE commune_id = 'xa-1'").fetchall())
            t = time.perf_counter()
            body = pdf.render([(rep, names)], words("vi"), "vi", TZ)
            out["pdf_one_commune"] = {"ms": round((time.perf_counter() - t) * 1000), "bytes": len(body)}
            parts = []
            for c in ("xa-1", "xa-2", "xa-3", "xa-4", "xa-5"):
                r = criteria.report(conn, start, end, [c], now=now)
                parts.append(
                    (r, dict(conn.execute("SELECT id, name FROM villages WHERE commune_id = %s", (c,))))
                )
            t = time.perf_counter()
            body = pdf.render(parts, words("vi"), "vi", TZ)
            out["pdf_five_communes"] = {"ms": round((time.perf_counter() - t) * 1000), "bytes": len(body)}
        out["note"] = "shared machine: 2 cores shared with other work; figures vary between runs"
        print(json.dumps(out, indent=2, default=str))
    finally:
        pg.stop()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
