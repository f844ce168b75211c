"""The evaluator on a real database: rules, `for`, flapping, parent suppression, maintenance,
auto-resolve, the lost broker, repeat and escalation. Notifications reach a local json:// receiver."""

from pathlib import Path

from tests.alerts.conftest import (
    Receiver,
    alerts,
    all_online,
    base_config,
    load_registry,
    running,
    set_state,
    settings,
    wait_for,
    write_config,
)


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
        assert "http://ioc.example:8000/#/devices/spk-tay-binh-1" in msg["message"]
        set_state(db_url, "spk-tay-binh-1", "online")
        wait_for(lambda: alerts(db_url, "state = 'resolved'"))
        wait_for(lambda: len(receiver.requests) == 2)
        assert "ĐÃ KHẮC PHỤC" in receiver.json()[1]["title"]
    assert len(alerts(db_url)) == 1
