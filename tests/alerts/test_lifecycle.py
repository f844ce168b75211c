"""Alert lifecycle on a real database: the lost broker, acknowledgement, repeat and escalation,
resolve by hand, routing and quiet hours."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from services.alerts import store
from tests.alerts.conftest import (
    Receiver,
    alerts,
    all_online,
    base_config,
    load_registry,
    query,
    running,
    set_state,
    settings,
    write_config,
)
from tests.support import wait_for


def _ingest_heard(url: str, seconds_ago: float) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO process_health (name, kind, seen_at) VALUES ('ingest-a', 'ingest', now() - %s)"
            " ON CONFLICT (name) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            (timedelta(seconds=seconds_ago),),
        )


def test_lost_broker_raises_one_alert_and_holds_offline_alerts(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    _ingest_heard(db_url, 0)
    cfg = write_config(tmp_path, base_config(receiver))
    with running(settings(db_url, cfg)):
        _ingest_heard(db_url, 30)
        lost = wait_for(lambda: alerts(db_url, "rule = 'broker_lost'"))
        assert lost[0]["device_id"] is None and lost[0]["severity"] == "critical"
        set_state(db_url, "spk-tay-binh-1", "offline")
        set_state(db_url, "eb-tay-binh", "offline")
        wait_for(lambda: len(receiver.requests) == 1)
        assert receiver.json()[0]["title"] == (
            "[CẢNH BÁO] Trung tâm mất kết nối với máy chủ nhận tin thiết bị (MQTT): trạng thái thiết bị tạm dừng cập nhật"
        )
        _ingest_heard(db_url, 0)
        wait_for(lambda: alerts(db_url, "rule = 'broker_lost' AND state = 'resolved'"))
        back = datetime.now(UTC)
        offline = wait_for(
            lambda: (
                alerts(db_url, "rule = 'offline'") if len(alerts(db_url, "rule = 'offline'")) == 2 else None
            )
        )
        # Offline alerts only after the broker is back, and after their own `for` from then.
        assert all((a["opened_at"] - back).total_seconds() >= 0.5 for a in offline)
    assert len(alerts(db_url, "rule = 'broker_lost'")) == 1


def test_unacknowledged_alert_repeats_and_escalates_until_acked(db_url: str, tmp_path: Path) -> None:
    ops, chief = Receiver(), Receiver()
    try:
        load_registry(db_url)
        all_online(db_url)
        doc = {
            "rules": {"offline": {"for_s": 0, "repeat_s": 1}},
            "channels": {
                "ops": f"json://127.0.0.1:{ops.port}/ops",
                "chief": f"json://127.0.0.1:{chief.port}/chief",
            },
            "routes": [{"channels": ["ops"], "escalate": {"after_s": 1.5, "channels": ["chief"]}}],
        }
        with running(settings(db_url, write_config(tmp_path, doc))):
            set_state(db_url, "spk-tay-binh-1", "offline")
            wait_for(lambda: len(ops.requests) >= 3, timeout=20)
            wait_for(lambda: chief.requests, timeout=20)
            titles = [m["title"] for m in chief.json()]
            assert titles[0].startswith("[CHUYỂN CẤP]")
            (alert,) = alerts(db_url)
            with psycopg.connect(db_url) as conn:
                acked = store.ack(conn, alert["id"], "ky-thuat-1", "đang đến")
            assert (acked["state"], acked["acked_by"], acked["comment"]) == (
                "acked",
                "ky-thuat-1",
                "đang đến",
            )
            # The ack itself is told to those who were told of the alert.
            wait_for(lambda: any("ĐÃ TIẾP NHẬN" in m["title"] for m in ops.json()))
            n_ops, n_chief = len(ops.requests), len(chief.requests)
            set_state(db_url, "eb-tay-binh", "offline")  # a later tick proves the engine went on
            wait_for(lambda: len(alerts(db_url)) == 2)
            wait_for(lambda: len(ops.requests) > n_ops)
            assert sum("spk-tay-binh-1" in m["message"] for m in ops.json()[n_ops:]) == 0
            assert len(chief.requests) == n_chief
        history = [h["action"] for h in store_history(db_url, alert["id"])]
        assert (
            history[0] == "opened" and "escalated" in history and "repeated" in history and "acked" in history
        )
        assert sum(1 for h in history if h == "escalated") == 1
    finally:
        ops.close()
        chief.close()


def store_history(url: str, alert_id: int) -> list[dict[str, object]]:
    with psycopg.connect(url) as conn:
        return store.alert_history(conn, alert_id)


def test_resolved_by_hand_stays_resolved_until_the_condition_returns(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    with running(settings(db_url, write_config(tmp_path, base_config(receiver, offline={"for_s": 0})))):
        set_state(db_url, "spk-tay-binh-1", "offline")
        (alert,) = wait_for(lambda: alerts(db_url))
        with psycopg.connect(db_url) as conn:
            assert store.resolve(conn, alert["id"], "op-1")["resolved_by"] == "op-1"
        set_state(db_url, "eb-tay-binh", "offline")
        wait_for(lambda: len(alerts(db_url)) == 2)
        assert len(alerts(db_url, "device_id = 'spk-tay-binh-1'")) == 1
        set_state(db_url, "spk-tay-binh-1", "online")
        set_state(db_url, "spk-tay-binh-1", "offline")
        wait_for(lambda: len(alerts(db_url, "device_id = 'spk-tay-binh-1'")) == 2)


def test_routes_send_by_village_and_kind(db_url: str, tmp_path: Path) -> None:
    village, cams, everything = Receiver(), Receiver(), Receiver()
    try:
        load_registry(db_url)
        all_online(db_url)
        doc = {
            "rules": {"offline": {"for_s": 0}},
            "channels": {
                "tay-binh": f"json://127.0.0.1:{village.port}/x",
                "cams": f"json://127.0.0.1:{cams.port}/x",
                "all": f"json://127.0.0.1:{everything.port}/x",
            },
            "routes": [
                {"match": {"commune": "thoai-giang", "village": "tay-binh"}, "channels": ["tay-binh"]},
                {"match": {"kind": ["camera"]}, "channels": ["cams"], "stop": True},
                {"channels": ["all"]},
            ],
        }
        with running(settings(db_url, write_config(tmp_path, doc))):
            set_state(db_url, "spk-tay-binh-1", "offline")
            set_state(db_url, "cam-ubnd-1", "offline")
            set_state(db_url, "spk-trung-binh-1", "offline")
            wait_for(lambda: len(alerts(db_url)) == 3)
            wait_for(lambda: len(everything.requests) == 2 and village.requests and cams.requests)
        assert ["spk-tay-binh-1" in m["message"] for m in village.json()] == [True]
        assert ["cam-ubnd-1" in m["message"] for m in cams.json()] == [True]
        told = [
            d
            for m in everything.json()
            for d in ("spk-tay-binh-1", "spk-trung-binh-1", "cam-ubnd-1")
            if f"({d}," in m["message"]
        ]
        assert sorted(told) == ["spk-tay-binh-1", "spk-trung-binh-1"]
    finally:
        for r in (village, cams, everything):
            r.close()


def test_quiet_hours_hold_warnings_and_drop_them_when_resolved_first(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    quiet = f"{(local - timedelta(hours=1)):%H:%M}-{(local + timedelta(hours=1)):%H:%M}"
    doc = base_config(receiver, offline={"for_s": 0}, uplink_down={"for_s": 0, "severity": "warning"})
    doc["quiet_hours"] = quiet
    with running(settings(db_url, write_config(tmp_path, doc))):
        set_state(db_url, "wifi-trung-binh", "online", metrics={"uplink_up": False})
        set_state(db_url, "spk-tay-binh-1", "offline")  # critical: goes through quiet hours
        wait_for(lambda: len(alerts(db_url)) == 2)
        wait_for(lambda: len(receiver.requests) == 1)
        held = query(
            db_url,
            "SELECT o.status, o.not_before > now() + interval '30 minutes' FROM alert_outbox o"
            " JOIN alerts a ON a.id = o.alert_id WHERE a.rule = 'uplink_down'",
        )
        assert held == [("pending", True)]
        set_state(db_url, "wifi-trung-binh", "online", metrics={"uplink_up": True})
        wait_for(lambda: alerts(db_url, "rule = 'uplink_down' AND state = 'resolved'"))
        wait_for(
            lambda: (
                query(
                    db_url,
                    "SELECT status FROM alert_outbox o JOIN alerts a ON a.id = o.alert_id"
                    " WHERE a.rule = 'uplink_down'",
                )
                == [("cancelled",)]
            )
        )
    assert ["mất kết nối" in m["title"] for m in receiver.json()] == [True]


def _open_broadcast_alert(url: str, broadcast: int, village: str, minutes_ago: float) -> int:
    """An open broadcast_not_reached alert as services.broadcasts.alerting writes it (no device)."""
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    with psycopg.connect(url) as conn:
        (alert_id,) = conn.execute(
            "INSERT INTO alerts (rule, device_id, commune_id, severity, message, details, affected,"
            " since, opened_at, notified_at, notify_count)"
            " VALUES ('broadcast_not_reached', NULL, 'thoai-giang', 'critical', %s, %s, %s, %s, %s, %s, 1)"
            " RETURNING id",
            (
                f"Bản tin khẩn cấp chưa đến {village}",
                psycopg.types.json.Jsonb(
                    {"broadcast": broadcast, "title": f"Bão số {broadcast}", "villages": village, "missed": 1}
                ),
                ["spk-tay-binh-1"],
                at,
                at,
                at,
            ),
        ).fetchone()  # type: ignore[misc]
    return int(alert_id)


def test_two_open_broadcast_alerts_are_each_repeated_to_the_routed_channel(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    """Two emergencies missing villages at once are two alerts with no device: each is repeated
    (they were one key, so only one of them was), to the channel its route names."""
    load_registry(db_url)
    all_online(db_url)
    first = _open_broadcast_alert(db_url, 101, "Ấp Tây Bình", 3)
    second = _open_broadcast_alert(db_url, 102, "Ấp Trung Bình", 3)
    doc = base_config(receiver) | {"repeat_s": 1}
    with running(settings(db_url, write_config(tmp_path, doc))):
        wait_for(
            lambda: (
                {a["id"] for a in alerts(db_url, "rule = 'broadcast_not_reached'") if a["notify_count"] >= 2}
                == {first, second}
            ),
            timeout=20,
        )
        wait_for(
            lambda: all(
                any(m["title"].startswith("[NHẮC LẠI]") and link in m["message"] for m in receiver.json())
                for link in ("#/broadcasts/101", "#/broadcasts/102")
            ),
            timeout=20,
        )
    assert {a["state"] for a in alerts(db_url, "rule = 'broadcast_not_reached'")} == {"open"}
    for alert_id in (first, second):
        assert "repeated" in [h["action"] for h in store_history(db_url, alert_id)]
