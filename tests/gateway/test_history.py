"""GET /api/v1/devices/{id}/history and /events on rows written straight into the tables."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from services import history, registry
from services.errors import InvalidInput

Headers = Callable[..., dict[str, str]]
DAY = datetime(2026, 3, 1, tzinfo=UTC)
DEV = "spk-xom-1"


def at(hhmm: str) -> datetime:
    h, m = hhmm.split(":")
    return DAY + timedelta(hours=int(h), minutes=int(m))


SAMPLES = [
    (DAY - timedelta(minutes=1), {"volume": 99}),  # before the range
    (at("00:10"), {"volume": 10, "playing": True, "source": "fm"}),
    (at("00:20"), {"volume": 30}),
    (at("00:50"), {"volume": 20, "temperature_c": 40.5}),
    (at("02:30"), {"volume": 50}),
    (at("04:00"), {"volume": 99}),  # at `to`: outside [from, to)
]
CHANGES = [  # (at, state, prev)
    (DAY - timedelta(hours=1), "online", "unknown"),
    (at("00:30"), "offline", "online"),
    (at("00:45"), "online", "offline"),
    (at("02:00"), "offline", "online"),
    (at("03:30"), "online", "offline"),
]


def insert_timeline(url: str) -> None:
    with psycopg.connect(url) as conn:
        for ts, metrics in SAMPLES:
            conn.execute(
                "INSERT INTO status_samples (device_id, ts, received_at, metrics) VALUES (%s, %s, %s, %s)",
                (DEV, ts, ts, Jsonb(metrics)),
            )
        for i, (ts, state, prev) in enumerate(CHANGES, start=1):
            conn.execute(
                "INSERT INTO state_changes (seq, device_id, commune_id, village_id, kind, state, prev_state, at)"
                " VALUES (%s, %s, 'long-thanh', 'xom-1', 'speaker', %s, %s, %s)",
                (i, DEV, state, prev, ts),
            )
        # Another device's rows must not leak into this one's history.
        conn.execute(
            "INSERT INTO status_samples (device_id, ts, received_at, metrics) VALUES ('wifi-xom-1', %s, %s, %s)",
            (at("01:30"), at("01:30"), Jsonb({"clients": 5})),
        )


@pytest.fixture
def timeline(seeded: str) -> str:
    """This test's own database with the timeline (for tests that change it)."""
    insert_timeline(seeded)
    return seeded


@pytest.fixture(scope="module")
def history_db(shared_db: str) -> str:
    """The module's shared database with the timeline and the events, for read-only tests."""
    insert_timeline(shared_db)
    insert_events(shared_db)
    return shared_db


def get_history(client: TestClient, h: dict[str, str], **params: object) -> dict:
    r = client.get(f"/api/v1/devices/{DEV}/history", params=params, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def test_history_buckets_count_samples_share_online_and_metric_stats(
    ro_client: TestClient, ro_user: Headers, history_db: str
) -> None:
    body = get_history(
        ro_client, ro_user(), **{"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T04:00:00Z"}, bucket="1h"
    )
    assert body["bucket"] == "1h" and body["next_cursor"] is None
    assert datetime.fromisoformat(body["from"]) == at("00:00") and datetime.fromisoformat(body["to"]) == at(
        "04:00"
    )
    rows = body["items"]
    assert [datetime.fromisoformat(r["bucket"]) for r in rows] == [
        at("00:00"),
        at("01:00"),
        at("02:00"),
        at("03:00"),
    ]
    assert [r["n"] for r in rows] == [3, 0, 1, 0]
    # online 00:00-00:30 and 00:45-01:00; all of 01:00; offline from 02:00; online again 03:30
    assert [r["online_share"] for r in rows] == pytest.approx([0.75, 1.0, 0.0, 0.5])
    assert rows[0]["metrics"] == {
        "temperature_c": {"min": 40.5, "avg": 40.5, "max": 40.5},
        "volume": {"min": 10, "avg": 20, "max": 30},
    }
    assert rows[1]["metrics"] == {} and rows[3]["metrics"] == {}
    assert rows[2]["metrics"] == {"volume": {"min": 50, "avg": 50, "max": 50}}


def test_history_clips_first_and_last_bucket_to_the_range(
    ro_client: TestClient, ro_user: Headers, history_db: str
) -> None:
    # "+07:00" left unescaped in the query string arrives as a space; it still reads as an offset.
    r = ro_client.get(
        f"/api/v1/devices/{DEV}/history?from=2026-03-01T07:30:00+07:00&to=2026-03-01T02:30:00Z&bucket=60m",
        headers=ro_user(),
    )
    assert r.status_code == 200, r.text
    rows = r.json()["items"]
    assert [datetime.fromisoformat(x["bucket"]) for x in rows] == [at("00:00"), at("01:00"), at("02:00")]
    assert [x["n"] for x in rows] == [1, 0, 0]
    assert [x["online_share"] for x in rows] == pytest.approx([0.5, 1.0, 0.0])
    assert rows[0]["metrics"] == {
        "temperature_c": {"min": 40.5, "avg": 40.5, "max": 40.5},
        "volume": {"min": 20, "avg": 20, "max": 20},
    }


def test_history_pages_by_bucket(ro_client: TestClient, ro_user: Headers, history_db: str) -> None:
    whole = get_history(
        ro_client, ro_user(), **{"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T04:00:00Z"}, bucket="30m"
    )
    assert len(whole["items"]) == 8
    pages: list[dict] = []
    params: dict[str, object] = {
        "from": "2026-03-01T00:00:00Z",
        "to": "2026-03-01T04:00:00Z",
        "bucket": "30m",
        "limit": 3,
    }
    while True:
        body = get_history(ro_client, ro_user(), **params)
        pages += body["items"]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert pages == whole["items"]


def test_history_defaults_to_the_last_24_hours_in_at_most_300_buckets(
    ro_client: TestClient, ro_user: Headers, history_db: str
) -> None:
    before = datetime.now(UTC)
    body = get_history(ro_client, ro_user())
    assert body["bucket"] == "5m"
    assert 288 <= len(body["items"]) <= 289
    to = datetime.fromisoformat(body["to"])
    assert before <= to <= datetime.now(UTC)
    assert datetime.fromisoformat(body["from"]) == to - timedelta(hours=24)
    # The timeline's samples are from 2026-03-01: none in the last day.
    assert all(r["n"] == 0 and r["metrics"] == {} for r in body["items"])


def test_future_buckets_have_no_online_share(
    ro_client: TestClient, ro_user: Headers, history_db: str
) -> None:
    now = datetime.now(UTC)
    body = get_history(
        ro_client,
        ro_user(),
        **{"from": (now - timedelta(hours=2)).isoformat(), "to": (now + timedelta(hours=3)).isoformat()},
        bucket="1h",
    )
    rows = body["items"]
    assert rows[0]["online_share"] == pytest.approx(1.0)  # online since 03:30 on DAY
    assert rows[-1]["online_share"] is None
    assert rows[-2]["online_share"] is None


def test_buckets_before_the_device_was_first_heard_have_no_known_state(
    ro_client: TestClient, ro_user: Headers, history_db: str
) -> None:
    # The device's first state change is at DAY-1h: before it there is no data, not "offline".
    body = get_history(
        ro_client, ro_user(), **{"from": "2026-02-28T21:00:00Z", "to": "2026-03-01T01:00:00Z"}, bucket="1h"
    )
    rows = body["items"]
    assert [r["known_share"] for r in rows] == pytest.approx([0.0, 0.0, 1.0, 1.0])
    assert [r["online_share"] for r in rows] == pytest.approx([0.0, 0.0, 1.0, 0.75])
    half = get_history(
        ro_client, ro_user(), **{"from": "2026-02-28T22:30:00Z", "to": "2026-02-28T23:30:00Z"}, bucket="1h"
    )
    assert [r["known_share"] for r in half["items"]] == pytest.approx([0.0, 1.0])


def test_history_of_a_retired_device_is_kept(client: TestClient, as_user: Headers, timeline: str) -> None:
    with psycopg.connect(timeline) as conn:
        registry.retire(conn, DEV)
    body = get_history(
        client, as_user(), **{"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T01:00:00Z"}, bucket="1h"
    )
    assert [r["n"] for r in body["items"]] == [3]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "before"),
        ("from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00Z", "before"),
        ("bucket=5x", "bucket"),
        ("bucket=0m", "bucket"),
        ("bucket=1w", "bucket"),
        ("bucket=-5m", "bucket"),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&bucket=1m", "10000"),
        ("from=1900-01-01T00:00:00Z&to=2199-01-01T00:00:00Z&bucket=30s", "10000"),
        ("from=0001-01-01T00:00:00Z&to=9999-01-01T00:00:00Z&bucket=30s", "out of range"),
        ("limit=0", "limit"),
        ("cursor=zzz", "cursor"),
        ("bucket=1h&cursor=WyIyMDI2LTAzLTAxVDAwOjEwOjAwKzAwOjAwIl0", "cursor"),  # not a bucket start
    ],
)
def test_bad_history_parameters_are_400(
    ro_client: TestClient, ro_user: Headers, query: str, needle: str
) -> None:
    r = ro_client.get(f"/api/v1/devices/{DEV}/history?{query}", headers=ro_user())
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_history_and_events_of_unknown_device_are_404(ro_client: TestClient, ro_user: Headers) -> None:
    for path in ("/api/v1/devices/ghost/history", "/api/v1/devices/ghost/events"):
        r = ro_client.get(path, headers=ro_user())
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_window_picks_a_bucket_for_about_300_rows() -> None:
    now = datetime(2026, 3, 1, 12, 34, tzinfo=UTC)
    assert history.window(None, None, None, now).label == "5m"
    assert history.window("2026-02-22T12:34:00Z", None, None, now).label == "1h"
    assert history.window("2025-03-01", None, None, now).label == "2d"
    w = history.window("2016-03-01", None, None, now)
    assert w.count <= 300 and w.label.endswith("d")
    assert history.window(None, None, "90000h", now).count == 1
    with pytest.raises(InvalidInput, match="86400 buckets"):
        history.window(None, None, "1s", now)


EVENTS = [  # (seq, ts, type): seq is commit order, ts the device's own time
    (10, at("01:00"), "motion"),
    (11, at("00:30"), "tamper"),  # committed late with an older ts
    (12, at("02:00"), "signal_loss"),
    (13, at("03:00"), "motion"),
]


def insert_events(url: str) -> None:
    with psycopg.connect(url) as conn:
        for seq, ts, typ in EVENTS:
            conn.execute(
                "INSERT INTO device_events (device_id, ts, received_at, type, severity, message, fields, seq)"
                " VALUES (%s, %s, %s, %s, 'warning', %s, %s, %s)",
                (DEV, ts, ts, typ, f"{typ} seen", Jsonb({"camera_ts": "1970-01-01T00:00:00Z"}), seq),
            )
        conn.execute(
            "INSERT INTO device_events (device_id, ts, received_at, type, seq) VALUES ('wifi-xom-1', %s, %s, 'x', 14)",
            (at("01:00"), at("01:00")),
        )


@pytest.fixture
def events(seeded: str) -> str:
    insert_events(seeded)
    return seeded


def test_events_are_newest_first_in_commit_order_and_paged(
    client: TestClient, as_user: Headers, events: str
) -> None:
    r = client.get(f"/api/v1/devices/{DEV}/events", headers=as_user())
    assert r.status_code == 200
    body = r.json()
    assert [e["seq"] for e in body["items"]] == [13, 12, 11, 10] and body["next_cursor"] is None
    first = body["items"][0]
    assert first == first | {
        "device_id": DEV,
        "type": "motion",
        "severity": "warning",
        "message": "motion seen",
        "fields": {"camera_ts": "1970-01-01T00:00:00Z"},
    }
    assert datetime.fromisoformat(first["ts"]) == at("03:00")

    page1 = client.get(f"/api/v1/devices/{DEV}/events?limit=2", headers=as_user()).json()
    assert [e["seq"] for e in page1["items"]] == [13, 12]
    # A row committed after the first page was read: newer, so it never lands behind the cursor.
    with psycopg.connect(events) as conn:
        conn.execute(
            "INSERT INTO device_events (device_id, ts, received_at, type, seq) VALUES (%s, %s, %s, 'late', 15)",
            (DEV, at("00:05"), at("00:05")),
        )
    page2 = client.get(
        f"/api/v1/devices/{DEV}/events",
        params={"limit": 2, "cursor": page1["next_cursor"]},
        headers=as_user(),
    ).json()
    assert [e["seq"] for e in page2["items"]] == [11, 10] and page2["next_cursor"] is None


def test_events_filter_on_time(ro_client: TestClient, ro_user: Headers, history_db: str) -> None:
    r = ro_client.get(
        f"/api/v1/devices/{DEV}/events",
        params={"from": "2026-03-01T00:30:00Z", "to": "2026-03-01T02:00:00Z"},
        headers=ro_user(),
    )
    assert [e["seq"] for e in r.json()["items"]] == [11, 10]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("from=nope", "from"),
        ("to=nope", "to"),
        ("from=2026-03-02&to=2026-03-01", "before"),
        ("cursor=abc", "cursor"),
        ("cursor=WyJ4Il0", "cursor"),
        ("limit=100000", "limit"),
    ],
)
def test_bad_event_parameters_are_400(
    ro_client: TestClient, ro_user: Headers, query: str, needle: str
) -> None:
    r = ro_client.get(f"/api/v1/devices/{DEV}/events?{query}", headers=ro_user())
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]
