"""Vendor MQTT end to end, on real components: a vendor Mosquitto with TLS and passwords
(tests/fix_vendor.py), the IOC's Mosquitto, PostgreSQL, the bridge and the ingest pipeline."""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from cli.embedded import Mosquitto
from ingest.service import IngestService, IngestSettings
from ingest.sources import SourceBridges
from services.alerts.messages import describe
from tests.alerts.conftest import running, write_config
from tests.alerts.conftest import settings as alert_settings
from tests.fix_vendor import VendorBroker, VendorDevice
from tests.ingest.conftest import Publisher
from tests.sources import stack
from tests.sources.stack import SECRET, load
from tests.support import scalar, wait_for

CLIENT_ID = "ioc-thoai-giang-test"

# Payloads copied from the firmwares' docs and source (cited in services/profiles/*.yaml).
TASMOTA_STATE = (
    '{"Time":"2021-08-14T17:19:33","Uptime":"0T00:24:09","UptimeSec":%d,"Heap":29,"SleepMode":"Dynamic",'
    '"Sleep":50,"LoadAvg":19,"MqttCount":1,"POWER1":"ON","Wifi":{"AP":1,"SSId":"indebuurt_IoT",'
    '"BSSId":"98:38:C9:CA:17:C1","Channel":11,"Mode":"11n","RSSI":100,"Signal":-44,"LinkCount":1,'
    '"Downtime":"0T00:00:03"}}'
)
TASMOTA_SENSOR = '{"Time":"2017-02-16T10:13:52", "DS18B20":{"Temperature":20.6}}'
Z2M_STATE = (
    '{"battery":100,"humidity":58.62,"linkquality":132,"pressure":1008.3,"temperature":29.1,"voltage":3035}'
)
SHELLY_SWITCH = (
    '{"id":0, "source":"timer", "output":true, "apower":8.9, "voltage":237.5, "current":0.068,'
    ' "aenergy":{"total":6.532,"by_minute":[45.199,47.141,88.397],"minute_ts":1654511972},'
    ' "temperature":{"tC":23.5, "tF":74.4}}'
)


def registry_text(vendor: VendorBroker, heartbeat_s: int = 60, url: str | None = None) -> str:
    return f"""\
brokers:
  - {{id: aiot, url: "{url or vendor.url()}", client_id: {CLIENT_ID}, ca_file: "{vendor.ca_file}"}}
commune: {{id: thoai-giang, name: "Xã Thoại Giang"}}
villages:
  - {{id: trung-binh, name: "Ấp Trung Bình"}}
devices:
  - {{id: loa-tb-1, kind: speaker, village: trung-binh, heartbeat_s: {heartbeat_s},
     source: {{mqtt: {{profile: tasmota, id: loa_tb_1, broker: aiot}}}}}}
  - {{id: loa-tb-2, kind: speaker, village: trung-binh, heartbeat_s: {heartbeat_s},
     source: {{mqtt: {{profile: zigbee2mqtt, id: loa_tb_2, broker: aiot}}}}}}
  - {{id: loa-own, kind: speaker, village: trung-binh, source: {{mqtt: {{profile: shelly-gen2, id: shelly-1}}}}}}
"""


def ingest_settings(db_url: str, mqtt_url: str) -> IngestSettings:
    return stack.ingest_settings(db_url, mqtt_url, "ingest-sources-test")


@contextmanager
def bridges(db_url: str, mqtt_url: str) -> Iterator[SourceBridges]:
    sb = SourceBridges(db_url, mqtt_url, SECRET, profiles_dir=None, cycle_s=0.2, name="test")
    stop = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            sb.run(stop)
        except BaseException as err:  # noqa: BLE001 - reported to the test below
            failure.append(err)

    t = threading.Thread(target=main, name="test.sources", daemon=True)
    t.start()
    try:
        yield sb
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    if failure:
        raise failure[0]


@contextmanager
def hearing_aiot(db_url: str, mqtt_url: str, alerts_file: Path) -> Iterator[SourceBridges]:
    """Ingest, the bridges and the alert engine running, the bridge hearing the vendor broker."""
    with (
        IngestService(ingest_settings(db_url, mqtt_url)) as svc,
        bridges(db_url, mqtt_url) as sb,
        running(alert_settings(db_url, alerts_file)),
    ):
        wait_for(lambda: svc.health.check() and listening(sb, "aiot"))
        yield sb


def state(db_url: str, device_id: str) -> tuple[Any, ...] | None:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT state, availability, metrics, last_seen FROM device_state WHERE device_id = %s",
            (device_id,),
        ).fetchone()


def samples(db_url: str, device_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT metrics FROM status_samples WHERE device_id = %s ORDER BY ts", (device_id,)
        ).fetchall()
    return [r[0] for r in rows]


def rows(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def listening(sb: SourceBridges, broker_id: str) -> bool:
    a = sb.active.get(broker_id)
    return a is not None and a.bridge.listening_since is not None


@pytest.fixture
def world(db_url: str, mqtt_url: str, vendor_broker: VendorBroker) -> Iterator[tuple[str, str, VendorBroker]]:
    load(db_url, registry_text(vendor_broker))
    with IngestService(ingest_settings(db_url, mqtt_url)) as svc:
        wait_for(lambda: svc.health.check())
        yield db_url, mqtt_url, vendor_broker


def test_vendor_payloads_become_state_history_events_and_availability(
    world: tuple[str, str, VendorBroker], vendor_device: VendorDevice, pub: Publisher
) -> None:
    db_url, mqtt_url, _ = world
    with bridges(db_url, mqtt_url) as sb:
        wait_for(lambda: listening(sb, "aiot") and listening(sb, "ioc"))
        vendor_device.publish("tele/loa_tb_1/LWT", "Online", retain=True)
        vendor_device.publish("tele/loa_tb_1/STATE", TASMOTA_STATE % 1449)
        vendor_device.publish("tele/loa_tb_1/SENSOR", TASMOTA_SENSOR)
        vendor_device.publish("stat/loa_tb_1/RESULT", '{"POWER":"ON"}')
        vendor_device.publish("zigbee2mqtt/loa_tb_2/availability", '{"state":"online"}', retain=True)
        vendor_device.publish("zigbee2mqtt/loa_tb_2", Z2M_STATE)
        # a device that speaks its vendor's topics to the IOC's own broker
        pub.publish("shelly-1/status/switch:0", SHELLY_SWITCH)

        def tb1_done() -> bool:
            s = state(db_url, "loa-tb-1")
            return bool(s and s[0] == "online" and s[2].get("temperature_c") == 20.6 and s[1] == "online")

        wait_for(tb1_done)
        s = state(db_url, "loa-tb-1")
        assert s is not None
        assert s[2]["rssi_dbm"] == -44 and s[2]["playing"] is True and s[2]["UptimeSec"] == 1449
        hist = samples(db_url, "loa-tb-1")
        assert any(m.get("rssi_dbm") == -44 for m in hist) and any(
            m.get("temperature_c") == 20.6 for m in hist
        )
        wait_for(
            lambda: scalar(db_url, "SELECT count(*) FROM device_events WHERE device_id = 'loa-tb-1'") == 1
        )
        assert scalar(db_url, "SELECT type FROM device_events WHERE device_id = 'loa-tb-1'") == "result"
        wait_for(lambda: (state(db_url, "loa-tb-2") or ("",))[0] == "online")
        s2 = state(db_url, "loa-tb-2")
        assert s2 is not None and s2[1] == "online"
        assert s2[2]["temperature_c"] == 29.1 and s2[2]["battery_pct"] == 100
        wait_for(lambda: (state(db_url, "loa-own") or ("",))[0] == "online")
        own = state(db_url, "loa-own")
        assert own is not None and own[2]["playing"] is True and own[2]["vendor_source"] == "timer"

        # LWT offline from the vendor broker turns the device offline at once
        vendor_device.publish("tele/loa_tb_1/LWT", "Offline", retain=True)
        wait_for(lambda: (state(db_url, "loa-tb-1") or ("",))[0] == "offline")
        assert scalar(db_url, "SELECT count(*) FROM dead_letters") == 0


def test_a_payload_that_does_not_fit_its_profile_is_dead_lettered_naming_profile_and_field(
    world: tuple[str, str, VendorBroker], vendor_device: VendorDevice
) -> None:
    db_url, mqtt_url, _ = world
    with bridges(db_url, mqtt_url) as sb:
        wait_for(lambda: listening(sb, "aiot"))
        vendor_device.publish("tele/loa_tb_1/STATE", '{"POWER":"BLINK","Wifi":{"Signal":-50}}')
        vendor_device.publish("zigbee2mqtt/loa_tb_2", '{"battery":"full"}')
        vendor_device.publish("tele/loa_tb_1/STATE", TASMOTA_STATE % 7)  # the bridge goes on
        wait_for(lambda: (state(db_url, "loa-tb-1") or ("",))[0] == "online")
        wait_for(lambda: scalar(db_url, "SELECT count(*) FROM dead_letters") == 2)
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                "SELECT reason, detail, device_id, topic, payload FROM dead_letters ORDER BY device_id"
            ).fetchall()
            counted = conn.execute(
                "SELECT value FROM metric_counters WHERE name = 'ioc_ingest_dead_letters_total'"
                " AND label = 'unmappable'"
            ).fetchone()
        (r1, d1, dev1, t1, p1), (r2, d2, dev2, _, _) = rows
        assert (r1, dev1, t1) == ("unmappable", "loa-tb-1", "tele/loa_tb_1/STATE")
        assert "profile tasmota" in d1 and "field playing" in d1 and "BLINK" in d1 and "broker aiot" in d1
        assert bytes(p1) == b'{"POWER":"BLINK","Wifi":{"Signal":-50}}'
        assert (r2, dev2) == ("unmappable", "loa-tb-2")
        assert "profile zigbee2mqtt" in d2 and "field battery_pct" in d2
        assert counted == (2,)
        # the good part of the stream is stored
        assert samples(db_url, "loa-tb-1")[-1]["UptimeSec"] == 7


def test_a_retained_status_replayed_by_the_vendor_broker_changes_nothing(
    world: tuple[str, str, VendorBroker], vendor_device: VendorDevice
) -> None:
    db_url, mqtt_url, _ = world
    # Retained before the bridge ever subscribes: old news of unknown age.
    vendor_device.publish("zigbee2mqtt/loa_tb_2", Z2M_STATE, retain=True)
    vendor_device.publish("zigbee2mqtt/loa_tb_2/availability", '{"state":"online"}', retain=True)
    with bridges(db_url, mqtt_url) as sb:
        wait_for(lambda: listening(sb, "aiot"))
        wait_for(lambda: (state(db_url, "loa-tb-2") or (None, None))[1] == "online")
        wait_for(lambda: sb.active["aiot"].bridge.counts.replays_skipped >= 1)
    assert samples(db_url, "loa-tb-2") == []
    s = state(db_url, "loa-tb-2")
    assert s is not None and s[3] is None  # never heard: a replay is no proof of life


def test_a_lost_vendor_broker_is_one_source_lost_alert_and_its_devices_freeze(
    db_url: str, mqtt_url: str, vendor_broker: VendorBroker, vendor_device: VendorDevice, tmp_path: Path
) -> None:
    load(db_url, registry_text(vendor_broker, heartbeat_s=3))
    alerts_file = write_config(tmp_path, {"rules": {"offline": {"for_s": 0}, "source_lost": {"for_s": 0}}})
    with hearing_aiot(db_url, mqtt_url, alerts_file):
        vendor_device.publish("tele/loa_tb_1/STATE", TASMOTA_STATE % 1)
        vendor_device.publish("zigbee2mqtt/loa_tb_2", Z2M_STATE)
        wait_for(
            lambda: [(state(db_url, d) or ("",))[0] for d in ("loa-tb-1", "loa-tb-2")] == ["online", "online"]
        )
        vendor_device.close()
        vendor_broker.stop()
        alert = wait_for(
            lambda: rows(
                db_url,
                "SELECT id, affected, details FROM alerts WHERE rule = 'source_lost' AND state = 'open'",
            ),
            timeout=60,  # the bridge's reconnect attempts, then an evaluator tick: slower on a busy machine
        )
        assert len(alert) == 1
        assert alert[0][1] == ["loa-tb-1", "loa-tb-2"] and alert[0][2]["sources"] == "aiot"
        # Silence far past the liveness window (3 × 3 s): the states stay as they were.
        last = max(state(db_url, d)[3] for d in ("loa-tb-1", "loa-tb-2"))  # type: ignore[index]
        wait_for(lambda: datetime.now(UTC) > last + timedelta(seconds=14), timeout=40)
        assert [state(db_url, d)[0] for d in ("loa-tb-1", "loa-tb-2")] == ["online", "online"]  # type: ignore[index]
        assert scalar(db_url, "SELECT count(*) FROM alerts WHERE rule = 'offline'") == 0
        assert scalar(db_url, "SELECT count(*) FROM alerts WHERE rule = 'source_lost'") == 1

        vendor_broker.start()
        wait_for(
            lambda: scalar(db_url, "SELECT state FROM alerts WHERE rule = 'source_lost'") == "resolved",
            timeout=60,
        )


def test_a_vendor_broker_refusing_our_password_makes_its_devices_auth_failed_under_one_alert_saying_so(
    db_url: str, mqtt_url: str, vendor_broker: VendorBroker, vendor_device: VendorDevice, tmp_path: Path
) -> None:
    """SPEC §8: a source that answers but refuses our credentials is auth_failed, whatever the kind;
    a vendor broker's devices are still one source_lost alert, which names the refusal."""
    load(db_url, registry_text(vendor_broker))
    rules = {"auth_failed": {"for_s": 0}, "offline": {"for_s": 0}, "source_lost": {"for_s": 0}}
    alerts_file = write_config(tmp_path, {"rules": rules})
    devices = ("loa-tb-1", "loa-tb-2")
    with hearing_aiot(db_url, mqtt_url, alerts_file):
        vendor_device.publish("tele/loa_tb_1/STATE", TASMOTA_STATE % 1)
        wait_for(lambda: (state(db_url, "loa-tb-1") or ("",))[0] == "online")

        load(db_url, registry_text(vendor_broker, url=vendor_broker.url(password="not-the-password")))
        wait_for(lambda: [(state(db_url, d) or ("",))[0] for d in devices] == ["auth_failed"] * 2, timeout=60)
        reasons = rows(db_url, "SELECT reason FROM device_state WHERE device_id IN ('loa-tb-1', 'loa-tb-2')")
        assert reasons == [("vendor broker refuses our credentials",)] * 2
        alert = wait_for(
            lambda: rows(
                db_url, "SELECT affected, details FROM alerts WHERE rule = 'source_lost' AND state = 'open'"
            ),
            timeout=30,
        )
        assert alert[0][0] == list(devices) and alert[0][1]["refused"] == "aiot"
        text = describe("source_lost", alert[0][1])
        assert "aiot" in text and "từ chối tên đăng nhập hoặc mật khẩu" in text, text
        # Ticks of the engine later, still the one alert: no auth_failed or offline per device.
        alert_seen = datetime.now(UTC)
        wait_for(lambda: datetime.now(UTC) > alert_seen + timedelta(seconds=5), timeout=20)
        assert scalar(db_url, "SELECT count(*) FROM alerts WHERE rule IN ('auth_failed', 'offline')") == 0
        assert scalar(db_url, "SELECT count(*) FROM alerts WHERE rule = 'source_lost'") == 1

        load(db_url, registry_text(vendor_broker))
        wait_for(
            lambda: scalar(db_url, "SELECT state FROM alerts WHERE rule = 'source_lost'") == "resolved",
            timeout=60,
        )
        wait_for(lambda: all((state(db_url, d) or ("",))[0] != "auth_failed" for d in devices), timeout=30)


RUNNER = """
import logging, sys, threading, time
from ingest.sources import SourceBridges
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
sb = SourceBridges(sys.argv[1], sys.argv[2], sys.argv[3], profiles_dir=None, cycle_s=0.2, name="doomed")
stop = threading.Event()
threading.Thread(target=sb.run, args=(stop,), daemon=True).start()
while True:
    a = sb.active.get("aiot")
    n = a.bridge.counts.republished if a else 0
    print(f"republished {n}", flush=True)
    time.sleep(0.1)
"""


def test_a_bridge_killed_before_the_ioc_has_the_message_loses_nothing_and_stores_it_once(
    db_url: str, broker: Mosquitto, mqtt_url: str, vendor_broker: VendorBroker, vendor_device: VendorDevice
) -> None:
    load(db_url, registry_text(vendor_broker))
    broker.stop()  # the IOC's broker is away: nothing the bridge republishes is acknowledged
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, db_url, mqtt_url, SECRET],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    n = 20
    try:
        assert proc.stdout is not None
        wait_for(
            lambda: scalar(
                db_url,
                "SELECT count(*) FROM process_health WHERE name = 'source:mqtt:aiot'"
                " AND info->>'listening_since' IS NOT NULL",
            ),
            timeout=30,
        )
        for i in range(n):
            vendor_device.publish("tele/loa_tb_1/STATE", TASMOTA_STATE % (1000 + i))
        while True:
            line = proc.stdout.readline()
            assert line, "the bridge exited"
            if line.strip() == f"republished {n}".encode():
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    broker.start()
    with IngestService(ingest_settings(db_url, mqtt_url)) as svc, bridges(db_url, mqtt_url):
        wait_for(lambda: svc.health.check())
        wait_for(lambda: len(samples(db_url, "loa-tb-1")) >= n, timeout=60)
        # the vendor broker redelivered every one; settle, then count
        wait_for(lambda: scalar(db_url, "SELECT count(*) FROM dead_letters") == 0)
    got = sorted(m["UptimeSec"] for m in samples(db_url, "loa-tb-1"))
    assert got == list(range(1000, 1000 + n))


def test_the_bridge_stamps_receive_times_so_two_identical_readings_are_two_samples(
    world: tuple[str, str, VendorBroker], vendor_device: VendorDevice
) -> None:
    db_url, mqtt_url, _ = world
    with bridges(db_url, mqtt_url) as sb:
        wait_for(lambda: listening(sb, "aiot"))
        vendor_device.publish("tele/loa_tb_1/STATE", TASMOTA_STATE % 5)
        vendor_device.publish("tele/loa_tb_1/STATE", TASMOTA_STATE % 5)
        wait_for(lambda: len(samples(db_url, "loa-tb-1")) == 2)
    with psycopg.connect(db_url) as conn:
        ts = [r[0] for r in conn.execute("SELECT ts FROM status_samples WHERE device_id = 'loa-tb-1'")]
    assert len(set(ts)) == 2


def test_shelly_notify_status_is_stored_at_the_device_time_once(
    world: tuple[str, str, VendorBroker], pub: Publisher
) -> None:
    db_url, mqtt_url, _ = world
    now = datetime.now(UTC).timestamp()
    body = orjson.dumps(
        {
            "src": "shelly-1",
            "dst": "shelly-1/events",
            "method": "NotifyStatus",
            "params": {"ts": round(now, 2), "switch:0": {"id": 0, "output": True, "source": "button"}},
        }
    )
    with bridges(db_url, mqtt_url) as sb:
        wait_for(lambda: listening(sb, "ioc"))
        pub.publish("shelly-1/events/rpc", body)
        pub.publish("shelly-1/events/rpc", body)  # a redelivery: same device time
        wait_for(lambda: len(samples(db_url, "loa-own")) == 1)
        wait_for(
            lambda: (
                scalar(
                    db_url,
                    "SELECT value FROM metric_counters WHERE name = 'ioc_ingest_messages_total' AND label = 'status'",
                )
                == 2
            )
        )
    assert len(samples(db_url, "loa-own")) == 1
    assert samples(db_url, "loa-own")[0]["playing"] is True
