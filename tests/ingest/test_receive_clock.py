"""Messages read together get distinct receive times, so statuses without `ts` are all kept."""

import json
from datetime import UTC, datetime, timedelta

from ingest.mqtt import BrokerHealth, IngestConfig, MqttIngest, ReceiveClock
from services.registry_cache import RegistryCache
from services.topics import device_topic
from tests.ingest.conftest import load_registry
from tests.support import scalar


def test_the_clock_hands_out_each_microsecond_once_in_order() -> None:
    clock = ReceiveClock()
    first = clock.take(1000)
    second = clock.take(1)
    assert second >= first + timedelta(microseconds=1000)
    assert abs(first - datetime.now(UTC)) < timedelta(seconds=1)


def test_the_clock_follows_the_wall_clock_when_it_is_stepped_back() -> None:
    clock = ReceiveClock()
    clock._last = datetime.now(UTC) + timedelta(hours=1)  # as if the clock had just gone back an hour
    assert abs(clock.take(1) - datetime.now(UTC)) < timedelta(seconds=1)


def test_statuses_of_one_device_read_together_are_each_stored(db_url: str, mqtt_url: str) -> None:
    load_registry(db_url)
    ingest = MqttIngest(
        db_url, mqtt_url, IngestConfig("clock-test", 500, 0.005), RegistryCache(), BrokerHealth("clock-test")
    )
    topic = device_topic("thoai-giang", "speaker", "spk-1", "status")
    # As the client hands over one read: five QoS 1 PUBLISHes of one device, none with `ts`.
    ingest._on_qos1([(topic, json.dumps({"volume": v}).encode(), v + 1) for v in range(5)])
    queued = list(ingest._queue)
    times = [m.raw.received_at for m in queued]
    assert times == sorted(set(times)) and len(times) == 5

    try:
        ingest._commit(queued)
    finally:
        if ingest._conn is not None:
            ingest._conn.close()

    assert scalar(db_url, "SELECT count(*) FROM status_samples WHERE device_id = 'spk-1'") == 5
    assert scalar(db_url, "SELECT metrics->>'volume' FROM device_state WHERE device_id = 'spk-1'") == "4"
