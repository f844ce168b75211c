"""Poison input: a message PostgreSQL refuses is a dead letter, and the rest of its batch is stored.

Each class found (by hand or by tests/ingest/test_fuzz.py) has a named test here. The storage
tests build batches as any source does (`Batch.add_*` with the message as received), so they
also cover what a future source hands `write_batch` without the MQTT checks in front.
"""

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.service import IngestService
from services import storage
from services.intake import Batch, Raw, classify
from services.models import Device
from services.payloads import Event, Status
from services.registry_cache import RegistryCache
from services.topics import device_topic
from tests.ingest.conftest import Publisher, load_registry
from tests.support import scalar, wait_for

T = "thoai-giang"
NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def status_topic(dev: str = "spk-1", kind: str = "speaker") -> str:
    return device_topic(T, kind, dev, "status")


def dead(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT topic, reason, detail FROM dead_letters ORDER BY id").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def counters(url: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT name, label, value FROM metric_counters").fetchall()
    return {(r[0], r[1]): int(r[2]) for r in rows}


# -- through the real broker and ingest --------------------------------------------------------


def test_nul_in_a_status_is_dead_lettered_and_ingest_goes_on(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    """The issue's own message: it killed the writer, and nothing was stored afterwards."""
    pub.publish(status_topic(), b'{"volume": 51, "note": "a\\u0000b"}')
    pub.publish(status_topic("gw-1", "gateway"), b'{"uplink_up": true}')
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM dead_letters") == 1)
    pub.publish(status_topic(), b'{"volume": 52}')
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 2)
    ((_, reason, detail),) = dead(db_url)
    assert reason == "unstorable" and "Unicode escape" in detail
    c = counters(db_url)
    assert c[("ioc_ingest_dead_letters_total", "unstorable")] == 1
    assert c[("ioc_ingest_messages_total", "status")] == 2
    assert ingest.mqtt.waiting == 0 and ingest.mqtt.last_commit_at is not None


def test_poison_of_every_channel_is_dead_lettered_with_its_batch_stored(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    good = [
        (status_topic(), json.dumps({"ts": "2026-11-25T00:00:00Z", "volume": 1}).encode()),
        (device_topic(T, "speaker", "spk-1", "event"), b'{"type": "door", "ts": "2026-11-25T00:00:01Z"}'),
        (device_topic(T, "speaker", "spk-1", "availability"), b"online"),
    ]
    bad = [
        (status_topic(), b'{"x": {"\\u0000": 1}}', "unstorable"),  # NUL in a key
        (device_topic(T, "speaker", "spk-1", "event"), b'{"type": "a\\u0000"}', "unstorable"),
        # an event type longer than an index row may be: ProgramLimitExceeded, which psycopg files
        # under OperationalError, so the old writer retried this batch forever
        (
            device_topic(T, "speaker", "spk-1", "event"),
            json.dumps({"type": os.urandom(4000).hex()}).encode(),
            "unstorable",
        ),
        (status_topic(), b'{"x": "\\ud800"}', "not_json"),  # a lone surrogate, escaped
        (status_topic(), b'{"x": "\xed\xa0\x80"}', "not_json"),  # ... and as raw bytes
        (status_topic(), b'{"x": 1e400}', "not_json"),  # infinity
        (status_topic(), b'{"x": ' + b"[" * 40 + b"]" * 40 + b"}", "too_deep"),
        (status_topic(), json.dumps({f"k{i}": i for i in range(2000)}).encode(), "too_many_keys"),
    ]
    pub.publish_many([*good[:1], *[(t, p) for t, p, _ in bad], *good[1:]])
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM dead_letters") == len(bad))
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 1)
    assert scalar(db_url, "SELECT count(*) FROM device_events") == 1
    assert scalar(db_url, "SELECT availability FROM device_state WHERE device_id = 'spk-1'") == "online"
    assert sorted(r for _, r, _ in dead(db_url)) == sorted(r for _, _, r in bad)
    c = counters(db_url)
    assert sum(v for (n, _), v in c.items() if n == "ioc_ingest_messages_total") == len(good)
    assert sum(v for (n, _), v in c.items() if n == "ioc_ingest_dead_letters_total") == len(bad)


def test_big_integers_are_stored_as_numbers(ingest: IngestService, pub: Publisher, db_url: str) -> None:
    """orjson reads integers past 64 bits as floats: storable, not lost."""
    pub.publish(status_topic("wifi-1", "wifi"), b'{"rx_bytes": ' + str(2**70).encode() + b"}")
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 1)
    assert scalar(db_url, "SELECT (metrics->>'rx_bytes')::float8 FROM status_samples") == float(2**70)


def test_topics_deeper_than_a_device_topic_are_dead_letters(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    """The ACL lets a device publish under its own prefix; such topics used to vanish."""
    pub.publish(f"ioc/v1/{T}/speaker/spk-1/status/extra", b'{"volume": 1}')
    pub.publish(f"ioc/v1/{T}/speaker/spk-1/a/b/c", b"{}")
    pub.publish(f"ioc/v1/{T}/speaker", b"{}")
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM dead_letters") == 3)
    assert {r for _, r, _ in dead(db_url)} == {"bad_topic"}


def test_commands_are_ignored_and_command_results_are_kept(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    pub.publish(device_topic(T, "speaker", "spk-1", "cmd"), b'{"id": "1", "type": "play"}')
    pub.publish(device_topic(T, "speaker", "spk-1", "cmd_result"), b'{"id": "1", "status": "done"}')
    pub.publish(status_topic(), b'{"volume": 3}')  # after both: when it is stored, they were read
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 1)
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM dead_letters") == 1)
    ((topic, reason, _),) = dead(db_url)
    assert topic.endswith("/cmd_result") and reason == "unknown_delivery"  # no delivery 1 was sent


# -- write_batch as every source uses it -------------------------------------------------------


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    load_registry(db_url)
    with psycopg.connect(db_url) as c:
        storage.prepare(c)
        yield c


@pytest.fixture
def devices(conn: psycopg.Connection) -> dict[str, Device]:
    cache = RegistryCache()
    cache.refresh_if_due(conn, force=True)
    conn.commit()
    return cache.devices


def _raw(i: int, channel: str = "status") -> Raw:
    return Raw(
        device_topic(T, "speaker", "spk-1", channel), f"message {i}".encode(), NOW + timedelta(seconds=i)
    )


def _status(i: int, metrics: dict[str, object]) -> Status:
    return Status(NOW + timedelta(seconds=i), True, metrics)


@pytest.mark.parametrize(
    "metrics,message",
    [
        ({"note": "a\x00b"}, "unsupported Unicode escape sequence"),  # NUL in a value
        ({"a\x00": 1}, "unsupported Unicode escape sequence"),  # NUL in a key
        ({"counter": 2**70}, "64-bit"),  # a Python int orjson refuses (an SNMP source's sum)
        ({"note": "\ud800"}, "surrogates"),  # a lone surrogate in a str
    ],
    ids=["nul-value", "nul-key", "int-over-64-bits", "lone-surrogate"],
)
def test_a_status_postgresql_refuses_is_dead_lettered_and_its_batch_stored(
    conn: psycopg.Connection, devices: dict[str, Device], metrics: dict[str, object], message: str
) -> None:
    spk = devices["spk-1"]
    batch = Batch()
    for i in range(40):
        batch.add_status(spk, _status(i, metrics if i == 17 else {"volume": i}), _raw(i))
    storage.write_batch(conn, batch, NOW + timedelta(minutes=1), None)
    conn.commit()
    assert conn.execute("SELECT count(*) FROM status_samples").fetchone() == (39,)
    ((topic, reason, detail, payload),) = conn.execute(
        "SELECT topic, reason, detail, payload FROM dead_letters"
    ).fetchall()
    assert (reason, bytes(payload), topic) == ("unstorable", b"message 17", status_topic())
    assert message in detail and "\n" not in detail
    c = dict(conn.execute("SELECT label, value FROM metric_counters").fetchall())
    assert c["status"] == 39 and c["unstorable"] == 1
    assert conn.execute(
        "SELECT metrics->>'volume' FROM device_state WHERE device_id = 'spk-1'"
    ).fetchone() == ("39",)


def test_an_event_postgresql_refuses_is_dead_lettered_and_its_batch_stored(
    conn: psycopg.Connection, devices: dict[str, Device]
) -> None:
    spk = devices["spk-1"]
    batch = Batch()
    long_type = os.urandom(3000).hex()  # over the btree row limit of device_events_key
    bad = {3: Event(NOW, True, long_type, "info", None, {}), 5: Event(NOW, True, "x", "info", "a\x00", {})}
    for i in range(8):
        ev = bad.get(i) or Event(NOW + timedelta(seconds=i), True, "door", "info", None, {"i": i})
        batch.add_event(spk, ev, _raw(i, "event"))
    batch.add_availability(spk, "online", _raw(9, "availability"))
    storage.write_batch(conn, batch, NOW + timedelta(minutes=1), None)
    conn.commit()
    assert conn.execute("SELECT count(*) FROM device_events").fetchone() == (6,)
    details = dict(conn.execute("SELECT payload, detail FROM dead_letters").fetchall())
    assert {bytes(k) for k in details} == {b"message 3", b"message 5"}
    assert "index row" in details[b"message 3"] and "NUL" in details[b"message 5"]
    assert conn.execute("SELECT availability FROM device_state WHERE device_id = 'spk-1'").fetchone() == (
        "online",
    )


def test_isolation_halves_until_single_rows(conn: psycopg.Connection, devices: dict[str, Device]) -> None:
    """Any write that fails on a row finds it: k bad rows in n cost about 2·k·log2(n) writes."""
    spk = devices["spk-1"]
    batch = Batch()
    for i in range(256):
        batch.add_status(spk, _status(i, {"i": i}), _raw(i))
    calls: list[int] = []

    def write(piece: Batch) -> int:
        calls.append(piece.size())
        if any(st.metrics["i"] in (7, 200) for _, st, _ in piece.statuses):
            conn.execute("SELECT 1 / 0")
        return piece.size()

    with conn.transaction():
        kept, refused = storage.isolate(conn, batch, write)
    assert sum(n for _, n in kept) == 254 and len(refused) == 2
    assert sorted(d.payload for d in refused) == [b"message 200", b"message 7"]
    assert all(d.reason == "unstorable" and "division by zero" in d.detail for d in refused)
    assert len(calls) <= 2 * 2 * 8 + 1


def test_a_database_error_still_propagates(conn: psycopg.Connection, devices: dict[str, Device]) -> None:
    """Only row errors are isolated: a lost database is the writer's to retry (nothing acked)."""
    batch = Batch()
    batch.add_status(devices["spk-1"], _status(0, {"volume": 1}), _raw(0))
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()
    conn.commit()
    with psycopg.connect(conn.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", pid)
    with pytest.raises(psycopg.OperationalError):
        storage.write_batch(conn, batch, NOW, None)


def test_classify_keeps_a_message_whose_check_raises(devices: dict[str, Device]) -> None:
    """A bug in a check is one dead letter (logged), not a dead writer."""

    class Boom(dict[str, Device]):
        def get(self, key: object, default: object = None) -> Device:  # type: ignore[override]
            raise RuntimeError("boom")

    batch = classify([_raw(0)], Boom(devices))
    assert [(d.reason, d.detail) for d in batch.dead] == [("internal_error", "RuntimeError: boom")]
