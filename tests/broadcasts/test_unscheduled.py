"""`unscheduled_broadcast` end to end: speakers' statuses and command results over a real Mosquitto,
through a real `ioc ingest` (with its delivery worker), judged by a real alert engine that notifies
a local receiver."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from ingest.service import IngestService, IngestSettings
from services import media
from services.alerts import config as alert_config
from services.alerts import unscheduled
from services.alerts.engine import AlertsSettings
from services.broadcasts import store
from services.errors import InvalidInput
from services.topics import device_topic
from tests.alerts.conftest import Receiver, alerts, running, settings, write_config
from tests.broadcasts.conftest import SECRET, wav
from tests.broadcasts.conftest import settings as gateway_settings
from tests.gateway.conftest import Headers, seed
from tests.support import scalar, wait_for

USB = ("thoai-giang", "spk-trung-binh-1")  # plays a USB stick nobody scheduled
RELAY = ("thoai-giang", "spk-tay-binh-1")  # relays VOV1, which the commune allows
OURS = ("long-thanh", "spk-xom-1")  # plays a broadcast of ours


class Speakers:
    """The three speakers' firmware, on one MQTT connection: statuses on demand; a `play` command
    is accepted and played (status `playing`, source `ioc`)."""

    def __init__(self, mqtt_url: str) -> None:
        host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="speakers")
        self.client.on_message = self._on_cmd
        self.client.connect(host, int(port))
        self.client.loop_start()
        for commune, device in (USB, OURS):
            self.client.subscribe(device_topic(commune, "speaker", device, "cmd"), qos=1)
        self.commands: list[dict[str, Any]] = []

    def status(self, speaker: tuple[str, str], **fields: Any) -> None:
        topic = device_topic(speaker[0], "speaker", speaker[1], "status")
        self.client.publish(topic, json.dumps({"volume": 70, **fields}), qos=1).wait_for_publish(5)

    def _on_cmd(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        cmd = orjson.loads(msg.payload)
        self.commands.append(cmd)
        if cmd["type"] != "play":
            return
        result = msg.topic.removesuffix("/cmd") + "/cmd_result"
        for status in ("accepted", "playing"):
            client.publish(result, orjson.dumps({"id": cmd["id"], "status": status}), qos=1)
        client.publish(
            msg.topic.removesuffix("/cmd") + "/status",
            json.dumps({"volume": 70, "playing": True, "source": "ioc"}),
            qos=1,
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def speakers(mqtt_url: str) -> Iterator[Speakers]:
    s = Speakers(mqtt_url)
    yield s
    s.close()


def rows(db_url: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (a["device_id"], a["state"], a["message"], a["details"])
        for a in alerts(db_url, "rule = 'unscheduled_broadcast'")
    ]


def emergency(db_url: str, tmp_path: Path, devices: list[str]) -> int:
    with psycopg.connect(db_url) as conn, conn.transaction():
        m = media.store(conn, tmp_path / "media", wav(30.0), "admin")
        b = store.create(
            conn,
            title="Cảnh báo lũ",
            priority="emergency",
            media_id=m.id,
            text=None,
            targets={"devices": devices},
            starts_at=None,
            rrule=None,
            expires_at=None,
            risk_level=3,
            volume=None,
            actor="admin",
            role="admin",
            scope=None,
            now=store.utcnow(),
            tz="Asia/Ho_Chi_Minh",
        )
    return b.id


@pytest.mark.timeout(120)
def test_a_speaker_playing_what_nobody_sent_raises_one_alert_until_it_stops_or_ours_takes_over(
    db_url: str, mqtt_url: str, tmp_path: Path, speakers: Speakers
) -> None:
    seed(db_url)
    receiver = Receiver()
    ingest = IngestService(
        IngestSettings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=db_url,
            mqtt_url=mqtt_url,
            ingest_id="ingest-unscheduled",
            ingest_onvif=False,
            ingest_sources=False,
            secret_key=SECRET,
            public_url="http://ioc.example:8000",
        )
    )
    config = {
        "rules": {"offline": {"for_s": 60}, "unscheduled_broadcast": {"for_s": 0}},
        "channels": {"ops": f"json://127.0.0.1:{receiver.port}/hook"},
        "routes": [{"channels": ["ops"]}],
    }
    engine = settings(db_url, write_config(tmp_path, config), broadcast_allowed_sources="fm-xa, vov1")
    try:
        with ingest, running(engine):
            wait_for(lambda: ingest.health.check())
            for s in (USB, RELAY, OURS):
                speakers.status(s, playing=False)
            wait_for(lambda: scalar(db_url, "SELECT count(*) FROM device_state WHERE state = 'online'") == 3)
            # Allowed (sources compare without case), then not.
            speakers.status(RELAY, playing=True, source="VOV1")
            speakers.status(USB, playing=True, source="usb")
            ((device, state, message, details),) = wait_for(lambda: rows(db_url))
            assert (device, state, details) == ("spk-trung-binh-1", "open", {"source": "usb"})
            assert message.endswith("spk-trung-binh-1 đang phát nội dung không do Trung tâm gửi (nguồn: usb)")
            (note,) = wait_for(lambda: receiver.json())
            assert "đang phát nội dung không do Trung tâm gửi (nguồn: usb)" in note["title"]
            assert "Ấp Trung Bình" in note["message"]

            # It stops: resolved.
            speakers.status(USB, playing=False)
            wait_for(lambda: [r[1] for r in rows(db_url)] == ["resolved"])

            # It plays the stick again; then our emergency takes the speaker over.
            speakers.status(USB, playing=True, source="usb")
            wait_for(lambda: [r[1] for r in rows(db_url)] == ["resolved", "open"])
            bid = emergency(db_url, tmp_path, [USB[1], OURS[1]])
            wait_for(lambda: [r[1] for r in rows(db_url)] == ["resolved", "resolved"])
            assert {c["broadcast"] for c in speakers.commands} == {str(bid)}
            # (the alert resolves as soon as the command is sent; the speakers' results follow)
            wait_for(
                lambda: (
                    scalar(
                        db_url,
                        "SELECT array_agg(state ORDER BY device_id) FROM deliveries WHERE broadcast_id = %s",
                        (bid,),
                    )
                    == ["playing", "playing"]
                )
            )

            # A stream the commune does not allow on the relay speaker: raised. The speaker that
            # plays ours (its status says so since it took our command) raised nothing meanwhile.
            speakers.status(RELAY, playing=True, source="stream:http://203.0.113.9/live")
            wait_for(lambda: len(rows(db_url)) == 3)
        assert [(r[0], r[1], r[3]) for r in rows(db_url)] == [
            ("spk-trung-binh-1", "resolved", {"source": "usb"}),
            ("spk-trung-binh-1", "resolved", {"source": "usb"}),
            ("spk-tay-binh-1", "open", {"source": "stream:http://203.0.113.9/live"}),
        ]
    finally:
        receiver.close()


def test_allowed_sources_come_from_the_environment_and_are_set_per_commune_by_overrides() -> None:
    doc = {
        "rules": {
            "unscheduled_broadcast": {
                "overrides": [{"match": {"commune": "long-thanh"}, "allowed_sources": ["fm-xa", "none"]}]
            }
        }
    }
    env = AlertsSettings(_env_file=None, broadcast_allowed_sources=" vov1, ,VOV2 ")  # type: ignore[call-arg]
    rule = alert_config.build(doc, defaults=env.rule_defaults()).rules["unscheduled_broadcast"]
    here = rule.for_device("thoai-giang", "trung-binh", "speaker", "spk-trung-binh-1")
    there = rule.for_device("long-thanh", "xom-1", "speaker", "spk-xom-1")
    assert here["allowed_sources"] == ["vov1", "VOV2"] and there["allowed_sources"] == ["fm-xa", "none"]
    assert unscheduled.unscheduled({"playing": True, "source": "vov2"}, False, here) == (False, {})
    assert unscheduled.unscheduled({"playing": True}, False, here) == (True, {"source": "none"})
    assert unscheduled.unscheduled({"playing": True}, False, there) == (False, {})
    assert unscheduled.unscheduled({"playing": True, "source": "usb"}, True, here) == (False, {})
    assert unscheduled.unscheduled({"playing": False, "source": "usb"}, False, here) == (False, {})
    with pytest.raises(InvalidInput, match=r"rules.unscheduled_broadcast.allowed_sources: must be a list"):
        alert_config.build({"rules": {"unscheduled_broadcast": {"allowed_sources": "vov1"}}})


def test_the_rules_in_force_show_the_allowed_sources_of_the_environment(
    seeded: str, tmp_path: Path, as_user: Headers
) -> None:
    s = gateway_settings(seeded, tmp_path, broadcast_allowed_sources="vov1,fm-xa")
    with TestClient(create_app(s)) as http:
        r = http.get("/api/v1/alert-rules", headers=as_user())
        assert r.status_code == 200
        assert r.json()["rules"]["unscheduled_broadcast"]["allowed_sources"] == ["vov1", "fm-xa"]
        # An admin's edit replaces the environment's list, as IOC_ALERTS_FILE's would.
        body = {"rules": {"unscheduled_broadcast": {"allowed_sources": ["vov1"]}}}
        assert http.put("/api/v1/alert-rules", json=body, headers=as_user()).status_code == 200
        rules = http.get("/api/v1/alert-rules", headers=as_user()).json()["rules"]
        assert rules["unscheduled_broadcast"]["allowed_sources"] == ["vov1"]
