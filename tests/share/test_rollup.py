"""The hourly availability rollup and the availability report built on it."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services import reports, rollup
from services.reports import ReportDevice
from tests.share import world

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


@pytest.fixture
def conn(db_url: str) -> psycopg.Connection:
    with psycopg.connect(db_url) as c:
        world.seed(c)
        yield c


def hourly(conn: psycopg.Connection, device_id: str) -> dict[datetime, tuple[float, ...]]:
    return {
        r[0]: tuple(r[1:])
        for r in conn.execute(
            "SELECT hour, online_s, offline_s, maintenance_s, unknown_s FROM availability_hourly"
            " WHERE device_id = %s ORDER BY hour",
            (device_id,),
        )
    }


def test_rollup_splits_states_by_hour_and_counts_auth_failed_as_offline(conn: psycopg.Connection) -> None:
    world.change(conn, "cam-ubnd-1", "online", T0 + 15 * M)
    world.change(conn, "cam-ubnd-1", "auth_failed", T0 + 75 * M)
    world.change(conn, "cam-ubnd-1", "maintenance", T0 + 90 * M)
    rollup.run(conn, T0 + 2 * H + 30 * M)
    rows = hourly(conn, "cam-ubnd-1")
    assert rows[T0] == (2700.0, 0.0, 0.0, 900.0)
    assert rows[T0 + H] == (900.0, 900.0, 1800.0, 0.0)
    assert rows[T0 + 2 * H] == (0.0, 0.0, 1800.0, 0.0)  # the current hour, partial
    daily = conn.execute(
        "SELECT online_s, offline_s, maintenance_s, unknown_s FROM availability_daily"
        " WHERE device_id = 'cam-ubnd-1'"
    ).fetchall()
    assert daily == [(3600.0, 900.0, 3600.0, 900.0)]


def test_rollup_is_incremental_and_picks_up_late_committed_changes(conn: psycopg.Connection) -> None:
    world.change(conn, "spk-vt-1", "online", T0)
    assert rollup.run(conn, T0 + 3 * H + 10 * M) > 0
    assert hourly(conn, "spk-vt-1")[T0 + 3 * H] == (600.0, 0.0, 0.0, 0.0)
    # The next run recomputes the partial hour and continues from there.
    rollup.run(conn, T0 + 4 * H + 5 * M)
    rows = hourly(conn, "spk-vt-1")
    assert rows[T0 + 3 * H] == (3600.0, 0.0, 0.0, 0.0)
    assert rows[T0 + 4 * H] == (300.0, 0.0, 0.0, 0.0)
    # A change committed now but dated in an hour already rolled up is found by its seq.
    world.change(conn, "spk-vt-1", "offline", T0 + H + 30 * M)
    world.change(conn, "spk-vt-1", "online", T0 + H + 45 * M)
    rollup.run(conn, T0 + 4 * H + 6 * M)
    rows = hourly(conn, "spk-vt-1")
    assert rows[T0 + H] == (2700.0, 900.0, 0.0, 0.0)
    assert rows[T0 + 4 * H] == (360.0, 0.0, 0.0, 0.0)
    assert conn.execute(
        "SELECT offline_s FROM availability_daily WHERE device_id = 'spk-vt-1'"
    ).fetchone() == (900.0,)


def test_rollup_fills_hours_for_devices_that_never_changed(conn: psycopg.Connection) -> None:
    world.change(conn, "spk-vt-1", "online", T0)
    rollup.run(conn, T0 + 2 * H)
    assert hourly(conn, "cam-vt-1") == {T0: (0.0, 0.0, 0.0, 3600.0), T0 + H: (0.0, 0.0, 0.0, 3600.0)}
    assert hourly(conn, "spk-old") == {}  # retired before the first run


def devices(conn: psycopg.Connection) -> list[ReportDevice]:
    return [
        ReportDevice(*r)
        for r in conn.execute(
            "SELECT d.id, d.commune_id, d.village_id, d.kind, s.state FROM devices d"
            " JOIN device_state s ON s.device_id = d.id ORDER BY d.id"
        )
    ]


def test_report_uses_rollup_for_whole_hours_and_changes_for_edges(conn: psycopg.Connection) -> None:
    world.change(conn, "spk-trung-binh-1", "online", T0)
    world.change(conn, "spk-trung-binh-1", "offline", T0 + 26 * H + 10 * M)
    world.change(conn, "spk-trung-binh-1", "online", T0 + 26 * H + 40 * M)
    world.change(conn, "spk-trung-binh-1", "maintenance", T0 + 50 * H)
    now = T0 + 60 * H + 20 * M
    # Before the rollup ran, the answer comes from the change log alone ...
    before = reports.device_seconds(conn, ["spk-trung-binh-1"], T0 + 30 * M, T0 + 55 * H, now)
    rollup.run(conn, T0 + 52 * H + 5 * M)
    # ... and after it, from rollup and edges, to the same second.
    after = reports.device_seconds(conn, ["spk-trung-binh-1"], T0 + 30 * M, T0 + 55 * H, now)
    expected = [(50 * H - 30 * M - 30 * M).total_seconds(), 1800.0, (5 * H).total_seconds(), 0.0]
    assert before["spk-trung-binh-1"] == expected
    assert after["spk-trung-binh-1"] == expected
    # Time after now is not counted.
    later = reports.device_seconds(conn, ["spk-trung-binh-1"], T0 + 59 * H, T0 + 70 * H, now)
    assert later["spk-trung-binh-1"] == [0.0, 0.0, 4800.0, 0.0]


def test_availability_by_village_and_kind_counts_devices_online_now(conn: psycopg.Connection) -> None:
    for d in ("spk-trung-binh-1", "spk-tay-binh-1", "gw-trung-binh", "cam-ubnd-1"):
        world.change(conn, d, "online", T0)
    world.change(conn, "spk-tay-binh-1", "offline", T0 + 3 * H)
    now = T0 + 4 * H
    rollup.run(conn, now)
    devs = [d for d in devices(conn) if d.commune == "thoai-giang"]
    by_village = reports.availability(conn, devs, T0, now, "village", now)
    assert [(r["village"], r["devices"], r["devices_online_now"]) for r in by_village] == [
        ("tay-binh", 1, 0),
        ("trung-binh", 3, 3),
    ]
    assert by_village[0]["availability_pct"] == 75.0
    assert by_village[1]["by_kind"]["speaker"] == {"devices": 1, "online_now": 1}
    by_kind = reports.availability(conn, devs, T0, now, "kind", now)
    speakers = next(r for r in by_kind if r["kind"] == "speaker")
    assert (speakers["villages"], speakers["villages_all_online_now"]) == (2, 1)
    assert speakers["availability_pct"] == 87.5
    unknown = reports.availability(
        conn, [d for d in devices(conn) if d.device_id == "cam-vt-1"], T0, now, "device", now
    )
    assert unknown[0]["availability_pct"] is None and unknown[0]["unknown_s"] == 4 * 3600
