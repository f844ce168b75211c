"""A device's past: bucketed history (samples, online share, metric min/avg/max) and its events.

Buckets are aligned like TimescaleDB's `time_bucket` (to multiples of the width counted from
2000-01-03 00:00 UTC, so `1h` buckets start on the hour and `1d` buckets at UTC midnight); the first
and the last bucket are clipped to the asked range [from, to). Empty buckets are filled with
`generate_series` (the Apache edition has no `time_bucket_gapfill`).

`online_share` of a bucket is the time the device spent in state `online` divided by the bucket's
time, both taken over the part of the bucket inside [from, to) that is not in the future. The
timeline is `state_changes`: the last change at or before the bucket's start gives the state it
begins in, later changes split it. Time before the first known change, and time in any other state
(offline, unknown, maintenance, auth_failed), counts as not online. A bucket wholly in the future
has `online_share` null.

`known_share` is the part of the same time in which the device's state was known: after its first
state change and not `unknown`. A bucket with `known_share` 0 is one the device had not yet been
heard in (or with no state on record): no data, rather than offline. Null in the future, like
`online_share`.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from services import paging, timerange
from services.errors import InvalidInput
from services.status import utc

ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
MAX_BUCKETS = 10000
TARGET_BUCKETS = 300
DEFAULT_SPAN = timedelta(hours=24)
_NICE_S = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 2 * 86400, 7 * 86400)
# Callers' times and widths are parsed and bounded in one place (services.timerange).
parse_time = timerange.parse_time
parse_bucket = timerange.parse_bucket


def bucket_label(width: timedelta) -> str:
    s = int(width.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _align(t: datetime, width: timedelta) -> datetime:
    return ORIGIN + ((t - ORIGIN) // width) * width


def _count(start: datetime, end: datetime, width: timedelta) -> int:
    return math.ceil((end - _align(start, width)) / width)


@dataclass(frozen=True)
class Window:
    """The asked range [start, end) cut into `count` aligned buckets of `width`, the first at `first`."""

    start: datetime
    end: datetime
    width: timedelta

    @property
    def first(self) -> datetime:
        return _align(self.start, self.width)

    @property
    def count(self) -> int:
        return _count(self.start, self.end, self.width)

    @property
    def label(self) -> str:
        return bucket_label(self.width)


def window(
    start: str | None,
    end: str | None,
    bucket: str | None,
    now: datetime | None = None,
    *,
    default_span: timedelta = DEFAULT_SPAN,
) -> Window:
    """Resolve `from`, `to`, `bucket` query values: to=now, from=to-24h, a bucket giving <= ~300 buckets."""
    t0, t1 = timerange.time_range(start, end, now or datetime.now(UTC), default_span=default_span)
    # Both ends are within timerange's bounds and a width within MAX_BUCKET: no overflow below.
    if bucket:
        width = parse_bucket(bucket)
    else:
        width = next(
            (timedelta(seconds=s) for s in _NICE_S if _count(t0, t1, timedelta(seconds=s)) <= TARGET_BUCKETS),
            timedelta(days=math.ceil((t1 - t0) / timedelta(days=TARGET_BUCKETS))),
        )
    n = _count(t0, t1, width)
    if n > MAX_BUCKETS:
        raise InvalidInput(
            f"{n} buckets of {bucket_label(width)} between from and to; at most {MAX_BUCKETS}: "
            f"ask for a wider bucket or a shorter range"
        )
    return Window(t0, t1, width)


_BUCKETS_SQL = """
WITH b AS (
    SELECT g AS bucket, greatest(g, %(lo)s) AS s, least(g + %(w)s, %(hi)s, now()) AS e
    FROM generate_series(%(p0)s::timestamptz, %(p1)s::timestamptz, %(w)s::interval) AS g
), timeline AS (
    SELECT state, at, lead(at, 1, 'infinity') OVER (ORDER BY at, seq) AS until
    FROM (
        (SELECT state, at, seq FROM state_changes WHERE device_id = %(d)s AND at <= %(lo)s
         ORDER BY at DESC, seq DESC LIMIT 1)
        UNION ALL
        (SELECT state, at, seq FROM state_changes WHERE device_id = %(d)s AND at > %(lo)s AND at < %(hi)s)
    ) AS c
), up AS (
    SELECT b.bucket,
           sum(extract(epoch FROM least(t.until, b.e) - greatest(t.at, b.s)))
               FILTER (WHERE t.state = 'online') AS online_s,
           sum(extract(epoch FROM least(t.until, b.e) - greatest(t.at, b.s)))
               FILTER (WHERE t.state <> 'unknown') AS known_s
    FROM b JOIN timeline t ON t.at < b.e AND t.until > b.s
    GROUP BY b.bucket
), n AS (
    SELECT time_bucket(%(w)s, ts, %(origin)s) AS bucket, count(*) AS n
    FROM status_samples WHERE device_id = %(d)s AND ts >= %(lo)s AND ts < %(hi)s
    GROUP BY 1
)
SELECT b.bucket, COALESCE(n.n, 0) AS n,
       CASE WHEN b.e > b.s THEN COALESCE(up.online_s, 0) / extract(epoch FROM b.e - b.s) END AS online_share,
       CASE WHEN b.e > b.s THEN COALESCE(up.known_s, 0) / extract(epoch FROM b.e - b.s) END AS known_share
FROM b LEFT JOIN n USING (bucket) LEFT JOIN up USING (bucket)
ORDER BY b.bucket
"""

_METRICS_SQL = """
SELECT time_bucket(%(w)s, s.ts, %(origin)s) AS bucket, kv.key,
       min(kv.value::float8) AS min, avg(kv.value::float8) AS avg, max(kv.value::float8) AS max
FROM status_samples s CROSS JOIN LATERAL jsonb_each(s.metrics) AS kv
WHERE s.device_id = %(d)s AND s.ts >= %(lo)s AND s.ts < %(hi)s AND jsonb_typeof(kv.value) = 'number'
GROUP BY 1, 2
"""


def history(
    conn: psycopg.Connection,
    device_id: str,
    w: Window,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One row per bucket: `bucket`, `n`, `online_share`, `known_share`, `metrics` {name: {min, avg, max}};
    paged by bucket."""
    n = paging.check_limit(limit)
    k0 = 0
    if cursor:
        (last,) = paging.decode(cursor, [datetime])
        k, rest = divmod(last.astimezone(UTC) - w.first, w.width)
        if rest or not 0 <= k < w.count:
            raise InvalidInput("cursor does not belong to this from/to/bucket; use next_cursor as given")
        k0 = k + 1
    k1 = min(k0 + n, w.count)
    if k0 >= k1:
        return [], None
    p0, p1 = w.first + k0 * w.width, w.first + (k1 - 1) * w.width
    params = {
        "d": device_id,
        "w": w.width,
        "origin": ORIGIN,
        "p0": p0,
        "p1": p1,
        "lo": max(w.start, p0),
        "hi": min(w.end, p1 + w.width),
    }
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_BUCKETS_SQL, params).fetchall()
        metrics: dict[datetime, dict[str, dict[str, float]]] = {}
        for r in cur.execute(_METRICS_SQL, params):
            metrics.setdefault(r["bucket"], {})[r["key"]] = {
                "min": r["min"],
                "avg": r["avg"],
                "max": r["max"],
            }
    items = [
        {
            "bucket": utc(r["bucket"]),
            "n": r["n"],
            "online_share": float(r["online_share"]) if r["online_share"] is not None else None,
            "known_share": float(r["known_share"]) if r["known_share"] is not None else None,
            "metrics": dict(sorted(metrics.get(r["bucket"], {}).items())),
        }
        for r in rows
    ]
    nxt = paging.encode([items[-1]["bucket"]]) if k1 < w.count else None
    return items, nxt


_EVENT_COLUMNS = "device_id, seq, ts, received_at, type, severity, message, fields"


def events(
    conn: psycopg.Connection,
    device_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A device's events, newest first, paged on the commit-ordered `seq` (a late commit is never skipped)."""
    if start is not None and end is not None and start >= end:
        raise InvalidInput(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    n = paging.check_limit(limit)
    clauses = ["device_id = %(d)s"]
    params: dict[str, Any] = {"d": device_id, "n": n + 1}
    if start is not None:
        clauses.append("ts >= %(start)s")
        params["start"] = start
    if end is not None:
        clauses.append("ts < %(end)s")
        params["end"] = end
    if cursor:
        (before,) = paging.decode(cursor, [int])
        clauses.append("seq < %(before)s")
        params["before"] = before
    where = " AND ".join(clauses)
    sql = f"SELECT {_EVENT_COLUMNS} FROM device_events WHERE {where} ORDER BY seq DESC LIMIT %(n)s"  # noqa: S608
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()  # type: ignore[arg-type]
    items, nxt = paging.page(rows, n, lambda r: [r["seq"]])
    for r in items:
        r["ts"], r["received_at"] = utc(r["ts"]), utc(r["received_at"])
    return items, nxt
