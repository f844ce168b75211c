"""From a device's last will on a real Mosquitto, through a real ingest, to the technician's
notification: the whole path, no shortcuts."""

import json
import socket
from pathlib import Path

import paho.mqtt.client as paho

from ingest.service import IngestService, IngestSettings
from services.topics import device_topic
from tests.alerts.conftest import (
    Receiver,
    alerts,
    base_config,
    load_registry,
    running,
    settings,
    write_config,
)
from tests.support import wait_for


def test_last_will_becomes_one_notification(
    db_url: str, mqtt_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    avail = device_topic("thoai-giang", "speaker", "spk-tay-binh-1", "availability")
    device = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="spk-tay-binh-1")
    device.will_set(avail, b"offline", qos=1, retain=True)
    device.connect(host, int(port))
    device.loop_start()
    ingest = IngestService(
        IngestSettings(
            _env_file=None,
            database_url=db_url,
            mqtt_url=mqtt_url,  # type: ignore[call-arg]
            ingest_id="ingest-e2e",
            ingest_onvif=False,
        )
    )
    with (
        ingest,
        running(settings(db_url, write_config(tmp_path, base_config(receiver, offline={"for_s": 1})))),
    ):
        wait_for(lambda: ingest.health.check())
        device.publish(avail, b"online", qos=1, retain=True).wait_for_publish(5)
        device.publish(
            device_topic("thoai-giang", "speaker", "spk-tay-binh-1", "status"),
            json.dumps({"volume": 60, "power": "mains"}),
            qos=1,
        ).wait_for_publish(5)
        # The speaker loses power: its connection drops without a goodbye, the broker sends its will.
        device.loop_stop()
        sock = device.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        opened = wait_for(lambda: alerts(db_url))
        wait_for(lambda: len(receiver.requests) == 1)
    assert [(a["rule"], a["device_id"]) for a in opened] == [("offline", "spk-tay-binh-1")]
    assert "Loa ấp Tây Bình 1 mất kết nối" in receiver.json()[0]["title"]
