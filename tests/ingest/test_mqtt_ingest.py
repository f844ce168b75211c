"""MQTT ingest end to end: real Mosquitto -> ingest -> real TimescaleDB."""

import json
import os
import time
from datetime import UTC, datetime, timedelta

import psycopg

from ingest.service import IngestService
from services import intake
from services.topics import device_topic
from tests.ingest.conftest import Publisher
from tests.support import scalar, wait_for

T = "thoai-giang"


def status_topic(kind: str, dev: str) -> str:
    return device_topic(T, kind, dev, "status")


def test_status_of_each_kind_is_stored_and_marks_device_online(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    payloads = {
        ("speaker", "spk-1"): {
            "volume": 70,
            "playing": True,
            "source": "fm",
            "rssi_dbm": -71,
            "power": "battery",
            "battery_pct": 55.5,
            "temperature_c": 41,
            "firmware": "1.2",
        },
        ("eboard", "eb-1"): {
            "screen_on": True,
            "brightness_pct": 80,
            "content_id": "ban-tin-1",
            "errors": [],
            "vendor_extra": {"x": 1},
        },
        ("wifi", "wifi-1"): {
            "clients": 12,
            "uptime_s": 3600,
            "uplink_up": True,
            "rx_bytes": 10,
            "tx_bytes": 20,
            "channel": 6,
            "cpu_pct": 12.5,
            "mem_pct": 40,
        },
        ("gateway", "gw-1"): {"uplink_up": True, "uptime_s": 10, "rtt_ms": 12.3, "cpu_pct": 5, "mem_pct": 20},
        ("camera", "cam-1"): {
            "reachable": True,
            "rtt_ms": 8,
            "clock_offset_s": -1.5,
            "recording": True,
            "tamper": False,
            "motion": False,
            "manufacturer": "Sim",
            "model": "X",
            "firmware": "2",
        },
    }
    for (kind, dev), body in payloads.items():
        pub.publish(status_topic(kind, dev), json.dumps(body))
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 5)
    with psycopg.connect(db_url) as conn:
        rows = dict(conn.execute("SELECT device_id, metrics FROM status_samples").fetchall())
        states = dict(conn.execute("SELECT device_id, state FROM device_state").fetchall())
    assert rows["spk-1"] == payloads[("speaker", "spk-1")]
    assert rows["eb-1"]["vendor_extra"] == {"x": 1}  # unknown fields are kept
    for _, dev in payloads:
        assert states[dev] == "online"
    assert states["spk-fast"] == "unknown"
    changes = scalar(db_url, "SELECT count(*) FROM state_changes WHERE state = 'online'")
    assert changes == 5


def test_every_class_of_bad_input_is_dead_lettered_and_ingest_goes_on(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    bad = [
        (status_topic("speaker", "spk-1"), b"{not json", "not_json"),
        (status_topic("speaker", "spk-1"), b"[1, 2]", "not_object"),
        (status_topic("speaker", "spk-1"), b'{"volume": 150}', "wrong_type"),
        (status_topic("speaker", "spk-1"), b'{"playing": "yes"}', "wrong_type"),
        (status_topic("wifi", "wifi-1"), b'{"clients": 2.5}', "wrong_type"),
        (status_topic("speaker", "spk-nobody"), b'{"volume": 1}', "unknown_device"),
        (device_topic("other-commune", "speaker", "spk-1", "status"), b'{"volume": 1}', "topic_mismatch"),
        (status_topic("eboard", "spk-1"), b'{"screen_on": true}', "topic_mismatch"),
        (status_topic("speaker", "spk-1"), b'{"x": "' + b"a" * 70000 + b'"}', "too_large"),
        (status_topic("speaker", "spk-1"), json.dumps({"ts": future}).encode(), "ts_future"),
        (status_topic("speaker", "spk-1"), b'{"ts": "yesterday"}', "bad_ts"),
        (device_topic(T, "speaker", "spk-1", "availability"), b"maybe", "bad_availability"),
        (device_topic(T, "speaker", "spk-1", "event"), b'{"severity": "info"}', "wrong_type"),
        (f"ioc/v1/{T}/speaker/spk-1/telemetry", b"{}", "bad_topic"),
    ]
    for topic, payload, _ in bad:
        pub.publish(topic, payload)
    pub.publish(status_topic("speaker", "spk-1"), b'{"volume": 10}')
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 1)
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM dead_letters") == len(bad))
    with psycopg.connect(db_url) as conn:
        reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM dead_letters"))
        counters = dict(
            conn.execute(
                "SELECT label, value FROM metric_counters WHERE name = 'ioc_ingest_dead_letters_total'"
            ).fetchall()
        )
        big = conn.execute(
            "SELECT octet_length(payload), detail FROM dead_letters WHERE reason='too_large'"
        ).fetchone()
    assert reasons == sorted(r for _, _, r in bad)
    assert counters["wrong_type"] == 4 and counters["topic_mismatch"] == 2 and counters["not_json"] == 1
    assert big[0] > 65536 and "65536" in big[1]  # the payload itself is kept for inspection


def test_redelivered_message_with_ts_is_stored_once(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    ts = "2026-11-25T08:00:00+07:00"
    body = json.dumps({"ts": ts, "volume": 30})
    for _ in range(3):
        pub.publish(status_topic("speaker", "spk-1"), body)
    pub.publish(status_topic("speaker", "spk-1"), json.dumps({"ts": 1764032400000, "volume": 31}))
    pub.publish(
        device_topic(T, "speaker", "spk-1", "event"),
        json.dumps({"ts": ts, "type": "broadcast_start", "severity": "info", "program": "tin sáng"}),
    )
    pub.publish(
        device_topic(T, "speaker", "spk-1", "event"),
        json.dumps({"ts": ts, "type": "broadcast_start", "severity": "info", "program": "tin sáng"}),
    )
    wait_for(
        lambda: scalar(
            db_url,
            "SELECT count(*) FROM metric_counters WHERE name='ioc_ingest_messages_total'"
            " AND label='event' AND value = 2",
        )
    )
    assert scalar(db_url, "SELECT count(*) FROM status_samples") == 2
    assert scalar(db_url, "SELECT count(*) FROM device_events") == 1
    assert scalar(db_url, "SELECT fields->>'program' FROM device_events") == "tin sáng"
    assert scalar(db_url, "SELECT seq > 0 FROM device_events") is True


def test_last_will_marks_device_offline_and_retained_replay_changes_nothing(
    ingest: IngestService, mqtt_url: str, db_url: str, settings_for
) -> None:
    avail = device_topic(T, "speaker", "spk-1", "availability")
    dev = Publisher(mqtt_url, client_id="spk-1", will=(avail, b"offline"))
    dev.publish(avail, b"online", retain=True)
    dev.publish(status_topic("speaker", "spk-1"), b'{"volume": 5}')
    wait_for(lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-1'") == "online")
    # Drop the TCP connection without DISCONNECT: the broker publishes the will.
    dev.client._sock.close()  # noqa: SLF001 - simulating a device losing power
    dev.client.loop_stop()
    wait_for(lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-1'") == "offline")
    reason = scalar(db_url, "SELECT reason FROM device_state WHERE device_id='spk-1'")
    assert "last will" in reason, reason
    spk1_changes = "SELECT count(*) FROM state_changes WHERE device_id = 'spk-1'"
    n_changes = scalar(db_url, spk1_changes)
    # A second ingest subscribing may get the retained 'offline' replayed (Mosquitto 2.0.11 replays
    # retained messages to shared subscribers, 2.0.21 does not): either way nothing changes. A status
    # of another device published after it subscribed is stored after any replay.
    with IngestService(settings_for(ingest_id="ingest-second")) as other:
        wait_for(lambda: other.health.check())
        after = Publisher(mqtt_url, client_id="gw-1")
        after.publish(device_topic(T, "gateway", "gw-1", "status"), b'{"uplink_up": true}')
        wait_for(lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='gw-1'") == "online")
        after.close()
    assert scalar(db_url, spk1_changes) == n_changes
    assert scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-1'") == "offline"


def test_missed_heartbeats_mark_device_offline(ingest: IngestService, pub: Publisher, db_url: str) -> None:
    pub.publish(status_topic("speaker", "spk-fast"), b'{"volume": 1}')
    wait_for(lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-fast'") == "online")
    # heartbeat_s 1: offline after 3 s of silence
    wait_for(
        lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-fast'") == "offline",
        timeout=15,
    )
    assert scalar(db_url, "SELECT reason FROM device_state WHERE device_id='spk-fast'").startswith(
        "no status for"
    )
    pub.publish(status_topic("speaker", "spk-fast"), b'{"volume": 2}')
    wait_for(lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-fast'") == "online")
    assert [
        r
        for r in [
            scalar(
                db_url,
                "SELECT string_agg(state, ',' ORDER BY seq) FROM state_changes WHERE device_id='spk-fast'",
            )
        ]
    ] == ["online,offline,online"]


def test_status_changes_reach_the_live_feed_in_order(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    for v in range(5):
        pub.publish(status_topic("speaker", "spk-1"), json.dumps({"volume": v}))
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 5)

    def feed_rows() -> list[tuple[int, int, list[dict[str, object]]]]:
        with psycopg.connect(db_url) as conn:
            return conn.execute("SELECT seq_first, seq_last, items FROM feed ORDER BY seq_first").fetchall()

    # The burst may span batches: the feed then holds the device back (one status per 5 s) and
    # owes it the last reading, published once the window has passed.
    wait_for(lambda: feed_rows()[-1][2][-1]["metrics"] == {"volume": 4}, timeout=10)
    rows = feed_rows()
    seqs = [item["seq"] for _, _, items in rows for item in items]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free, in commit order
    assert all(
        item["type"] == "status" and item["device_id"] == "spk-1" for _, _, items in rows for item in items
    )


def test_the_last_reading_of_a_burst_reaches_the_feed_after_the_throttle_window(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    def feed_volumes() -> list[object]:
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT items FROM feed ORDER BY seq_first").fetchall()
        return [i["metrics"].get("volume") for (items,) in rows for i in items if i["device_id"] == "spk-1"]

    pub.publish(status_topic("speaker", "spk-1"), json.dumps({"volume": 0}))
    wait_for(lambda: feed_volumes() == [0])
    # Each in its own batch, all within the 5 s window: none goes out at once ...
    for v in (1, 2, 3):
        pub.publish(status_topic("speaker", "spk-1"), json.dumps({"volume": v}))
        wait_for(lambda v=v: scalar(db_url, "SELECT count(*) FROM status_samples") == v + 1)
    assert feed_volumes() == [0]
    # ... and the latest is published once the window has passed, once.
    wait_for(lambda: feed_volumes() == [0, 3], timeout=10)
    time.sleep(1.5)
    assert feed_volumes() == [0, 3]


def test_maintenance_window_puts_device_in_maintenance_and_back(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    from services import maintenance

    pub.publish(status_topic("speaker", "spk-1"), b'{"volume": 3}')
    wait_for(lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-1'") == "online")
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        w = maintenance.create(
            conn,
            commune_id=T,
            device_id="spk-1",
            village_id=None,
            kind=None,
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(seconds=3),
            reason="thay loa",
            rrule_text=None,
            actor="test",
        )
    wait_for(
        lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-1'") == "maintenance"
    )
    # A status during maintenance keeps the device in maintenance.
    pub.publish(status_topic("speaker", "spk-1"), b'{"volume": 4}')
    wait_for(
        lambda: scalar(db_url, "SELECT metrics->>'volume' FROM device_state WHERE device_id='spk-1'") == "4"
    )
    assert scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-1'") == "maintenance"
    # The window ends: the device is judged again (heard recently, so online).
    wait_for(
        lambda: scalar(db_url, "SELECT state FROM device_state WHERE device_id='spk-1'") == "online",
        timeout=15,
    )
    assert w.id > 0
    assert (
        scalar(
            db_url, "SELECT string_agg(state, ',' ORDER BY seq) FROM state_changes WHERE device_id='spk-1'"
        )
        == "online,maintenance,online"
    )


def test_partial_statuses_merge_and_old_replays_do_not_overwrite(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    topic = status_topic("speaker", "spk-1")
    pub.publish(topic, json.dumps({"ts": "2026-11-25T08:00:00+07:00", "volume": 40, "firmware": "1.0"}))
    pub.publish(topic, json.dumps({"ts": "2026-11-25T08:01:00+07:00", "playing": True}))
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 2)
    wait_for(
        lambda: (
            scalar(db_url, "SELECT metrics FROM device_state WHERE device_id='spk-1'")
            == {"volume": 40, "firmware": "1.0", "playing": True}
        )
    )
    # a device replaying buffered history: stored, proves liveness, but older than what we show
    pub.publish(topic, json.dumps({"ts": "2026-11-25T07:00:00+07:00", "volume": 5}))
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 3)
    assert scalar(db_url, "SELECT metrics->>'volume' FROM device_state WHERE device_id='spk-1'") == "40"


def test_fields_named_anew_in_every_status_do_not_grow_the_state_row_for_ever(
    ingest: IngestService, pub: Publisher, db_url: str
) -> None:
    topic = status_topic("speaker", "spk-1")
    # 200 statuses of 20 new fields each: 3.6 MB merged, were every field kept
    for n in range(200):
        fields = {f"f{n}_{k}": os.urandom(450).hex() for k in range(20)}
        pub.publish(topic, json.dumps({"volume": n % 100, **fields}))
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 200, timeout=30)
    metrics = scalar(db_url, "SELECT metrics FROM device_state WHERE device_id='spk-1'")
    assert len(json.dumps(metrics)) <= intake.MERGED_METRICS_MAX, len(metrics)
    # the newest status is whole in the row, and later statuses still merge into it
    assert metrics["volume"] == 199 % 100 and all(f"f199_{k}" in metrics for k in range(20))
    pub.publish(topic, json.dumps({"playing": True}))
    wait_for(
        lambda: (
            scalar(db_url, "SELECT metrics->>'playing' FROM device_state WHERE device_id='spk-1'") == "true"
        )
    )
    assert scalar(db_url, "SELECT metrics->>'volume' FROM device_state WHERE device_id='spk-1'") == "99"
