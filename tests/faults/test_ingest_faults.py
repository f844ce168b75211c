"""Faults during a stream: every acknowledged message stored exactly once (all carry `ts`)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from cli.embedded import Mosquitto, Postgres
from ingest.service import IngestService, IngestSettings
from services.topics import device_topic
from tests.ingest.conftest import Publisher, load_registry
from tests.support import scalar, wait_for

N_DEVICES = 50
REGISTRY = "commune: {id: xa, name: Xã}\nvillages: [{id: ap, name: Ấp}]\ndevices:\n" + "".join(
    f"  - {{id: spk-{i}, kind: speaker, village: ap}}\n" for i in range(N_DEVICES)
)
START = datetime(2026, 11, 1, tzinfo=UTC)

pytestmark = pytest.mark.slow


def stream(n: int, offset: int = 0) -> list[tuple[str, bytes]]:
    """n distinct status messages; message i of device d is at START + i seconds."""
    out = []
    for i in range(offset, offset + n):
        dev = i % N_DEVICES
        ts = START + timedelta(seconds=i // N_DEVICES)
        body = {"ts": ts.isoformat(), "volume": i % 100, "playing": bool(i % 2), "rssi_dbm": -60 - i % 30}
        out.append((device_topic("xa", "speaker", f"spk-{dev}", "status"), json.dumps(body).encode()))
    return out


def settings(db_url: str, mqtt_url: str, ingest_id: str = "ingest-a") -> IngestSettings:
    return IngestSettings(database_url=db_url, mqtt_url=mqtt_url, ingest_id=ingest_id, ingest_onvif=False)


def samples(url: str) -> int:
    try:
        return int(scalar(url, "SELECT count(*) FROM status_samples"))
    except Exception:  # noqa: BLE001 - the database may be down at this moment
        return -1


# Its waits add up to more than the suite's 120 s: on a loaded machine the count it last saw
# (wait_for's message) says more than pytest-timeout's stacks.
@pytest.mark.timeout(360)
def test_killing_postgres_mid_stream_loses_and_duplicates_nothing(
    own_pg: Postgres, broker: Mosquitto
) -> None:
    url = own_pg.url()
    load_registry(url, REGISTRY)
    n = 50_000
    with IngestService(settings(url, broker.url())) as svc:
        wait_for(svc.health.check)
        pub = Publisher(broker.url())
        sender = threading.Thread(target=pub.publish_many, args=(stream(n),))
        sender.start()
        wait_for(lambda: samples(url) > 5_000, timeout=60)
        own_pg.kill()
        time.sleep(1.0)  # messages keep arriving and must wait, unacknowledged
        own_pg.start()
        sender.join(120)
        wait_for(lambda: samples(url) == n, timeout=120)
        time.sleep(0.5)
        pub.close()
    assert samples(url) == n
    assert scalar(url, "SELECT count(DISTINCT (device_id, ts)) FROM status_samples") == n
    assert (
        scalar(
            url, "SELECT value FROM metric_counters WHERE name='ioc_ingest_messages_total' AND label='status'"
        )
        >= n
    )


def test_broker_restart_mid_stream_keeps_queued_messages(db_url: str, broker: Mosquitto) -> None:
    load_registry(db_url, REGISTRY)
    n = 20_000
    first, second = stream(n // 2), stream(n // 2, offset=n // 2)
    with IngestService(settings(db_url, broker.url())) as svc:
        wait_for(svc.health.check)
        pub = Publisher(broker.url())
        pub.publish_many(first)
        pub.close()
        # Graceful restart: Mosquitto saves the ingest's persistent session and its queue.
        broker.stop()
        broker.start()
        wait_for(svc.health.check, timeout=30)
        pub = Publisher(broker.url(), client_id="test-pub-2")
        pub.publish_many(second)
        pub.close()
        wait_for(lambda: samples(db_url) == n, timeout=60)
    assert samples(db_url) == n


def test_killing_an_ingest_process_mid_batch_loses_nothing(db_url: str, broker: Mosquitto, tmp_path) -> None:
    load_registry(db_url, REGISTRY)
    n = 50_000
    env = {
        **os.environ,
        "IOC_DATABASE_URL": db_url,
        "IOC_MQTT_URL": broker.url(),
        "IOC_INGEST_ID": "ingest-k",
        "IOC_INGEST_ONVIF": "false",
        "IOC_DATA_DIR": str(tmp_path),
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "ingest"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    proc = start()
    try:
        # The session must exist before publishing, or the broker has nobody to queue for.
        wait_for(
            lambda: scalar(db_url, "SELECT count(*) FROM process_health WHERE name='ingest-k'"), timeout=30
        )
        pub = Publisher(broker.url())
        sender = threading.Thread(target=pub.publish_many, args=(stream(n),))
        sender.start()
        wait_for(lambda: samples(db_url) > 5_000, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = samples(db_url)
        sender.join(120)
        pub.close()
        proc = start()
        wait_for(lambda: samples(db_url) == n, timeout=120)
    finally:
        proc.terminate()
        proc.wait(30)
    assert at_kill < n  # the kill really happened mid-stream
    assert samples(db_url) == n


def test_dead_letter_flood_does_not_disturb_valid_traffic(db_url: str, broker: Mosquitto) -> None:
    load_registry(db_url, REGISTRY)
    n_good, n_bad = 10_000, 10_000
    bad = [
        (device_topic("xa", "speaker", f"spk-{i % N_DEVICES}", "status"), b"\xff not json %d" % i)
        for i in range(n_bad)
    ]
    with IngestService(settings(db_url, broker.url())) as svc:
        wait_for(svc.health.check)
        good_pub, bad_pub = Publisher(broker.url()), Publisher(broker.url(), client_id="flood")
        threads = [
            threading.Thread(target=good_pub.publish_many, args=(stream(n_good),)),
            threading.Thread(target=bad_pub.publish_many, args=(bad,)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        wait_for(
            lambda: (
                samples(db_url) == n_good and scalar(db_url, "SELECT count(*) FROM dead_letters") == n_bad
            ),
            timeout=60,
        )
        good_pub.close()
        bad_pub.close()
    assert scalar(db_url, "SELECT value FROM metric_counters WHERE label='not_json'") == n_bad


def test_two_ingest_processes_share_the_subscription_without_double_writes(
    db_url: str, broker: Mosquitto
) -> None:
    load_registry(db_url, REGISTRY)
    n = 20_000
    with (
        IngestService(settings(db_url, broker.url(), "ingest-a")) as a,
        IngestService(settings(db_url, broker.url(), "ingest-b")) as b,
    ):
        wait_for(a.health.check)
        wait_for(b.health.check)
        pub = Publisher(broker.url())
        pub.publish_many(stream(n))
        wait_for(lambda: samples(db_url) == n, timeout=60)
        pub.close()
        assert a.mqtt.committed > 0 and b.mqtt.committed > 0
        assert a.mqtt.committed + b.mqtt.committed == n
    assert scalar(db_url, "SELECT value FROM metric_counters WHERE name='ioc_ingest_messages_total'") == n
