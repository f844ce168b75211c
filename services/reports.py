"""Availability reports, shared by operators and the province.

Availability of a device over [from, to) = online / (online + offline) time, where offline
includes `auth_failed` (the device answers but does not do its job). Time in `maintenance`
(planned) and `unknown` (never heard, or before the IOC knew the device) is left out of both
sides and reported apart. Time after `now` is not counted. Whole hours come from the rollup
(`services.rollup`), whole days from its daily sums, and the partial hours at either edge from
`state_changes` directly, so a report is exact to the second.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from services.rollup import floor_hour, progress

GROUPS = ("device", "village", "kind", "former_commune")
STATES = ("online", "offline", "maintenance", "unknown")
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ReportDevice:
    """A device as reports group it, with its state now."""

    device_id: str
    commune: str
    village: str | None
    kind: str
    state: str
    # the former commune (before the 2025 reform) of its village, if one is recorded
    former_commune: str | None = None


def _ceil(t: datetime, step: timedelta) -> datetime:
    f = _floor(t, step)
    return f if f == t else f + step


def _floor(t: datetime, step: timedelta) -> datetime:
    return _EPOCH + ((t - _EPOCH) // step) * step


# Seconds per device and state in one statement (one round trip, 5,000 rows back at most): the
# edge windows from `state_changes` (the state at a window's start is the last change at or before
# it, else what the first later change says it left, else unknown; `auth_failed` counts as
# offline), plus or minus ranges of the hourly and daily sums. Each edge window starts one
# index-only probe per device (migration 008).
_EDGES_SQL = """
dev AS (
    SELECT unnest(%(ids)s::text[]) AS device_id
), win AS (
    SELECT * FROM unnest(%(wa)s::timestamptz[], %(wb)s::timestamptz[]) AS w(a, b)
), pts AS (
    SELECT dev.device_id, win.a AS w, win.b AS e, win.a AS at, -1::bigint AS seq, coalesce(
        (SELECT c.state FROM state_changes c WHERE c.device_id = dev.device_id AND c.at <= win.a
         ORDER BY c.at DESC, c.seq DESC LIMIT 1),
        (SELECT c.prev_state FROM state_changes c WHERE c.device_id = dev.device_id AND c.at > win.a
         ORDER BY c.at, c.seq LIMIT 1),
        'unknown') AS state
    FROM dev, win
    UNION ALL
    SELECT c.device_id, win.a, win.b, c.at, c.seq, c.state
    FROM win JOIN state_changes c ON c.at > win.a AND c.at < win.b JOIN dev ON dev.device_id = c.device_id
), iv AS (
    SELECT device_id, CASE WHEN state = 'auth_failed' THEN 'offline' ELSE state END AS state,
           extract(epoch FROM coalesce(lead(at) OVER (PARTITION BY device_id, w ORDER BY at, seq), e) - at) AS s
    FROM pts
), edges AS (
    SELECT device_id,
           coalesce(sum(s) FILTER (WHERE state = 'online'), 0)::float8 AS online_s,
           coalesce(sum(s) FILTER (WHERE state = 'offline'), 0)::float8 AS offline_s,
           coalesce(sum(s) FILTER (WHERE state = 'maintenance'), 0)::float8 AS maintenance_s,
           coalesce(sum(s) FILTER (WHERE state NOT IN ('online', 'offline', 'maintenance')), 0)::float8 AS unknown_s
    FROM iv WHERE s > 0 GROUP BY device_id
)"""
_EDGES_PART = "SELECT device_id, online_s, offline_s, maintenance_s, unknown_s FROM edges"
_ROLLUP_PART = (
    "SELECT device_id, {sign}online_s, {sign}offline_s, {sign}maintenance_s, {sign}unknown_s FROM {table}"
    " WHERE {column} >= %(a{i})s AND {column} < %(b{i})s AND device_id = ANY(%(ids)s)"
)
_TOTALS = "SELECT device_id, sum(online_s), sum(offline_s), sum(maintenance_s), sum(unknown_s) FROM ("
_TABLES = {HOUR: ("availability_hourly", "hour"), DAY: ("availability_daily", "day")}


@dataclass(frozen=True)
class _Sums:
    """Rows of a rollup table to add (or subtract) for whole hours or days in [start, end)."""

    step: timedelta
    start: datetime
    end: datetime
    sign: int = 1


def _plan(
    t0: datetime, t1: datetime, done_until: datetime | None
) -> tuple[list[tuple[datetime, datetime]], list[_Sums]]:
    """The edge windows read from the change log and the rollup sums that cover the rest of
    [t0, t1): hours [h0, d0) and [d1, h1), days [d0, d1), edges [t0, h0) and [h1, t1)."""
    h0 = _ceil(t0, HOUR)
    h1 = min(floor_hour(t1), floor_hour(done_until)) if done_until else h0
    if h1 <= h0:
        # No whole hour of the range is rolled up yet: the change log alone.
        return [(t0, t1)], []
    edges = [(a, b) for a, b in ((t0, h0), (h1, t1)) if b > a]
    d0, d1 = _ceil(h0, DAY), _floor(h1, DAY)
    if d1 < d0:
        return edges, [_Sums(HOUR, h0, h1)]
    assert done_until is not None
    # A partial day is read as its hours, or as the day's sum less the hours outside the range,
    # whichever is fewer rows (the rollup has hours up to the one it is working on). Today's hours
    # are rewritten every minute: they are also the rows an index-only scan has to look up in the
    # table until autovacuum has been by, so a month up to now reads 2 rows of today, not 23.
    rolled_up = min(d1 + DAY, floor_hour(done_until) + HOUR)
    head_day = (h0 - (d0 - DAY)) // HOUR + 1 < (d0 - h0) // HOUR
    tail_day = (rolled_up - h1) // HOUR + 1 < (h1 - d1) // HOUR
    sums = [_Sums(DAY, d0 - DAY if head_day else d0, d1 + DAY if tail_day else d1)]
    sums.append(_Sums(HOUR, d0 - DAY, h0, -1) if head_day else _Sums(HOUR, h0, d0))
    sums.append(_Sums(HOUR, h1, d1 + DAY, -1) if tail_day else _Sums(HOUR, d1, h1))
    return edges, [r for r in sums if r.end > r.start]


def _query(
    ids: list[str], edges: list[tuple[datetime, datetime]], sums: list[_Sums]
) -> tuple[str, dict[str, Any]]:
    """The statement for one report, with only the parts it needs (each part costs planning time)."""
    args: dict[str, Any] = {"ids": ids, "wa": [a for a, _ in edges], "wb": [b for _, b in edges]}
    parts = [_EDGES_PART] if edges else []
    for i, r in enumerate(sums):
        table, column = _TABLES[r.step]
        parts.append(_ROLLUP_PART.format(sign="-" if r.sign < 0 else "", table=table, column=column, i=i))
        args[f"a{i}"], args[f"b{i}"] = r.start, r.end
    with_edges = f"WITH {_EDGES_SQL} " if edges else ""
    return f"{with_edges}{_TOTALS}{' UNION ALL '.join(parts)}) p GROUP BY device_id", args


def device_seconds(
    conn: psycopg.Connection, ids: list[str], t0: datetime, t1: datetime, now: datetime
) -> dict[str, list[float]]:
    """Seconds online, offline, in maintenance and unknown per device over [t0, min(t1, now))."""
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    t1 = min(t1, now)
    if t1 <= t0 or not ids:
        return out
    # This query is short but looks costly to the planner; JIT compiling would cost more than it saves.
    conn.execute("SET LOCAL jit = off")
    done_until, _ = progress(conn)
    sql, args = _query(ids, *_plan(t0, t1, done_until))
    # Never prepared: a generic plan fits no range well. Once psycopg had prepared the hourly
    # query on a pooled connection, its generic plan read the whole table (+0.3 s a report).
    for device_id, *secs in conn.execute(sql, args, prepare=False):  # type: ignore[call-overload]
        # A day's sum less some of its hours can miss by 1e-12 s: to the microsecond, and no -0.0.
        out[device_id] = [round(float(x), 6) + 0.0 for x in secs]
    return out


def _pct(online: float, offline: float) -> float | None:
    return round(100.0 * online / (online + offline), 2) if online + offline > 0 else None


def availability(
    conn: psycopg.Connection,
    devices: Sequence[ReportDevice],
    t0: datetime,
    t1: datetime,
    group_by: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """One row per device, village, (commune, kind) or (commune, former commune), sorted by its key;
    see the module docstring."""
    secs = device_seconds(conn, [d.device_id for d in devices], t0, t1, now)
    groups: dict[tuple[str, ...], list[ReportDevice]] = defaultdict(list)
    for d in devices:
        if group_by == "device":
            key: tuple[str, ...] = (d.commune, d.device_id)
        elif group_by == "village":
            key = (d.commune, d.village or "")
        elif group_by == "former_commune":
            key = (d.commune, d.former_commune or "")
        else:
            key = (d.commune, d.kind)
        groups[key].append(d)
    out = []
    for key in sorted(groups):
        members = groups[key]
        total = [0.0, 0.0, 0.0, 0.0]
        for d in members:
            for i, s in enumerate(secs.get(d.device_id, ())):
                total[i] += s
        row: dict[str, Any] = {
            "commune": key[0],
            "device_id": members[0].device_id if group_by == "device" else None,
            "village": members[0].village if group_by in ("device", "village") else None,
            "kind": members[0].kind if group_by in ("device", "kind") else None,
            "availability_pct": _pct(total[0], total[1]),
            "online_s": round(total[0], 3),
            "offline_s": round(total[1], 3),
            "maintenance_s": round(total[2], 3),
            "unknown_s": round(total[3], 3),
            "devices": len(members),
            "devices_online_now": sum(1 for d in members if d.state == "online"),
            "by_kind": None,
            "villages": None,
            "villages_all_online_now": None,
            "former_commune": key[1] or None if group_by == "former_commune" else None,
        }
        if group_by in ("village", "former_commune"):
            by_kind: dict[str, dict[str, int]] = {}
            for d in members:
                k = by_kind.setdefault(d.kind, {"devices": 0, "online_now": 0})
                k["devices"] += 1
                k["online_now"] += d.state == "online"
            row["by_kind"] = dict(sorted(by_kind.items()))
        if group_by in ("kind", "former_commune"):
            villages: dict[str, bool] = {}
            for d in members:
                if d.village:
                    villages[d.village] = villages.get(d.village, True) and d.state == "online"
            row["villages"] = len(villages)
            row["villages_all_online_now"] = sum(villages.values())
        out.append(row)
    return out
