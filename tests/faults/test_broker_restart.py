"""A graceful broker restart keeps ingest's `$share` subscription: messages that arrive before
ingest is back are queued for it, not acknowledged and dropped (issue 13, docs/broker.md)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from cli.embedded import Mosquitto
from ingest.service import IngestService, IngestSettings
from services.topics import device_topic
from tests.ingest.conftest import Publisher
from tests.support import load_registry, scalar, wait_for

REGISTRY = """\
commune: {id: xa, name: Xã}
villages: [{id: ap, name: Ấp}]
devices:
  - {id: spk-1, kind: speaker, village: ap}
"""
START = datetime(2026, 11, 1, tzinfo=UTC)

pytestmark = pytest.mark.slow


def statuses(n: int) -> list[tuple[str, bytes]]:
    topic = device_topic("xa", "speaker", "spk-1", "status")
    return [
        (topic, json.dumps({"ts": (START + timedelta(seconds=i)).isoformat()}).encode()) for i in range(n)
    ]


def stored(db_url: str) -> int:
    return int(scalar(db_url, "SELECT count(*) FROM status_samples"))


def test_messages_sent_while_ingest_is_away_across_a_broker_restart_are_stored(
    db_url: str, broker: Mosquitto
) -> None:
    """Mosquitto up to 2.0.21 does not persist `$share` subscriptions: after the restart the
    broker had no subscriber for these messages, acknowledged them and dropped all of them."""
    load_registry(db_url, REGISTRY)
    settings = IngestSettings(
        database_url=db_url, mqtt_url=broker.url(), ingest_id="ingest-r", ingest_onvif=False
    )
    with IngestService(settings) as svc:  # the session and its $share subscription exist
        wait_for(svc.health.check)
    broker.stop()
    broker.start()
    msgs = statuses(200)
    pub = Publisher(broker.url())
    pub.publish_many(msgs)  # every one acknowledged by the broker
    pub.close()
    with IngestService(settings) as svc:
        wait_for(svc.health.check, timeout=30)
        wait_for(lambda: svc.mqtt.committed >= len(msgs), timeout=30)
    assert stored(db_url) == len(msgs)
