"""The delivery worker's rounds and devices' results on the real database, with a clock given."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from services import liveness, media
from services.broadcasts import delivery, results, store
from services.broadcasts.model import NO_RESULT_IN_MAINTENANCE, why_not
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
        m = media.store(c, tmp_path, wav(2.0), "admin")
        c.execute("UPDATE device_state SET state = 'online', since = %s", (T0 - timedelta(hours=1),))
        c.info  # noqa: B018
        c.media_id = m.id  # type: ignore[attr-defined]
        yield c


def send(
    conn: psycopg.Connection,
    priority: str = "emergency",
    now: datetime = T0,
    *,
    starts_at: datetime | None = None,
    rrule: str | None = None,
    expires_at: datetime | None = None,
    volume: int | None = 80,
    **targets: Any,
) -> store.Broadcast:
    """A broadcast created at `now` (by default starting then, to SPK) as the API makes it."""
    with conn.transaction():
        return store.create(
            conn,
            title=f"bản tin {priority}",
            priority=priority,
            media_id=conn.media_id,  # type: ignore[attr-defined]
            text=None,
            targets=targets or {"devices": [SPK.id]},
            starts_at=starts_at or now,
            rrule=rrule,
            expires_at=expires_at,
            risk_level=None,
            volume=volume,
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
    assert cmd["volume"] == 80  # the broadcast's volume, as SPEC §9's play command carries it
    assert cmd["media_url"].startswith(f"{URL}/media/{conn.media_id}?exp=")  # type: ignore[attr-defined]
    assert states(conn, b) == {"spk-trung-binh-1": ("sent", None), "spk-tay-binh-1": ("scheduled", "offline")}
    assert tick(conn) == []  # nothing twice


def test_a_speaker_in_maintenance_still_gets_the_emergency_and_reaches_its_village(
    conn: psycopg.Connection,
) -> None:
    """Maintenance silences alerts; it does not switch the speaker off."""
    conn.execute("UPDATE device_state SET state = 'maintenance' WHERE device_id = 'spk-tay-binh-1'")
    b = send(conn, communes=["thoai-giang"], kinds=["speaker"])
    cmds = tick(conn)
    assert sorted(c["topic"] for c in cmds) == [
        "ioc/v1/thoai-giang/speaker/spk-tay-binh-1/cmd",
        "ioc/v1/thoai-giang/speaker/spk-trung-binh-1/cmd",
    ]
    serviced = next(c for c in cmds if "spk-tay-binh-1" in c["topic"])
    device = Device("spk-tay-binh-1", "thoai-giang", "speaker", "tay-binh")
    assert result(conn, [{"id": serviced["id"], "status": "done"}], device) == []
    cov = {c["village"]: c["reached"] for c in store.coverage(conn, store.get(conn, b.id))}
    assert cov["tay-binh"] is True


def test_a_device_that_never_answers_ends_expired(conn: psycopg.Connection) -> None:
    b = send(conn)
    assert len(tick(conn)) == 1
    tick(conn, T0 + timedelta(minutes=59))
    assert states(conn, b)[SPK.id][0] == "sent"
    tick(conn, T0 + timedelta(hours=1))
    assert states(conn, b)[SPK.id] == ("expired", "no result from the device before expiry")
    assert store.get(conn, b.id).state == "finished"


def test_a_speaker_in_maintenance_that_never_answers_says_so_in_its_village(conn: psycopg.Connection) -> None:
    """Sent like an online one; silent until expiry, its village reads `maintenance`, not `offline`,
    and still does once the window is over."""
    liveness.sweep(conn, {SPK.id: SPK}, T0, T0 - timedelta(hours=1), [SPK.id])  # the window opens
    assert conn.execute("SELECT state FROM device_state WHERE device_id = %s", (SPK.id,)).fetchone() == (
        "maintenance",
    )
    b = send(conn)
    assert len(tick(conn)) == 1  # sent all the same
    assert [c["reason"] for c in store.coverage(conn, store.get(conn, b.id))] == ["maintenance"]
    tick(conn, T0 + timedelta(hours=1))
    assert states(conn, b)[SPK.id] == ("expired", NO_RESULT_IN_MAINTENANCE)
    liveness.sweep(conn, {SPK.id: SPK}, T0 + timedelta(hours=2), T0 - timedelta(hours=1), [])  # it closes
    assert conn.execute("SELECT state FROM device_state WHERE device_id = %s", (SPK.id,)).fetchone() != (
        "maintenance",
    )
    assert [c["reason"] for c in store.coverage(conn, store.get(conn, b.id))] == ["maintenance"]


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
        {"id": "²", "status": "done"},  # str.isdigit() says yes, int() raises
        {"id": cmd["id"].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")), "status": "done"},
        {"id": "999999", "status": "done"},
        {"id": other_cmd["id"], "status": "done"},  # another device's delivery
    ] * 50
    reasons = result(conn, bogus)
    assert len(reasons) == len(bogus)
    assert set(reasons) == {"bad_result", "unknown_delivery"}
    assert states(conn, b)[SPK.id] == ("sent", None)
    assert states(conn, other)["spk-tay-binh-1"] == ("sent", None)


def test_a_failure_whose_reason_is_no_text_is_kept_with_its_reason_as_text(conn: psycopg.Connection) -> None:
    b = send(conn)
    (cmd,) = tick(conn)
    assert result(conn, [{"id": int(cmd["id"]), "status": "failed", "reason": {"code": 5}}]) == []
    assert states(conn, b)[SPK.id] == ("failed", '{"code":5}')


def test_a_result_over_64_kib_is_a_too_large_dead_letter(conn: psycopg.Connection) -> None:
    b = send(conn)
    (cmd,) = tick(conn)
    assert result(conn, [{"id": cmd["id"], "status": "done", "reason": "x" * 70_000}]) == ["too_large"]
    assert states(conn, b)[SPK.id] == ("sent", None)


def test_a_step_back_after_the_devices_outcome_is_no_dead_letter_but_a_contradiction_is(
    conn: psycopg.Connection,
) -> None:
    b = send(conn)
    (cmd,) = tick(conn)
    assert result(conn, [{"id": cmd["id"], "status": "done"}]) == []
    # QoS 1 redelivers an earlier result after the outcome: an honest device, nothing to keep.
    assert (
        result(conn, [{"id": cmd["id"], "status": "accepted"}, {"id": cmd["id"], "status": "playing"}]) == []
    )
    assert result(conn, [{"id": cmd["id"], "status": "failed"}]) == ["late_result"]
    assert states(conn, b)[SPK.id] == ("done", None)


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


EB = Device("eb-tay-binh", "thoai-giang", "eboard", "tay-binh")


def test_an_eboard_that_showed_the_text_until_expiry_ends_done_and_its_village_stays_reached(
    conn: psycopg.Connection,
) -> None:
    b = send(conn, devices=[EB.id])
    (show,) = tick(conn)
    assert show["type"] == "show" and show["text"] == b.title
    assert result(conn, [{"id": show["id"], "status": "accepted"}], EB) == []
    reached = [{"commune": "thoai-giang", "village": "tay-binh", "reached": True, "reason": None}]
    assert store.coverage(conn, store.get(conn, b.id)) == reached
    tick(conn, T0 + timedelta(hours=1))
    assert states(conn, b)[EB.id] == ("done", None)
    assert store.coverage(conn, store.get(conn, b.id)) == reached
    (log,) = store.share_rows(conn, [store.get(conn, b.id)])
    assert (log["villages_reached"], log["devices_done"]) == (1, 1)


def test_a_command_never_answered_is_sent_again_after_30_s_then_less_often(conn: psycopg.Connection) -> None:
    b = send(conn)
    (first,) = tick(conn)
    assert tick(conn, T0 + timedelta(seconds=29)) == []
    (again,) = tick(conn, T0 + timedelta(seconds=30))
    assert again == first
    assert tick(conn, T0 + timedelta(seconds=89)) == []  # the next wait is twice as long
    assert [c["id"] for c in tick(conn, T0 + timedelta(seconds=90))] == [first["id"]]
    result(conn, [{"id": first["id"], "status": "accepted"}])
    assert tick(conn, T0 + timedelta(minutes=10)) == []  # answered: the device has it
    assert states(conn, b)[SPK.id] == ("accepted", None)


def test_a_device_retired_before_the_start_is_left_out_and_the_others_get_it(
    conn: psycopg.Connection,
) -> None:
    later = T0 + timedelta(minutes=30)
    b = send(conn, starts_at=later, volume=None, devices=[SPK.id, "spk-tay-binh-1"])
    conn.execute("UPDATE devices SET retired_at = %s WHERE id = 'spk-tay-binh-1'", (T0,))
    (cmd,) = tick(conn, later)  # a target the registry lost never stops the worker's round
    assert cmd["topic"].endswith(f"/{SPK.id}/cmd")
    assert "volume" not in cmd  # no volume chosen: the speaker keeps its own
    assert set(states(conn, b)) == {SPK.id}


def test_before_it_starts_a_broadcast_lists_the_deliveries_it_will_make(conn: psycopg.Connection) -> None:
    with conn.transaction():
        b = store.create(
            conn,
            title="Họp dân",
            priority="normal",
            media_id=None,
            text="Họp dân 19h tại nhà văn hóa",
            targets={"communes": ["thoai-giang"]},
            starts_at=T0 + timedelta(hours=2),
            rrule=None,
            expires_at=None,
            risk_level=None,
            volume=None,
            actor="op-tg",
            role="operator",
            scope=["thoai-giang"],
            now=T0,
            tz=TZ,
        )
    shown = store.detail(conn, b)
    assert b.state == "awaiting_approval"
    # Text only: the e-boards alone; each `scheduled` until it is approved and starts.
    assert [(d["device_id"], d["kind"], d["state"], d["id"]) for d in shown["deliveries"]] == [
        ("eb-tay-binh", "eboard", "scheduled", None)
    ]
    with conn.transaction():
        store.cancel(conn, b.id, "op-tg", "operator", ["thoai-giang"], T0 + timedelta(minutes=1))
    (d,) = store.detail(conn, store.get(conn, b.id))["deliveries"]
    assert (d["state"], d["reason"]) == ("cancelled", "cancelled by op-tg")


def test_a_results_ts_dates_the_delivery_when_plausible_else_its_arrival(conn: psycopg.Connection) -> None:
    b = send(conn)
    (cmd,) = tick(conn)  # sent at T0
    topic = f"ioc/v1/{SPK.commune_id}/{SPK.kind}/{SPK.id}/cmd_result"

    def answer(status: str, ts: object, received: datetime) -> datetime:
        raw = Raw(topic, orjson.dumps({"id": cmd["id"], "status": status, "ts": ts}), received)
        batch = classify([raw], {SPK.id: SPK})
        assert results.apply(conn, batch.cmd_results, received) + batch.dead == []
        (d,) = store.deliveries(conn, store.get(conn, b.id))
        assert d.state == status
        return d.updated_at

    # the device's own time, 2 s before it reached us
    assert answer("accepted", (T0 + timedelta(seconds=3)).isoformat(), T0 + timedelta(seconds=5)) == T0 + (
        timedelta(seconds=3)
    )
    # epoch milliseconds too
    at = T0 + timedelta(seconds=6)
    assert answer("playing", int(at.timestamp() * 1000), T0 + timedelta(seconds=7)) == at
    # a clock a day behind, or one ahead of us: when it reached us; the result is kept all the same
    late = T0 + timedelta(seconds=9)
    assert answer("done", (T0 - timedelta(days=1)).isoformat(), late) == late


def test_a_results_unreadable_or_future_ts_keeps_the_result_at_its_arrival(conn: psycopg.Connection) -> None:
    b = send(conn)
    (cmd,) = tick(conn)
    topic = f"ioc/v1/{SPK.commune_id}/{SPK.kind}/{SPK.id}/cmd_result"
    for status, ts in (("accepted", "hôm qua"), ("done", (T0 + timedelta(minutes=3)).isoformat())):
        received = T0 + timedelta(seconds=20)
        raw = Raw(topic, orjson.dumps({"id": cmd["id"], "status": status, "ts": ts}), received)
        batch = classify([raw], {SPK.id: SPK})
        assert results.apply(conn, batch.cmd_results, received) + batch.dead == []
        (d,) = store.deliveries(conn, store.get(conn, b.id))
        assert (d.state, d.updated_at) == (status, received)


def test_why_a_village_is_not_reached_tells_maintenance_from_offline() -> None:
    assert why_not([("speaker", "sent", "maintenance")]) == "maintenance"
    assert why_not([("speaker", "scheduled", "offline"), ("speaker", "sent", "maintenance")]) == "maintenance"
    assert why_not([("speaker", "scheduled", "offline")]) == "offline"
    assert why_not([("speaker", "sent", "online"), ("speaker", "sent", "maintenance")]) == "in_progress"
    assert why_not([("speaker", "expired", "maintenance")]) == "maintenance"
    assert why_not([("speaker", "expired", "online")]) == "expired"
    assert why_not([("speaker", "rejected", "online"), ("speaker", "expired", "maintenance")]) == "rejected"


def test_each_occurrence_of_a_daily_bulletin_is_delivered_again_with_its_own_results(
    conn: psycopg.Connection,
) -> None:
    b = send(conn, "normal", rrule="FREQ=DAILY", expires_at=T0 + timedelta(minutes=30), volume=None)
    (first,) = tick(conn, T0)
    assert result(conn, [{"id": first["id"], "status": "done"}]) == []
    assert tick(conn, T0 + timedelta(hours=1)) == []  # between occurrences nothing is sent
    (second,) = tick(conn, T0 + timedelta(days=1))
    assert second["id"] != first["id"] and second["topic"] == first["topic"]
    assert tick(conn, T0 + timedelta(days=1, seconds=1)) == []  # once per occurrence
    rows = conn.execute(
        "SELECT occurrence_at, state FROM deliveries WHERE broadcast_id = %s ORDER BY occurrence_at", (b.id,)
    ).fetchall()
    assert rows == [(T0, "done"), (T0 + timedelta(days=1), "sent")]
