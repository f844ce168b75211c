"""A long backlog queued by the broker is drained in bounded memory, every message stored once."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ingest.paho_fast import _CHUNK
from ingest.service import IngestService, IngestSettings
from services.topics import device_topic
from tests.ingest.conftest import Publisher, load_registry
from tests.support import scalar, wait_for


def test_backlog_is_drained_without_holding_it_all_in_memory(
    db_url: str, mqtt_url: str, settings_for: Callable[..., IngestSettings]
) -> None:
    load_registry(db_url)
    settings = settings_for(ingest_batch_max=200)
    with IngestService(settings) as svc:  # creates the persistent session, then goes away
        wait_for(lambda: svc.health.check())
    n = 12_000
    start = datetime(2026, 11, 25, tzinfo=UTC)
    msgs = [
        (
            device_topic("thoai-giang", "speaker", "spk-1", "status"),
            json.dumps({"ts": (start + timedelta(seconds=i)).isoformat(), "volume": i % 100}).encode(),
        )
        for i in range(n)
    ]
    pub = Publisher(mqtt_url)
    try:
        pub.publish_many(msgs)
    finally:
        pub.close()
    with IngestService(settings) as svc:
        wait_for(lambda: svc.mqtt.committed >= n, timeout=120)
        cap = 3 * 200
        one_read = _CHUNK // min(len(t) + len(p) for t, p in msgs)
        # The broker sends far past our receive window; ingest stops reading instead.
        assert svc.mqtt.max_queued <= cap + one_read < n
    assert scalar(db_url, "SELECT count(*) FROM status_samples") == n
