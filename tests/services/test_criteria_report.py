"""The criteria report computed over a small world written as ingest, the broadcast worker and the
audit log write it: each default indicator's value, target, met and evidence."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from services import audit, criteria
from services.errors import InvalidInput
from tests.share import world

T = datetime(2026, 11, 1, tzinfo=UTC)
# November 2026 in Asia/Ho_Chi_Minh (UTC+7): [31/10 17:00 UTC, 30/11 17:00 UTC)
START, END = datetime(2026, 10, 31, 17, tzinfo=UTC), datetime(2026, 11, 30, 17, tzinfo=UTC)
NOW = datetime(2026, 12, 2, 8, tzinfo=UTC)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        world.seed(c)
        yield c


def broadcast(
    conn: psycopg.Connection,
    at: datetime,
    deliveries: list[tuple[str, str]],
    *,
    state: str = "finished",
    villages: list[str] | None = None,
) -> int:
    """A broadcast with one occurrence at `at` and its deliveries (device, state), as the worker leaves them."""
    row = conn.execute(
        "INSERT INTO broadcasts (title, priority, text, targets, communes, starts_at, expires_at, state,"
        " created_by) VALUES ('Bản tin', 'normal', 'Thông báo', %s, %s, %s, %s, %s, 'op') RETURNING id",
        (Jsonb({"villages_resolved": villages or []}), ["thoai-giang"], at, at + timedelta(hours=1), state),
    ).fetchone()
    assert row is not None
    for device, dstate in deliveries:
        conn.execute(
            "INSERT INTO deliveries (broadcast_id, device_id, commune_id, village_id, kind, occurrence_at,"
            " expires_at, state) SELECT %s, id, commune_id, village_id, kind, %s, %s, %s FROM devices WHERE id = %s",
            (row[0], at, at + timedelta(hours=1), dstate, device),
        )
    conn.commit()
    return int(row[0])


def pull(conn: psycopg.Connection, at: datetime, communes: list[str] | None, status: int = 200) -> None:
    audit.record(
        conn,
        actor_kind="key",
        actor="Sở TTTT An Giang",
        action="GET /api/share/v1/status",
        status=status,
        key_id=7,
        communes=communes,
    )
    conn.execute("UPDATE audit_log SET at = %s WHERE id = (SELECT max(id) FROM audit_log)", (at,))
    conn.commit()


@pytest.fixture
def november(conn: psycopg.Connection) -> psycopg.Connection:
    for d in world.A_DEVICES + world.B_DEVICES:
        world.change(conn, d, "online", T - timedelta(days=30))
    # ấp Tây Bình's only speaker is down from the middle of the month: half the month available
    world.change(conn, "spk-tay-binh-1", "offline", START + (END - START) / 2)
    # one broadcast reached both villages, one missed Tây Bình (not reached: not counted as reached)
    broadcast(conn, T + timedelta(days=9), [("spk-trung-binh-1", "done"), ("spk-tay-binh-1", "expired")])
    broadcast(conn, T + timedelta(days=19), [("spk-trung-binh-1", "done")])
    # a village targeted where no device could take it counts as not reached
    broadcast(conn, T + timedelta(days=20), [("spk-trung-binh-1", "done")], villages=["thoai-giang/tay-binh"])
    broadcast(conn, T + timedelta(days=21), [("spk-trung-binh-1", "failed")], state="cancelled")
    broadcast(conn, T - timedelta(days=3), [("spk-trung-binh-1", "failed")])  # October
    pull(conn, T + timedelta(days=4), ["thoai-giang"])
    pull(conn, T + timedelta(days=5), ["thoai-giang"], status=304)
    pull(conn, T + timedelta(days=5), ["thoai-giang"], status=403)
    pull(conn, T + timedelta(days=6), ["vong-the"])
    pull(conn, T + timedelta(days=7), None)  # a key of every commune asking for all
    pull(conn, T + timedelta(days=40), ["thoai-giang"])  # December
    return conn


def items(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in rep["items"]}


def test_each_default_indicator_of_a_commune_over_a_month(november: psycopg.Connection) -> None:
    first, last = criteria.month("2026-11")
    rep = criteria.report(november, first, last, ["thoai-giang"], now=NOW)
    assert rep["period"]["from"] == "2026-11-01" and rep["period"]["to"] == "2026-11-30"
    assert rep["period"]["start_at"] == START and rep["period"]["end_at"] == END and rep["period"]["complete"]
    assert rep["communes"] == [{"id": "thoai-giang", "name": "Xã Thoại Giang", "province": "An Giang"}]
    by = items(rep)
    assert list(by) == [
        "radio_villages",
        "cameras_online",
        "eboards_online",
        "public_wifi_online",
        "broadcast_reach",
        "data_shared",
    ]
    radio = by["radio_villages"]
    assert (radio["value"], radio["target"], radio["met"]) == (50.0, 100, False)
    assert [
        (r["village"], r["devices"], r["best_availability_pct"], r["working"]) for r in radio["evidence"]
    ] == [
        ("tay-binh", 1, 50.0, False),
        ("trung-binh", 1, 100.0, True),
    ]
    cams = by["cameras_online"]
    assert (cams["value"], cams["met"], cams["unit"]) == (100.0, True, "%")
    assert [(r["village"], r["availability_pct"]) for r in cams["evidence"]] == [("trung-binh", 100.0)]
    assert cams["evidence"][0]["online_s"] == (END - START).total_seconds()
    # no e-board, no Wi-Fi: nothing to judge by, so not met
    assert (by["eboards_online"]["value"], by["eboards_online"]["met"], by["eboards_online"]["evidence"]) == (
        None,
        False,
        [],
    )
    reach = by["broadcast_reach"]
    assert reach["value"] == 33.33 and not reach["met"]
    assert [
        (r["villages_targeted"], r["villages_reached"], r["villages_not_reached"]) for r in reach["evidence"]
    ] == [
        (2, 1, ["thoai-giang/tay-binh"]),
        (1, 1, []),
        (2, 1, ["thoai-giang/tay-binh"]),
    ]
    shared = by["data_shared"]
    assert (shared["value"], shared["target"], shared["met"], shared["unit"]) == (3.0, 1, True, "count")
    assert shared["evidence"] == [
        {
            "direction": "pull",
            "partner": "Sở TTTT An Giang",
            "key_id": 7,
            "count": 3,
            "items": None,
            "last_at": T + timedelta(days=7),
        }
    ]


def test_every_commune_when_none_is_named(november: psycopg.Connection) -> None:
    rep = criteria.report(november, date(2026, 11, 1), date(2026, 11, 30), None, now=NOW)
    by = items(rep)
    # Xóm 1 of Xã Vọng Thê has its speaker online all month
    assert by["radio_villages"]["value"] == 66.67
    assert by["data_shared"]["value"] == 4.0
    assert [c["id"] for c in rep["communes"]] == ["thoai-giang", "vong-the"]


def test_time_after_now_is_not_counted_and_the_period_says_it_is_not_over(
    november: psycopg.Connection,
) -> None:
    now = START + timedelta(days=10)
    rep = criteria.report(november, date(2026, 11, 1), date(2026, 11, 30), ["thoai-giang"], now=now)
    assert rep["period"]["complete"] is False
    by = items(rep)
    assert by["radio_villages"]["value"] == 100.0  # Tây Bình's speaker was still up then
    assert by["cameras_online"]["evidence"][0]["online_s"] == 10 * 86400


def test_a_running_broadcast_that_has_not_reached_everyone_yet_is_listed_not_counted(
    november: psycopg.Connection,
) -> None:
    at = T + timedelta(days=25)
    broadcast(november, at, [("spk-trung-binh-1", "playing")], state="active")
    rep = criteria.report(
        november, date(2026, 11, 1), date(2026, 11, 30), ["thoai-giang"], now=at + timedelta(minutes=5)
    )
    reach = items(rep)["broadcast_reach"]
    assert reach["value"] == 33.33
    assert reach["evidence"][-1]["counted"] is False and reach["evidence"][-1]["reached_all"] is False


def test_pushes_delivered_upstream_count_and_pending_or_dead_ones_do_not(
    november: psycopg.Connection,
) -> None:
    def shared() -> dict[str, Any]:
        rep = criteria.report(november, date(2026, 11, 1), date(2026, 11, 30), None, now=NOW)
        return items(rep)["data_shared"]

    if november.execute("SELECT to_regclass('push_outbox')").fetchone() == (None,):
        # before the outbox's migration (023): pulls only, no error
        assert shared()["value"] == 4.0
        return
    n0 = shared()["value"]
    november.execute("INSERT INTO push_targets (target) VALUES ('upstream:lgsp-an-giang')")
    sql = (
        "INSERT INTO push_outbox (target, seq, body, items, status, delivered_at)"
        " VALUES ('upstream:lgsp-an-giang', %s, '{}', %s, %s, %s)"
    )
    for seq, (n, status, at) in enumerate(
        [
            (500, "delivered", T + timedelta(days=1)),
            (20, "delivered", T + timedelta(days=2)),
            (3, "delivered", T + timedelta(days=45)),  # January
            (7, "pending", None),
            (9, "dead", None),
        ]
    ):
        november.execute(sql, (seq + 1, n, status, at))
    november.commit()
    got = shared()
    assert got["value"] == n0 + 2
    assert got["evidence"][-1] == {
        "direction": "push",
        "partner": "upstream:lgsp-an-giang",
        "key_id": None,
        "count": 2,
        "items": 520,
        "last_at": T + timedelta(days=2),
    }


def test_bad_periods_are_refused() -> None:
    for bad in ("2026-13", "2026-1", "2026/11", "nov", "2026-11-01", ""):
        with pytest.raises(InvalidInput, match="YYYY-MM"):
            criteria.month(bad)
    assert criteria.month("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))
    assert criteria.month("2028-02") == (date(2028, 2, 1), date(2028, 2, 29))


def test_a_period_that_ends_before_it_starts_or_is_too_long_is_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(InvalidInput, match="ends"):
        criteria.report(conn, date(2026, 11, 2), date(2026, 11, 1), None)
    with pytest.raises(InvalidInput, match="at most 366 days"):
        criteria.report(conn, date(2025, 1, 1), date(2026, 1, 2), None)


def test_a_database_without_the_push_outbox_counts_pulls_only(november: psycopg.Connection) -> None:
    november.execute("DROP TABLE IF EXISTS push_outbox CASCADE")
    november.commit()
    rep = criteria.report(november, date(2026, 11, 1), date(2026, 11, 30), None, now=NOW)
    assert items(rep)["data_shared"]["value"] == 4.0


def test_a_push_counts_only_for_the_communes_whose_data_it_carries(november: psycopg.Connection) -> None:
    cols = {
        r[0]
        for r in november.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'push_outbox'"
        )
    }
    if "communes" not in cols:
        pytest.skip("this outbox does not say whose data a push carries")
    november.execute("INSERT INTO push_targets (target) VALUES ('upstream:lgsp')")
    november.execute(
        "INSERT INTO push_outbox (target, seq, body, status, delivered_at, communes)"
        " VALUES ('upstream:lgsp', 1, '{}', 'delivered', %s, %s), ('upstream:lgsp', 2, '{}', 'delivered', %s, NULL)",
        (T + timedelta(days=3), ["vong-the"], T + timedelta(days=3)),
    )
    november.commit()
    mine = items(criteria.report(november, date(2026, 11, 1), date(2026, 11, 30), ["thoai-giang"], now=NOW))
    theirs = items(criteria.report(november, date(2026, 11, 1), date(2026, 11, 30), ["vong-the"], now=NOW))
    assert [r["count"] for r in mine["data_shared"]["evidence"] if r["direction"] == "push"] == [1]
    assert [r["count"] for r in theirs["data_shared"]["evidence"] if r["direction"] == "push"] == [2]
