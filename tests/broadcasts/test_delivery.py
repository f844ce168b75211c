"""The delivery worker's rounds and devices' results on the real database, with a clock given."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from services import media
from services.broadcasts import delivery, results, store
from services.intake import Raw, classify
from services.models import Device
from tests.broadcasts.conftest import SECRET, wav
from tests.gateway.conftest import seed

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
URL = "http://ioc.example:8000"
TZ = "Asia/Ho_Chi_Minh"
SPK = Device("spk-trung-binh-1", "thoai-giang", "speaker", "trung-binh")


@pytest.fixture
def conn(db_url: str, tmp_path: Any) -> Iterator[psycopg.Connection]:
    seed(db_url)
    with psycopg.connect(db_url, autocommit=True) as c:
        m = media.store(c, tmp_path, wav(2.0), "audio/wav", "admin")
        c.execute("UPDATE device_state SET state = 'online', since = %s", (T0 - timedelta(hours=1),))
        c.info  # noqa: B018
        c.media_id = m.id  # type: ignore[attr-defined]
        yield c


def send(
    conn: psycopg.Connection, priority: str = "emergency", now: datetime = T0, **targets: Any
) -> store.Broadcast:
    with conn.transaction():
        return store.create(
            conn,
            title=f"bản tin {priority}",
            priority=priority,
            media_id=conn.media_id,  # type: ignore[attr-defined]
            text=None,
            targets=targets or {"devices": [SPK.id]},
            starts_at=now,
            rrule=None,
            expires_at=None,
            risk_level=None,
            volume=80,
            actor="admin",
            role="admin",
            scope=None,
            now=now,
            tz=TZ,
        )


def tick(conn: psycopg.Connection, now: datetime = T0) -> list[dict[str, Any]]:
    return [orjson.loads(c.payload) | {"topic": c.topic} for c in delivery.tick(conn, now, TZ, URL, SECRET)]


def states(conn: psycopg.Connection, b: store.Broadcast) -> dict[str, tuple[str, str | None]]:
    return {d.device_id: (d.state, d.reason) for d in store.deliveries(conn, store.get(conn, b.id))}


def result(
    conn: psycopg.Connection, payloads: list[dict[str, Any] | bytes], device: Device = SPK
) -> list[str]:
    topic = f"ioc/v1/{device.commune_id}/{device.kind}/{device.id}/cmd_result"
    raws = [Raw(topic, p if isinstance(p, bytes) else orjson.dumps(p), T0) for p in payloads]
    batch = classify(raws, {device.id: device})
    return [d.reason for d in results.apply(conn, batch.cmd_results, T0) + batch.dead]


def test_an_emergency_is_sent_to_each_online_speaker_with_a_signed_absolute_media_url(
    conn: psycopg.Connection,
) -> None:
    conn.execute("UPDATE device_state SET state = 'offline' WHERE device_id = 'spk-tay-binh-1'")
    b = send(conn, communes=["thoai-giang"], kinds=["speaker"])
    (cmd,) = tick(conn)
    assert cmd["topic"] == "ioc/v1/thoai-giang/speaker/spk-trung-binh-1/cmd"
    assert cmd["type"] == "play" and cmd["priority"] == "emergency" and cmd["duration_s"] == 2.0
    assert cmd["media_url"].startswith(f"{URL}/media/{conn.media_id}?exp=")  # type: ignore[attr-defined]
    assert states(conn, b) == {"spk-trung-binh-1": ("sent", None), "spk-tay-binh-1": ("scheduled", "offline")}
    assert tick(conn) == []  # nothing twice


def test_a_device_that_never_answers_ends_expired(conn: psycopg.Connection) -> None:
    b = send(conn)
    assert len(tick(conn)) == 1
    tick(conn, T0 + timedelta(minutes=59))
    assert states(conn, b)[SPK.id][0] == "sent"
    tick(conn, T0 + timedelta(hours=1))
    assert states(conn, b)[SPK.id] == ("expired", "no result from the device before expiry")
    assert store.get(conn, b.id).state == "finished"


def test_results_move_a_delivery_forward_and_duplicates_change_nothing(conn: psycopg.Connection) -> None:
    b = send(conn)
    (cmd,) = tick(conn)
    assert (
        result(conn, [{"id": cmd["id"], "status": "accepted"}, {"id": cmd["id"], "status": "playing"}]) == []
    )
    assert result(conn, [{"id": cmd["id"], "status": "accepted"}]) == []  # late duplicate: no step back
    assert states(conn, b)[SPK.id][0] == "playing"
    assert result(conn, [{"id": cmd["id"], "status": "done"}] * 3) == []
    before = conn.execute("SELECT updated_at FROM deliveries").fetchone()
    assert result(conn, [{"id": cmd["id"], "status": "done"}]) == []
    assert conn.execute("SELECT updated_at FROM deliveries").fetchone() == before
    assert store.coverage(conn, store.get(conn, b.id)) == [
        {"commune": "thoai-giang", "village": "trung-binh", "reached": True, "reason": None}
    ]


def test_a_flood_of_bogus_results_is_dead_lettered_and_changes_nothing(conn: psycopg.Connection) -> None:
    b = send(conn)
    (cmd,) = tick(conn)
    other = send(conn, devices=["spk-tay-binh-1"])
    (other_cmd,) = tick(conn)
    bogus: list[dict[str, Any] | bytes] = [
        b"not json",
        b"[1]",
        {"id": cmd["id"], "status": "exploded"},
        {"id": "../1", "status": "done"},
        {"id": True, "status": "done"},
        {"id": cmd["id"], "status": "done", "reason": 5},
        {"id": "999999", "status": "done"},
        {"id": other_cmd["id"], "status": "done"},  # another device's delivery
    ] * 50
    reasons = result(conn, bogus)
    assert len(reasons) == len(bogus)
    assert set(reasons) == {"bad_result", "unknown_delivery"}
    assert states(conn, b)[SPK.id] == ("sent", None)
    assert states(conn, other)["spk-tay-binh-1"] == ("sent", None)


def test_a_result_after_expiry_is_a_late_dead_letter(conn: psycopg.Connection) -> None:
    b = send(conn)
    (cmd,) = tick(conn)
    tick(conn, T0 + timedelta(hours=2))
    assert result(conn, [{"id": cmd["id"], "status": "done"}]) == ["late_result"]
    assert states(conn, b)[SPK.id][0] == "expired"


def test_an_emergency_stops_a_normal_bulletin_playing_on_the_device(conn: psycopg.Connection) -> None:
    normal = send(conn, "normal")
    (play,) = tick(conn)
    result(conn, [{"id": play["id"], "status": "playing"}])
    urgent = send(conn, "emergency", T0 + timedelta(seconds=5))
    stop, play2 = tick(conn, T0 + timedelta(seconds=5))
    assert stop == {"id": play["id"], "type": "stop", "broadcast": str(normal.id), "topic": play["topic"]}
    assert play2["broadcast"] == str(urgent.id) and play2["type"] == "play"
    assert states(conn, normal)[SPK.id] == ("cancelled", f"preempted by broadcast {urgent.id} (emergency)")


def test_a_normal_bulletin_waits_while_an_emergency_plays(conn: psycopg.Connection) -> None:
    urgent = send(conn, "emergency")
    (play,) = tick(conn)
    result(conn, [{"id": play["id"], "status": "playing"}])
    normal = send(conn, "normal", T0 + timedelta(seconds=5))
    assert tick(conn, T0 + timedelta(seconds=5)) == []
    state, reason = states(conn, normal)[SPK.id]
    assert state == "scheduled" and reason is not None and str(urgent.id) in reason
    result(conn, [{"id": play["id"], "status": "done"}])
    (later,) = tick(conn, T0 + timedelta(seconds=10))
    assert later["broadcast"] == str(normal.id)


def test_a_device_offline_at_send_time_gets_it_when_it_comes_back(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE device_state SET state = 'offline' WHERE device_id = %s", (SPK.id,))
    b = send(conn)
    assert tick(conn) == []
    assert states(conn, b)[SPK.id] == ("scheduled", "offline")
    assert store.coverage(conn, store.get(conn, b.id))[0]["reason"] == "offline"
    back = T0 + timedelta(minutes=10)
    conn.execute("UPDATE device_state SET state = 'online', since = %s WHERE device_id = %s", (back, SPK.id))
    (cmd,) = tick(conn, back)
    assert cmd["broadcast"] == str(b.id)
    assert states(conn, b)[SPK.id] == ("sent", None)


def test_a_device_that_comes_back_after_a_send_gets_it_again(conn: psycopg.Connection) -> None:
    b = send(conn)
    (first,) = tick(conn)
    back = T0 + timedelta(minutes=3)
    conn.execute("UPDATE device_state SET state = 'online', since = %s WHERE device_id = %s", (back, SPK.id))
    (again,) = tick(conn, back)
    assert again["id"] == first["id"]
    assert tick(conn, back + timedelta(seconds=1)) == []
    assert states(conn, b)[SPK.id][0] == "sent"


def test_cancel_owes_a_stop_to_a_device_playing_it(conn: psycopg.Connection) -> None:
    b = send(conn)
    (play,) = tick(conn)
    result(conn, [{"id": play["id"], "status": "playing"}])
    with conn.transaction():
        store.cancel(conn, b.id, "admin", "admin", None, T0 + timedelta(seconds=30))
    (stop,) = tick(conn, T0 + timedelta(seconds=31))
    assert stop["type"] == "stop" and stop["id"] == play["id"]
    assert tick(conn, T0 + timedelta(seconds=32)) == []
    assert result(conn, [{"id": play["id"], "status": "done"}]) == ["late_result"]
