"""The measures a criteria file may choose (catalogue.MEASURES), computed over the IOC's own data.

Each returns `(value, evidence)`: the value in the measure's unit (None when the period holds no
data to judge by) and the rows it was computed from, which the report shows so that a reader can
check the figure.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from services import reports
from services.broadcasts.model import village_reached
from services.reports import ReportDevice


@dataclass(frozen=True)
class Window:
    """What one report is about: [start, end) in UTC, the communes (None: all), and now."""

    start: datetime
    end: datetime
    communes: tuple[str, ...] | None
    now: datetime
    # the kinds the report judges: their devices' seconds are read in one query, once
    kinds: tuple[str, ...] = ()
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Village:
    commune: str
    id: str
    name: str
    former_commune: str | None


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


def villages(conn: psycopg.Connection, w: Window) -> list[Village]:
    """Every village of the report's communes, by commune and id."""
    sql = "SELECT commune_id, id, name, former_commune FROM villages"
    args: list[Any] = []
    if w.communes is not None:
        sql += " WHERE commune_id = ANY(%s)"
        args.append(list(w.communes))
    return [Village(*r) for r in conn.execute(sql + " ORDER BY commune_id, id", args)]  # type: ignore[call-overload]


def devices(conn: psycopg.Connection, w: Window, kinds: Sequence[str]) -> list[ReportDevice]:
    """The devices of `kinds` in the communes (retired ones are not judged)."""
    sql = (
        "SELECT d.id, d.commune_id, d.village_id, d.kind, coalesce(s.state, 'unknown') FROM devices d"
        " LEFT JOIN device_state s ON s.device_id = d.id WHERE d.retired_at IS NULL AND d.kind = ANY(%s)"
    )
    args: list[Any] = [list(kinds)]
    if w.communes is not None:
        sql += " AND d.commune_id = ANY(%s)"
        args.append(list(w.communes))
    return [ReportDevice(*r) for r in conn.execute(sql + " ORDER BY d.id", args)]  # type: ignore[call-overload]


def _of_kind(
    conn: psycopg.Connection, w: Window, kind: str
) -> tuple[list[ReportDevice], dict[str, list[float]]]:
    """The devices of `kind` and their seconds per state, from one read for every kind judged."""
    if "secs" not in w.memo:
        devs = devices(conn, w, sorted({*w.kinds, kind}))
        w.memo["devices"] = devs
        w.memo["secs"] = reports.device_seconds(conn, [d.device_id for d in devs], w.start, w.end, w.now)
    elif kind not in w.kinds and kind not in w.memo.setdefault("extra", {}):
        devs = devices(conn, w, [kind])
        w.memo["extra"][kind] = (
            devs,
            reports.device_seconds(conn, [d.device_id for d in devs], w.start, w.end, w.now),
        )
    if kind in w.memo.get("extra", {}):
        return w.memo["extra"][kind]  # type: ignore[no-any-return]
    return [d for d in w.memo["devices"] if d.kind == kind], w.memo["secs"]


def availability(
    conn: psycopg.Connection, w: Window, vs: list[Village], kind: str
) -> tuple[float | None, list[dict[str, Any]]]:
    """Online / (online + offline) time of every device of `kind` over the period, in %; the
    evidence is one row per village (devices with no village: a row of their own)."""
    devs, secs = _of_kind(conn, w, kind)
    names = {(v.commune, v.id): v for v in vs}
    rows: dict[tuple[str, str | None], dict[str, Any]] = {}
    total_on = total_off = 0.0
    for d in devs:
        on, off = secs.get(d.device_id, [0.0, 0.0])[:2]
        total_on, total_off = total_on + on, total_off + off
        v = names.get((d.commune, d.village or ""))
        r = rows.setdefault(
            (d.commune, d.village),
            {
                "commune": d.commune,
                "village": d.village,
                "village_name": v.name if v else None,
                "former_commune": v.former_commune if v else None,
                "kind": kind,
                "devices": 0,
                "online_s": 0.0,
                "offline_s": 0.0,
            },
        )
        r["devices"] += 1
        r["online_s"] += on
        r["offline_s"] += off
    out = []
    for key in sorted(rows, key=lambda k: (k[0], k[1] or "")):
        r = rows[key]
        r["availability_pct"] = _pct(r["online_s"], r["online_s"] + r["offline_s"])
        r["online_s"], r["offline_s"] = round(r["online_s"], 3), round(r["offline_s"], 3)
        out.append(r)
    return _pct(total_on, total_on + total_off), out


def village_coverage(
    conn: psycopg.Connection, w: Window, vs: list[Village], kind: str, min_pct: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """Villages with at least one device of `kind` available `min_pct` % of the period or more, in %
    of all villages (a village with none counts as not covered)."""
    devs, secs = _of_kind(conn, w, kind)
    by_village: dict[tuple[str, str], list[float | None]] = defaultdict(list)
    for d in devs:
        if d.village:
            on, off = secs.get(d.device_id, [0.0, 0.0])[:2]
            by_village[(d.commune, d.village)].append(_pct(on, on + off))
    out = []
    for v in vs:
        pcts = by_village.get((v.commune, v.id), [])
        known = [p for p in pcts if p is not None]
        best = max(known) if known else None
        out.append(
            {
                "commune": v.commune,
                "village": v.id,
                "village_name": v.name,
                "former_commune": v.former_commune,
                "kind": kind,
                "devices": len(pcts),
                "best_availability_pct": best,
                "working": best is not None and best >= min_pct,
            }
        )
    return _pct(sum(1 for r in out if r["working"]), len(out)), out


_BROADCASTS_SQL = """
SELECT b.id, b.title, b.priority, d.occurrence_at, max(d.expires_at) OVER (PARTITION BY b.id, d.occurrence_at),
       d.commune_id, d.village_id, d.kind, d.state, b.targets -> 'villages_resolved'
FROM deliveries d JOIN broadcasts b ON b.id = d.broadcast_id
WHERE d.occurrence_at >= %(t0)s AND d.occurrence_at < %(t1)s AND b.state <> 'cancelled' {scope}
ORDER BY d.occurrence_at, b.id
"""


def broadcast_reach(conn: psycopg.Connection, w: Window) -> tuple[float | None, list[dict[str, Any]]]:
    """Broadcast occurrences of the period that reached every village they targeted (SPEC §9's
    rule: a speaker `done`, or an e-board `accepted` where only e-boards were targeted), in %.
    Cancelled broadcasts are left out, and so is an occurrence still running that has not yet
    reached every village (it is listed, not counted)."""
    scope = "" if w.communes is None else "AND d.commune_id = ANY(%(communes)s)"
    args = {"t0": w.start, "t1": w.end, "communes": list(w.communes or ())}
    occ: dict[tuple[int, datetime], dict[str, Any]] = {}
    for bid, title, priority, at, expires, commune, village, kind, state, resolved in conn.execute(
        _BROADCASTS_SQL.format(scope=scope),
        args,  # type: ignore[arg-type]
    ):
        o = occ.setdefault(
            (bid, at),
            {
                "broadcast_id": bid,
                "title": title,
                "priority": priority,
                "occurrence_at": at,
                "expires_at": expires,
                "villages": defaultdict(list),
            },
        )
        for cv in resolved or []:
            c, _, v = str(cv).partition("/")
            if w.communes is None or c in w.communes:
                o["villages"].setdefault((c, v), [])
        if village is not None:
            o["villages"][(commune, village)].append((kind, state))
    out = []
    counted = full = 0
    for o in occ.values():
        reached = sorted(f"{c}/{v}" for (c, v), ks in o["villages"].items() if village_reached(ks))
        missed = sorted(f"{c}/{v}" for (c, v), ks in o["villages"].items() if not village_reached(ks))
        done = not missed
        over = o["expires_at"] <= w.now
        row = {
            "broadcast_id": o["broadcast_id"],
            "title": o["title"],
            "priority": o["priority"],
            "occurrence_at": o["occurrence_at"],
            "villages": sorted(reached + missed),
            "villages_targeted": len(reached) + len(missed),
            "villages_reached": len(reached),
            "villages_not_reached": missed,
            "reached_all": done,
            "counted": done or over,
        }
        if row["counted"]:
            counted += 1
            full += done
        out.append(row)
    return _pct(full, counted), out


def _has_table(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,)


def _columns(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
    return {r[0] for r in rows}


def data_shared(conn: psycopg.Connection, w: Window) -> tuple[float | None, list[dict[str, Any]]]:
    """Calls by partners' API keys that were answered with data (2xx, or 304: the partner's copy
    was current) plus pushes (POSTs, each of `items` rows) delivered to upstreams and NGSI-LD
    subscribers, in the period.

    Pulls come from the audit log (every sharing call has a row, services.audit); a call of a key
    of every commune that asked for all of them concerns every commune. Pushes come from the push
    outbox's delivered rows; until that table exists (an older database) there are none.
    """
    args: dict[str, Any] = {"t0": w.start, "t1": w.end, "communes": list(w.communes or ())}
    scope = "" if w.communes is None else "AND (communes IS NULL OR communes && %(communes)s::text[])"
    sql = (
        "SELECT actor, key_id, count(*), max(at) FROM audit_log WHERE actor_kind = 'key' AND key_id IS NOT NULL"  # noqa: S608
        f" AND status BETWEEN 200 AND 399 AND at >= %(t0)s AND at < %(t1)s {scope}"
        " GROUP BY actor, key_id ORDER BY actor, key_id"
    )
    out: list[dict[str, Any]] = [
        {"direction": "pull", "partner": actor, "key_id": key_id, "count": n, "items": None, "last_at": last}
        for actor, key_id, n, last in conn.execute(sql, args)  # type: ignore[call-overload]
    ]
    if _has_table(conn, "push_outbox") and {"target", "delivered_at"} <= (
        cols := _columns(conn, "push_outbox")
    ):
        where = "delivered_at >= %(t0)s AND delivered_at < %(t1)s"
        if "status" in cols:
            where += " AND status = 'delivered'"
        if w.communes is not None and "communes" in cols:
            where += " AND (communes IS NULL OR communes && %(communes)s::text[])"
        items = "sum(items)" if "items" in cols else "count(*)"
        sql = (
            f"SELECT target, count(*), {items}, max(delivered_at) FROM push_outbox"  # noqa: S608
            f" WHERE {where} GROUP BY target ORDER BY target"
        )
        out += [
            {
                "direction": "push",
                "partner": target,
                "key_id": None,
                "count": n,
                "items": int(k),
                "last_at": last,
            }
            for target, n, k, last in conn.execute(sql, args)  # type: ignore[call-overload]
        ]
    return float(sum(r["count"] for r in out)), out
