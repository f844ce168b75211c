"""Availability reports are exact to the second: the one-statement report (rollup sums plus edges
from the change log) against a plain reading of the change log, over ranges that start and end
on and off hour and day boundaries; and the rollup's sums do not depend on how often it ran."""

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services import feed, reports, rollup
from tests.share import world

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
NOW = T0 + 2 * 24 * H + 5 * H + 17 * M + 3 * S
ACTIVE = ["cam-ubnd-1", "cam-vt-1", "gw-trung-binh", "spk-tay-binh-1", "spk-trung-binh-1", "spk-vt-1"]
# (device, state, prev_state, at) in commit order. Changes exactly on hour and day boundaries,
# two changes at the same instant (the later seq wins), auth_failed (offline), a device first heard
# late (its earlier time is its first change's prev_state, or unknown when that is missing), one
# never heard at all, and a change after now.
CHANGES = [
    ("cam-ubnd-1", "online", "unknown", T0),
    ("spk-trung-binh-1", "online", "unknown", T0),
    ("cam-ubnd-1", "auth_failed", "online", T0 + H),
    ("spk-trung-binh-1", "offline", "online", T0 + 10 * M),
    ("spk-trung-binh-1", "online", "offline", T0 + 10 * M),
    ("cam-vt-1", "online", "unknown", T0 + 59 * M + 59 * S),
    ("cam-ubnd-1", "online", "auth_failed", T0 + H + 20 * M),
    ("spk-tay-binh-1", "online", "offline", T0 + 5 * H + 30 * M),
    ("cam-ubnd-1", "maintenance", "online", T0 + 25 * H),
    ("cam-ubnd-1", "online", "maintenance", T0 + 26 * H + 30 * M),
    ("spk-tay-binh-1", "maintenance", "online", T0 + 30 * H),
    ("gw-trung-binh", "online", None, T0 + 40 * H),
    ("cam-ubnd-1", "offline", "online", T0 + 47 * H + 59 * M + 59 * S),
    ("spk-trung-binh-1", "offline", "online", T0 + 51 * H + 3 * M),
    ("cam-vt-1", "offline", "online", NOW + H),
]
TIMES = [
    T0,
    T0 + 10 * M,
    T0 + 30 * M,
    T0 + H,
    T0 + H + S,
    T0 + 23 * H + 59 * M + 59 * S,
    T0 + 24 * H,
    T0 + 31 * H + 13 * M + 7 * S,
    T0 + 48 * H,
    NOW - S,
    NOW,
    NOW + 2 * H,
]


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        world.seed(c)
        for device_id, state, prev, at in CHANGES:
            commune, village, kind = c.execute(
                "SELECT commune_id, village_id, kind FROM devices WHERE id = %s", (device_id,)
            ).fetchone()  # type: ignore[misc]
            feed.record_changes(c, [(device_id, commune, village, kind, state, prev, at, "test")])
        c.commit()
        yield c


def read_log(device_id: str, t0: datetime, t1: datetime) -> list[float]:
    """Seconds online, offline, maintenance, unknown over [t0, t1), read straight from CHANGES."""
    log = [(at, seq, state, prev) for seq, (d, state, prev, at) in enumerate(CHANGES) if d == device_id]
    log.sort()

    def state_at(t: datetime) -> str:
        before = [state for at, _, state, _ in log if at <= t]
        if before:
            return before[-1]
        return (log[0][3] or "unknown") if log else "unknown"

    points = [t0, *sorted({at for at, *_ in log if t0 < at < t1}), t1]
    out = [0.0, 0.0, 0.0, 0.0]
    for a, b in itertools.pairwise(points):
        state = {"auth_failed": "offline"}.get(state_at(a), state_at(a))
        out[reports.STATES.index(state) if state in reports.STATES else 3] += (b - a).total_seconds()
    return out


def test_report_matches_the_change_log_for_every_range(conn: psycopg.Connection) -> None:
    rollup.run(conn, T0 + 5 * H + 10 * M)
    rollup.run(conn, NOW)
    checked = 0
    for t0, t1 in itertools.combinations(TIMES, 2):
        got = reports.device_seconds(conn, ACTIVE, t0, t1, NOW)
        for device_id in ACTIVE:
            want = read_log(device_id, t0, min(t1, NOW))
            assert got[device_id] == pytest.approx(want, abs=1e-6), (device_id, t0, t1)
        checked += 1
    assert checked == 66
    # Every part of the answer is used: a month-like range crosses hours, days and both edges.
    spk = reports.device_seconds(conn, ["spk-trung-binh-1"], T0 + 30 * M, NOW, NOW)["spk-trung-binh-1"]
    assert spk == [
        (51 * H + 3 * M - 30 * M).total_seconds(),
        (NOW - T0 - 51 * H - 3 * M).total_seconds(),
        0,
        0,
    ]


def test_report_is_exact_when_the_rollup_once_ran_ahead_of_now(conn: psycopg.Connection) -> None:
    # Housekeepers on hosts with clocks apart: hours after done_until are in the day's sum.
    rollup.run(conn, NOW + 3 * H)
    rollup.run(conn, NOW)
    for t0 in (T0 + 30 * M, T0 + 48 * H + 10 * M):
        got = reports.device_seconds(conn, ACTIVE, t0, NOW, NOW)
        for device_id in ACTIVE:
            assert got[device_id] == pytest.approx(read_log(device_id, t0, NOW), abs=1e-6), (device_id, t0)


def test_report_without_rollup_reads_the_change_log_alone(conn: psycopg.Connection) -> None:
    got = reports.device_seconds(conn, ACTIVE, T0 + 30 * M, NOW, NOW)
    for device_id in ACTIVE:
        assert got[device_id] == pytest.approx(read_log(device_id, T0 + 30 * M, NOW), abs=1e-6)


def test_report_is_never_a_prepared_statement(conn: psycopg.Connection) -> None:
    # A generic plan of a prepared report read a whole hourly table for a short range.
    rollup.run(conn, NOW)
    for _ in range(3 * (conn.prepare_threshold or 0) + 3):
        reports.device_seconds(conn, ACTIVE, T0 + 30 * M, NOW, NOW)
    prepared = conn.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%availability_%'"
    ).fetchone()
    assert prepared == (0,)


def sums(conn: psycopg.Connection, table: str) -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608


def test_rollup_sums_are_the_same_however_often_it_ran(conn: psycopg.Connection) -> None:
    for hours in range(1, 53, 7):
        rollup.run(conn, T0 + hours * H + 11 * M)
    # Committed now, dated in hours and days already rolled up.
    world.change(conn, "spk-vt-1", "online", T0 + 3 * H + 15 * M)
    world.change(conn, "spk-vt-1", "offline", T0 + 26 * H)
    rollup.run(conn, NOW)
    hourly, daily = sums(conn, "availability_hourly"), sums(conn, "availability_daily")
    assert len(hourly) == 6 * 54 and len(daily) == 6 * 3
    conn.execute("TRUNCATE availability_hourly, availability_daily")
    conn.execute("DELETE FROM job_progress")
    rollup.run(conn, NOW)
    assert sums(conn, "availability_hourly") == hourly
    assert sums(conn, "availability_daily") == daily
    # Each day is the sum of its hours.
    by_day: dict[tuple[object, object], list[float]] = {}
    for device_id, hour, *secs in hourly:
        acc = by_day.setdefault((device_id, hour.replace(hour=0)), [0.0] * 4)  # type: ignore[attr-defined]
        for i, s in enumerate(secs):
            acc[i] += s  # type: ignore[operator]
    assert {k: tuple(v) for k, v in by_day.items()} == {(d, day): tuple(s) for d, day, *s in daily}
