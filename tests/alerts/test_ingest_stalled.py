"""`ingest_stalled`: an ingest that has messages waiting and commits nothing is one IOC-wide alert,
like the lost broker, and device states freeze (no device turns offline because the IOC went deaf).
The start grace of a new evaluator, decided without a database; then the whole path for real."""

import dataclasses
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as paho
import psycopg

from ingest.service import IngestService, IngestSettings
from services.topics import device_topic
from tests.alerts.conftest import Receiver, alerts, base_config, running, settings, write_config
from tests.alerts.test_decisions import NOW, both_offline, decider, opened
from tests.support import load_registry, scalar, wait_for


def test_a_stalled_ingest_opens_one_ioc_wide_alert_and_holds_back_offline() -> None:
    seen = dataclasses.replace(both_offline(ingest_heard_at=NOW), ingest_stalled={"ingest-a": (31.0, 120)})
    out = decider().decide(seen)
    assert opened(out.decisions) == [("ingest_stalled", None)]
    stalled = out.decisions[0]
    assert stalled.details == {"ingest": "ingest-a", "stalled_s": 31, "waiting": 120}  # type: ignore[union-attr]
    assert stalled.since == NOW - timedelta(seconds=31)  # type: ignore[union-attr]


def test_a_short_stall_is_no_alert() -> None:
    seen = dataclasses.replace(both_offline(ingest_heard_at=NOW), ingest_stalled={"ingest-a": (12.0, 3)})
    assert opened(decider().decide(seen).decisions) == [("offline", "gw-1")]


def test_a_new_evaluator_waits_for_ingest_to_come_up_but_not_for_one_it_saw_go() -> None:
    stale = both_offline(ingest_heard_at=NOW - timedelta(seconds=60))
    d = decider()
    assert opened(d.decide(dataclasses.replace(stale, in_grace=True)).decisions) == [("offline", "gw-1")]
    # Ingest came up, then went silent while the evaluator was still in its grace: an incident.
    d.decide(dataclasses.replace(both_offline(ingest_heard_at=NOW), in_grace=True))
    assert ("broker_lost", None) in opened(d.decide(dataclasses.replace(stale, in_grace=True)).decisions)


REGISTRY = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
devices:
  - {id: spk-1, kind: speaker, village: trung-binh, name: "Loa 1", heartbeat_s: 5}
"""


def test_a_writer_that_cannot_commit_raises_ingest_stalled_and_devices_stay_online(
    db_url: str, mqtt_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url, REGISTRY)
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    device = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="spk-1")
    device.connect(host, int(port))
    device.loop_start()
    topic = device_topic("thoai-giang", "speaker", "spk-1", "status")
    ingest = IngestService(
        IngestSettings(
            _env_file=None,
            database_url=db_url,
            mqtt_url=mqtt_url,  # type: ignore[call-arg]
            ingest_id="ingest-stall",
            ingest_onvif=False,
        )
    )
    cfg = base_config(receiver, offline={"for_s": 0}, ingest_stalled={"stall_s": 3})
    talking = threading.Event()

    def keep_talking() -> None:  # the speaker is fine all along: a status every second
        while not talking.wait(1.0):
            device.publish(topic, json.dumps({"volume": 40}), qos=1)

    talker = threading.Thread(target=keep_talking, daemon=True)
    try:
        with ingest, running(settings(db_url, write_config(tmp_path, cfg))):
            device.publish(topic, json.dumps({"volume": 40}), qos=1).wait_for_publish(5)
            wait_for(
                lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id = 'spk-1'") == "online"
            )
            talker.start()
            # Another session holds a lock the writer needs for as long as it likes (a migration,
            # a stuck vacuum, a disk that does not answer): the writer waits, nothing fails.
            with psycopg.connect(db_url) as blocker:
                blocker.execute("LOCK TABLE status_samples IN EXCLUSIVE MODE")
                stalled = wait_for(lambda: alerts(db_url, "rule = 'ingest_stalled'"), timeout=60)
                # Three liveness windows of the speaker (3 x 5 s) with nothing stored from it.
                time.sleep(16)
                state = scalar(db_url, "SELECT state FROM device_state WHERE device_id = 'spk-1'")
                blocker.rollback()
            wait_for(lambda: alerts(db_url, "rule = 'ingest_stalled' AND state = 'resolved'"), timeout=60)
            wait_for(lambda: len(receiver.requests) == 2)
    finally:
        talking.set()
        device.loop_stop()
        device.disconnect()
    assert state == "online"
    assert stalled[0]["device_id"] is None and stalled[0]["severity"] == "critical"
    assert [a["rule"] for a in alerts(db_url)] == ["ingest_stalled"]
    titles = [r["title"] for r in receiver.json()]
    assert titles[0].startswith("[CẢNH BÁO] Trung tâm ngừng ghi dữ liệu thiết bị")
    assert titles[1].startswith("[ĐÃ KHẮC PHỤC] Trung tâm ngừng ghi dữ liệu thiết bị")
