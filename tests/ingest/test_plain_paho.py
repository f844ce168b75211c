"""IOC_INGEST_FAST=false: plain paho, every message through on_message, acked one by one."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ingest.paho_fast import FastClient
from ingest.service import IngestService, IngestSettings
from services.topics import device_topic
from tests.ingest.conftest import Publisher, load_registry
from tests.support import scalar, wait_for


def test_plain_paho_stores_and_acknowledges_after_commit(
    db_url: str, mqtt_url: str, settings_for: Callable[..., IngestSettings]
) -> None:
    load_registry(db_url)
    settings = settings_for(ingest_fast=False)
    start = datetime(2026, 11, 25, tzinfo=UTC)
    topic = device_topic("thoai-giang", "speaker", "spk-1", "status")
    msgs = [
        (topic, json.dumps({"ts": (start + timedelta(seconds=i)).isoformat(), "volume": i % 100}).encode())
        for i in range(300)
    ]
    pub = Publisher(mqtt_url)
    try:
        with IngestService(settings) as svc:
            assert not isinstance(svc.mqtt.client, FastClient)
            wait_for(lambda: svc.health.check())
            pub.publish_many(msgs)
            wait_for(lambda: svc.mqtt.committed >= len(msgs))
        # The same persistent session again: a message left unacknowledged would come back.
        with IngestService(settings) as svc:
            wait_for(lambda: svc.health.check())
            pub.publish(topic, b'{"volume": 1}')
            wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == len(msgs) + 1)
            assert svc.mqtt.committed == 1
    finally:
        pub.close()
