"""Hourly (and daily) availability per device, filled incrementally from `state_changes`.

The Apache edition of TimescaleDB has no continuous aggregates, so ingest calls `run` every
minute. Each run recomputes, for every active device, the hours from where the last run got to
up to `now` (the current hour is partial and recomputed next time), plus, for devices with
state changes committed since the last run (found by `seq`, so a change committed late with an
old `at` is not missed), every hour from their earliest new change. `auth_failed` counts as
offline: the device does not do its job.
"""

from datetime import UTC, datetime, timedelta

import psycopg

JOB = "availability_rollup"
HOUR = timedelta(hours=1)

# Seconds per device and state over [t0 of the device, t1), split by hour. The state at t0 is
# the last change at or before it, else what the first later change says it left, else unknown.
INTERVALS_SQL = """
WITH dev AS (
    SELECT * FROM unnest(%(ids)s::text[], %(starts)s::timestamptz[]) AS r(device_id, t0)
), start AS (
    SELECT dev.device_id, dev.t0 AS at, -1::bigint AS seq,
           coalesce(b.state, a.prev_state, 'unknown') AS state
    FROM dev
    LEFT JOIN LATERAL (SELECT c.state FROM state_changes c WHERE c.device_id = dev.device_id AND c.at <= dev.t0
                       ORDER BY c.at DESC, c.seq DESC LIMIT 1) b ON true
    LEFT JOIN LATERAL (SELECT c.prev_state FROM state_changes c WHERE c.device_id = dev.device_id
                       AND c.at > dev.t0 ORDER BY c.at, c.seq LIMIT 1) a ON b.state IS NULL
), pts AS (
    SELECT device_id, at, seq, state FROM start
    UNION ALL
    SELECT c.device_id, c.at, c.seq, c.state FROM state_changes c JOIN dev ON dev.device_id = c.device_id
    WHERE c.at > dev.t0 AND c.at > %(tmin)s AND c.at < %(t1)s
), iv AS (
    SELECT device_id, CASE WHEN state = 'auth_failed' THEN 'offline' ELSE state END AS state, at AS a,
           coalesce(lead(at) OVER (PARTITION BY device_id ORDER BY at, seq), %(t1)s) AS b
    FROM pts
)
"""

# Every hour in [t0 of the device, t1) is recomputed, so the rollup deletes those rows and inserts
# them again: an upsert (ON CONFLICT) costs three times as much on a backfill of millions of rows.
# Rows go in by (device_id, hour), the primary key's order, which the daily sums then read back.
_HOURLY_TAIL = """
, parts AS (
    SELECT iv.device_id, h AS hour, iv.state,
           extract(epoch FROM least(iv.b, h + interval '1 hour') - greatest(iv.a, h)) AS s
    FROM iv, generate_series(time_bucket(interval '1 hour', iv.a), iv.b - interval '1 microsecond',
                             interval '1 hour') AS h
    WHERE iv.b > iv.a
    -- iv comes by device: sorting each device's hours lets the sums stream instead of spilling.
    ORDER BY iv.device_id, h
)
INSERT INTO availability_hourly (device_id, hour, online_s, offline_s, maintenance_s, unknown_s)
SELECT device_id, hour,
       coalesce(sum(s) FILTER (WHERE state = 'online'), 0),
       coalesce(sum(s) FILTER (WHERE state = 'offline'), 0),
       coalesce(sum(s) FILTER (WHERE state = 'maintenance'), 0),
       coalesce(sum(s) FILTER (WHERE state NOT IN ('online', 'offline', 'maintenance')), 0)
FROM parts GROUP BY device_id, hour
"""
_HOURLY_SQL = "".join((INTERVALS_SQL, _HOURLY_TAIL))
# `tmin` (the earliest start) repeats the per-device bounds as a constant the planner can see:
# without it, a minute's run was planned as a scan of every hour ever rolled up (2 s, not 0.05 s).
_HOURLY_DELETE = """
DELETE FROM availability_hourly h USING unnest(%(ids)s::text[], %(starts)s::timestamptz[]) AS r(device_id, t0)
WHERE h.device_id = r.device_id AND h.hour >= r.t0 AND h.hour < %(t1)s AND h.hour >= %(tmin)s
"""

# A day's sums are recomputed from all its hours; no day keeps sums without hours behind them.
_DAILY_DELETE = """
DELETE FROM availability_daily d USING unnest(%(ids)s::text[], %(starts)s::timestamptz[]) AS r(device_id, t0)
WHERE d.device_id = r.device_id AND d.day >= time_bucket(interval '1 day', r.t0)
  AND d.day >= time_bucket(interval '1 day', %(tmin)s::timestamptz)
"""
_DAILY_SQL = """
INSERT INTO availability_daily (device_id, day, online_s, offline_s, maintenance_s, unknown_s)
SELECT h.device_id, time_bucket(interval '1 day', h.hour), sum(online_s), sum(offline_s), sum(maintenance_s),
       sum(unknown_s)
FROM unnest(%(ids)s::text[], %(starts)s::timestamptz[]) AS r(device_id, t0)
JOIN availability_hourly h ON h.device_id = r.device_id AND h.hour >= time_bucket(interval '1 day', r.t0)
WHERE h.hour >= time_bucket(interval '1 day', %(tmin)s::timestamptz)
GROUP BY 1, 2
"""


def floor_hour(t: datetime) -> datetime:
    """The start of t's hour, in UTC (the hours of the rollup are UTC hours, as time_bucket's)."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def progress(conn: psycopg.Connection) -> tuple[datetime | None, int]:
    """(done_until, done_seq): hours before floor_hour(done_until) are final."""
    row = conn.execute("SELECT done_until, done_seq FROM job_progress WHERE name = %s", (JOB,)).fetchone()
    return (row[0], int(row[1])) if row else (None, 0)


def run(conn: psycopg.Connection, now: datetime) -> int:
    """Bring the rollup up to `now`; returns the device-hours written. One transaction (a savepoint in the caller's)."""
    with conn.transaction():
        # One run at a time across every ingest process: the job row (or its absence) is locked.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (JOB,))
        # The planner overrates these statements; compiling them (JIT) took longer than running them.
        conn.execute("SET LOCAL jit = off")
        done_until, done_seq = progress(conn)
        row = conn.execute("SELECT value FROM counters WHERE name = 'changes'").fetchone()
        max_seq = int(row[0]) if row else 0
        starts: dict[str, datetime] = {}
        if done_until is None:
            first = conn.execute("SELECT min(at) FROM state_changes WHERE seq <= %s", (max_seq,)).fetchone()
            base = floor_hour(first[0]) if first and first[0] else floor_hour(now)
        else:
            base = floor_hour(min(done_until, now))
        for (device_id,) in conn.execute("SELECT id FROM devices WHERE retired_at IS NULL"):
            starts[device_id] = base
        for device_id, at in conn.execute(
            "SELECT device_id, min(at) FROM state_changes WHERE seq > %s AND seq <= %s GROUP BY device_id",
            (done_seq, max_seq),
        ):
            starts[device_id] = min(starts.get(device_id, base), floor_hour(at))
        written = 0
        if starts:
            args = {
                "ids": list(starts),
                "starts": list(starts.values()),
                "tmin": min(starts.values()),
                "t1": now,
            }
            conn.execute(_HOURLY_DELETE, args)  # type: ignore[arg-type]
            written = conn.execute(_HOURLY_SQL, args).rowcount  # type: ignore[arg-type]
            conn.execute(_DAILY_DELETE, args)  # type: ignore[arg-type]
            conn.execute(_DAILY_SQL, args)  # type: ignore[arg-type]
        conn.execute(
            "INSERT INTO job_progress (name, done_until, done_seq) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET done_until = excluded.done_until, done_seq = excluded.done_seq",
            (JOB, now, max_seq),
        )
    return written
