"""Availability reports, shared by operators and the district.

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

from services.rollup import INTERVALS_SQL, floor_hour, progress

GROUPS = ("device", "village", "kind")
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


def _ceil(t: datetime, step: timedelta) -> datetime:
    f = _floor(t, step)
    return f if f == t else f + step


def _floor(t: datetime, step: timedelta) -> datetime:
    return _EPOCH + ((t - _EPOCH) // step) * step


_EDGE_SQL = "".join(
    (
        INTERVALS_SQL,
        "SELECT device_id, state, sum(extract(epoch FROM b - a)) FROM iv WHERE b > a GROUP BY 1, 2",
    )
)


def _from_changes(
    conn: psycopg.Connection, ids: list[str], t0: datetime, t1: datetime, out: dict[str, list[float]]
) -> None:
    if t1 <= t0 or not ids:
        return
    rows = conn.execute(_EDGE_SQL, {"ids": ids, "starts": [t0] * len(ids), "tmin": t0, "t1": t1})  # type: ignore[arg-type]
    for device_id, state, s in rows:
        i = STATES.index(state) if state in STATES else 3
        out[device_id][i] += float(s)


def _from_rollup(
    conn: psycopg.Connection,
    table: str,
    column: str,
    ids: list[str],
    t0: datetime,
    t1: datetime,
    out: dict[str, list[float]],
) -> None:
    if t1 <= t0 or not ids:
        return
    sql = (
        f"SELECT device_id, sum(online_s), sum(offline_s), sum(maintenance_s), sum(unknown_s) FROM {table}"  # noqa: S608
        f" WHERE device_id = ANY(%s) AND {column} >= %s AND {column} < %s GROUP BY device_id"
    )
    for device_id, *secs in conn.execute(sql, (ids, t0, t1)):  # type: ignore[arg-type]
        acc = out[device_id]
        for i, s in enumerate(secs):
            acc[i] += float(s)


def device_seconds(
    conn: psycopg.Connection, ids: list[str], t0: datetime, t1: datetime, now: datetime
) -> dict[str, list[float]]:
    """Seconds online, offline, in maintenance and unknown per device over [t0, min(t1, now))."""
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    t1 = min(t1, now)
    if t1 <= t0:
        return out
    # These queries are short but look costly to the planner; JIT compiling would cost more than it saves.
    conn.execute("SET LOCAL jit = off")
    done_until, _ = progress(conn)
    h0 = _ceil(t0, HOUR)
    h1 = min(floor_hour(t1), floor_hour(done_until)) if done_until else h0
    if h1 <= h0:
        _from_changes(conn, ids, t0, t1, out)
        return out
    d0, d1 = _ceil(h0, DAY), _floor(h1, DAY)
    if d1 > d0:
        _from_rollup(conn, "availability_hourly", "hour", ids, h0, d0, out)
        _from_rollup(conn, "availability_daily", "day", ids, d0, d1, out)
        _from_rollup(conn, "availability_hourly", "hour", ids, d1, h1, out)
    else:
        _from_rollup(conn, "availability_hourly", "hour", ids, h0, h1, out)
    _from_changes(conn, ids, t0, h0, out)
    _from_changes(conn, ids, h1, t1, out)
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
    """One row per device, village or (commune, kind), sorted by its key; see the module docstring."""
    secs = device_seconds(conn, [d.device_id for d in devices], t0, t1, now)
    groups: dict[tuple[str, ...], list[ReportDevice]] = defaultdict(list)
    for d in devices:
        if group_by == "device":
            key: tuple[str, ...] = (d.commune, d.device_id)
        elif group_by == "village":
            key = (d.commune, d.village or "")
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
            "village": members[0].village if group_by != "kind" else None,
            "kind": members[0].kind if group_by != "village" else None,
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
        }
        if group_by == "village":
            by_kind: dict[str, dict[str, int]] = {}
            for d in members:
                k = by_kind.setdefault(d.kind, {"devices": 0, "online_now": 0})
                k["devices"] += 1
                k["online_now"] += d.state == "online"
            row["by_kind"] = dict(sorted(by_kind.items()))
        if group_by == "kind":
            villages: dict[str, bool] = {}
            for d in members:
                if d.village:
                    villages[d.village] = villages.get(d.village, True) and d.state == "online"
            row["villages"] = len(villages)
            row["villages_all_online_now"] = sum(villages.values())
        out.append(row)
    return out
