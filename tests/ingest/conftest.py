"""Helpers for ingest tests: a registry, an in-process ingest, a publishing client, polling."""

import os
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest

from ingest.service import IngestService, IngestSettings
from tests.support import load_registry as _load_registry
from tests.support import wait_for

REGISTRY = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
devices:
  - {id: gw-1, kind: gateway, village: trung-binh, heartbeat_s: 60}
  - {id: spk-1, kind: speaker, village: trung-binh, parent: gw-1, heartbeat_s: 60}
  - {id: spk-fast, kind: speaker, village: trung-binh, heartbeat_s: 1}
  - {id: eb-1, kind: eboard, village: trung-binh}
  - {id: wifi-1, kind: wifi, village: trung-binh}
  - {id: cam-1, kind: camera, village: trung-binh, onvif: {host: 127.0.0.1, port: 9, poll_s: 30}}
"""


def load_registry(url: str, text: str = REGISTRY) -> None:
    _load_registry(url, text)


class Publisher:
    """A real MQTT client publishing at QoS 1 and waiting for every PUBACK."""

    def __init__(
        self, mqtt_url: str, client_id: str = "test-pub", will: tuple[str, bytes] | None = None
    ) -> None:
        host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.connect(host, int(port))
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def publish_many(self, msgs: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in msgs]
        for i in infos:
            i.wait_for_publish(60)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# The ingest tests run in both client modes: IOC_INGEST_FAST=false runs them on plain paho.
INGEST_FAST = os.environ.get("IOC_INGEST_FAST", "true").strip().lower() not in ("false", "0", "no", "off")


@pytest.fixture
def settings_for(db_url: str, mqtt_url: str) -> Callable[..., IngestSettings]:
    def make(**kw: Any) -> IngestSettings:
        base: dict[str, Any] = {
            "database_url": db_url,
            "mqtt_url": mqtt_url,
            "ingest_id": "ingest-test",
            "ingest_onvif": False,
            "ingest_fast": INGEST_FAST,
        }
        base.update(kw)
        return IngestSettings(**base)

    return make


@pytest.fixture
def ingest(db_url: str, settings_for: Callable[..., IngestSettings]) -> Iterator[IngestService]:
    load_registry(db_url)
    with IngestService(settings_for()) as svc:
        wait_for(lambda: svc.health.check())
        yield svc


@pytest.fixture
def pub(mqtt_url: str) -> Iterator[Publisher]:
    p = Publisher(mqtt_url)
    yield p
    p.close()
