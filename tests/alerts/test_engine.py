"""The evaluator on a real database: rules, `for`, flapping, parent suppression, maintenance,
auto-resolve, the lost broker, repeat and escalation. Notifications reach a local json:// receiver."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.alerts.conftest import (
    Receiver,
    add_event,
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


def test_offline_after_for_opens_one_alert_notifies_and_resolves_by_itself(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    cfg = write_config(tmp_path, base_config(receiver))
    with running(settings(db_url, cfg)):
        set_state(db_url, "spk-tay-binh-1", "offline")
        opened = wait_for(lambda: alerts(db_url, "rule = 'offline'"))
        assert [(a["device_id"], a["state"], a["severity"]) for a in opened] == [
            ("spk-tay-binh-1", "open", "critical")
        ]
        assert (opened[0]["opened_at"] - opened[0]["since"]).total_seconds() >= 1
        wait_for(lambda: len(receiver.requests) == 1)
        msg = receiver.json()[0]
        assert "Loa ấp Tây Bình 1 mất kết nối" in msg["title"]
        assert "Ấp Tây Bình, Xã Thoại Giang" in msg["message"]
        assert "http://ioc.example:8000/#/device/spk-tay-binh-1" in msg["message"]
        set_state(db_url, "spk-tay-binh-1", "online")
        wait_for(lambda: alerts(db_url, "state = 'resolved'"))
        wait_for(lambda: len(receiver.requests) == 2)
        assert "ĐÃ KHẮC PHỤC" in receiver.json()[1]["title"]
    assert len(alerts(db_url)) == 1


def test_parent_down_raises_one_alert_listing_affected_children(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    cfg = write_config(tmp_path, base_config(receiver, offline={"for_s": 1}))
    with running(settings(db_url, cfg)):
        # Children notice first (their LWTs arrive before the router's silence is noticed).
        set_state(db_url, "cam-ubnd-1", "offline")
        set_state(db_url, "spk-trung-binh-1", "offline")
        set_state(db_url, "wifi-trung-binh", "offline")
        set_state(db_url, "gw-trung-binh", "offline")
        opened = wait_for(lambda: alerts(db_url))
        wait_for(
            lambda: alerts(db_url)[0]["affected"] == ["cam-ubnd-1", "spk-trung-binh-1", "wifi-trung-binh"]
        )
        wait_for(lambda: len(receiver.requests) == 1)
        assert [a["device_id"] for a in opened] == ["gw-trung-binh"]
        assert "3 thiết bị" in receiver.json()[0]["message"]
        # The router comes back; the camera does not: its own `for` starts from the router's return.
        set_state(db_url, "gw-trung-binh", "online")
        set_state(db_url, "wifi-trung-binh", "online")
        set_state(db_url, "spk-trung-binh-1", "online")
        back = wait_for(
            lambda: query(db_url, "SELECT since FROM device_state WHERE device_id = 'gw-trung-binh'")
        )
        cam = wait_for(lambda: alerts(db_url, "device_id = 'cam-ubnd-1'"))
        assert (cam[0]["opened_at"] - back[0][0]).total_seconds() >= 1
        assert [a["state"] for a in alerts(db_url, "device_id = 'gw-trung-binh'")] == ["resolved"]
    assert [a["device_id"] for a in alerts(db_url)] == ["gw-trung-binh", "cam-ubnd-1"]


def test_flapping_device_raises_one_alert_and_resolves_when_stable(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    rules = {"for_s": 60, "flap_count": 3, "flap_window_s": 60, "flap_clear_s": 1.5}
    cfg = write_config(tmp_path, base_config(receiver, offline=rules))
    with running(settings(db_url, cfg)):
        for _ in range(6):
            set_state(db_url, "spk-tay-binh-1", "offline")
            set_state(db_url, "spk-tay-binh-1", "online")
        opened = wait_for(lambda: alerts(db_url))
        assert opened[0]["details"]["flapping"] is True
        assert "chập chờn" in opened[0]["message"]
        wait_for(lambda: alerts(db_url, "state = 'resolved'"))
        wait_for(lambda: len(receiver.requests) == 2)
    assert len(alerts(db_url)) == 1
    assert [m["title"].split("]")[0] for m in receiver.json()] == ["[CẢNH BÁO", "[ĐÃ KHẮC PHỤC"]


def test_each_builtin_rule_raises_its_alert_and_clears(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    on_hours = f"{(local - timedelta(hours=1)):%H:%M}-{(local + timedelta(hours=1)):%H:%M}"
    instant = {"for_s": 0}
    doc = base_config(
        receiver,
        camera_clock_skew=instant,
        camera_tamper=instant,
        camera_signal_loss=instant,
        camera_storage_failure=instant,
        speaker_battery_low=instant,
        uplink_down=instant,
        temperature_high={"for_s": 0, "threshold": 60},
        eboard_screen_off={"for_s": 0, "on_hours": on_hours},
        gateway_cpu={"metric": "cpu_pct", "op": ">", "threshold": 90, "for_s": 0, "kinds": ["gateway"]},
    )
    cfg = write_config(tmp_path, doc)
    with running(settings(db_url, cfg)):
        set_state(db_url, "cam-ubnd-1", "online", metrics={"clock_offset_s": -3600, "tamper": False})
        set_state(db_url, "spk-tay-binh-1", "online", metrics={"power": "battery", "battery_pct": 12})
        set_state(db_url, "spk-trung-binh-1", "online", metrics={"power": "mains", "battery_pct": 5})
        set_state(db_url, "wifi-trung-binh", "online", metrics={"uplink_up": False})
        set_state(db_url, "eb-tay-binh", "online", metrics={"screen_on": False, "temperature_c": 71.5})
        set_state(db_url, "gw-trung-binh", "online", metrics={"cpu_pct": 97, "uplink_up": True})
        add_event(db_url, "cam-ubnd-1", "tns1:VideoSource/GlobalSceneChange/ImagingService", {"State": True})
        add_event(db_url, "cam-ubnd-1", "signal_loss")
        add_event(db_url, "cam-ubnd-1", "storage_failure")
        expected = {
            ("camera_clock_skew", "cam-ubnd-1"),
            ("camera_tamper", "cam-ubnd-1"),
            ("camera_signal_loss", "cam-ubnd-1"),
            ("camera_storage_failure", "cam-ubnd-1"),
            ("speaker_battery_low", "spk-tay-binh-1"),
            ("uplink_down", "wifi-trung-binh"),
            ("eboard_screen_off", "eb-tay-binh"),
            ("temperature_high", "eb-tay-binh"),
            ("gateway_cpu", "gw-trung-binh"),
        }
        wait_for(lambda: {(a["rule"], a["device_id"]) for a in alerts(db_url)} == expected)
        messages = {a["rule"]: a["message"] for a in alerts(db_url)}
        assert messages["camera_clock_skew"] == "Camera cổng UBND lệch giờ -3.600 giây (ngưỡng 60 giây)"
        assert messages["speaker_battery_low"] == "Loa ấp Tây Bình 1 đang chạy pin, còn 12% (ngưỡng 20%)"
        # Everything back to normal: each alert resolves by itself.
        set_state(db_url, "cam-ubnd-1", "online", metrics={"clock_offset_s": 2, "tamper": False})
        add_event(db_url, "cam-ubnd-1", "tns1:VideoSource/GlobalSceneChange/ImagingService", {"State": False})
        add_event(db_url, "cam-ubnd-1", "signal_loss", {"state": False})
        add_event(db_url, "cam-ubnd-1", "storage_failure", {"state": False})
        set_state(db_url, "spk-tay-binh-1", "online", metrics={"power": "mains", "battery_pct": 12})
        set_state(db_url, "wifi-trung-binh", "online", metrics={"uplink_up": True})
        set_state(db_url, "eb-tay-binh", "online", metrics={"screen_on": True, "temperature_c": 40})
        set_state(db_url, "gw-trung-binh", "online", metrics={"cpu_pct": 20, "uplink_up": True})
        wait_for(lambda: all(a["state"] == "resolved" for a in alerts(db_url)))
        wait_for(lambda: len(receiver.requests) == 2 * len(expected))
    assert len(alerts(db_url)) == len(expected)


def test_tamper_status_field_raises_camera_tamper(db_url: str, receiver: Receiver, tmp_path: Path) -> None:
    load_registry(db_url)
    all_online(db_url)
    cfg = write_config(tmp_path, base_config(receiver, camera_tamper={"for_s": 0}))
    with running(settings(db_url, cfg)):
        set_state(db_url, "cam-ubnd-1", "online", metrics={"tamper": True})
        assert wait_for(lambda: alerts(db_url))[0]["rule"] == "camera_tamper"


def test_a_device_of_any_kind_refusing_our_credentials_raises_auth_failed_and_a_camera_its_own(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    """SPEC §8: auth_failed whatever the kind (an SNMP v3 key, an HTTP password): one alert each,
    the camera under its own rule, not both."""
    load_registry(db_url)
    all_online(db_url)
    cfg = write_config(
        tmp_path, base_config(receiver, auth_failed={"for_s": 0}, camera_auth_failed={"for_s": 0})
    )
    with running(settings(db_url, cfg)):
        set_state(db_url, "wifi-trung-binh", "auth_failed")
        set_state(db_url, "cam-ubnd-1", "auth_failed")
        wait_for(
            lambda: (
                {(a["rule"], a["device_id"]) for a in alerts(db_url)}
                == {("auth_failed", "wifi-trung-binh"), ("camera_auth_failed", "cam-ubnd-1")}
            )
        )
        wifi = next(a for a in alerts(db_url) if a["rule"] == "auth_failed")
        assert "từ chối tài khoản" in wifi["message"] and wifi["severity"] == "warning"
        wait_for(lambda: len(receiver.requests) == 2)
        set_state(db_url, "wifi-trung-binh", "online")
        wait_for(lambda: any(a["state"] == "resolved" for a in alerts(db_url, "rule = 'auth_failed'")))
    assert len(alerts(db_url)) == 2
