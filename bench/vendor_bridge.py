"""Vendor MQTT bridge throughput (SPEC §8): Tasmota STATE messages published to a vendor's TLS
broker with passwords, carried by the real `ioc ingest` (its sources worker: one bridge, persistent
session, acknowledged after the IOC broker's PUBACK) onto the IOC's broker, mapped by the shipped
tasmota profile and stored as status samples. Everything real: PostgreSQL+TimescaleDB, both
Mosquittos, the ingest process.

The limit measured in the same run: the same publisher and messages to the same vendor broker, read
by one plain paho QoS 1 subscriber on the vendor broker (what the broker and one client can move on
this machine, with nothing stored). Prints JSON: messages, seconds from first publish to the last
stored, msg/s, the publisher's own rate, the raw subscriber's rate, and the bridge's share of it.

    .venv/bin/python bench/vendor_bridge.py [--devices 1000] [--per-device 10] [--inflight 1000]
"""

import argparse
import json
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import stack  # noqa: E402
from services import registry, registry_file  # noqa: E402
from services.vault import Vault  # noqa: E402
from tests.fix_pg import private_dir  # noqa: E402
from tests.fix_vendor import DEVICE_PASSWORD, DEVICE_USER, VendorBroker  # noqa: E402

SECRET = "bench-secret-key-0123456789"
STATE = (
    '{"Time":"%s","Uptime":"0T00:24:09","UptimeSec":%d,"Heap":29,"SleepMode":"Dynamic",'
    '"Sleep":50,"LoadAvg":19,"MqttCount":1,"POWER1":"ON","Wifi":{"AP":1,"SSId":"xa-wifi",'
    '"BSSId":"98:38:C9:CA:17:C1","Channel":11,"Mode":"11n","RSSI":100,"Signal":-44,"LinkCount":1,'
    '"Downtime":"0T00:00:03"}}'
)


def registry_text(vendor: VendorBroker, devices: int) -> str:
    lines = [
        "brokers:",
        f'  - {{id: aiot, url: "{vendor.url()}", client_id: ioc-bench-bridge, ca_file: "{vendor.ca_file}"}}',
        'commune: {id: xa-bench, name: "Xã Bench"}',
        "villages:",
        '  - {id: thon-1, name: "Thôn 1"}',
        "devices:",
    ]
    lines += [
        f"  - {{id: loa-{i}, kind: speaker, village: thon-1, heartbeat_s: 300,"
        f" source: {{mqtt: {{profile: tasmota, id: loa_{i}, broker: aiot}}}}}}"
        for i in range(devices)
    ]
    return "\n".join(lines) + "\n"


def messages(devices: int, per_device: int) -> list[tuple[str, bytes]]:
    """Each device's STATEs a second apart (Tasmota's Time is the sample's time: none collide)."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    out = []
    for k in range(per_device):
        at = (t0 + timedelta(seconds=k)).strftime("%Y-%m-%dT%H:%M:%S")
        out += [(f"tele/loa_{i}/STATE", (STATE % (at, 1000 + k)).encode()) for i in range(devices)]
    return out


def client(vendor: VendorBroker, client_id: str, inflight: int) -> paho.Client:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(DEVICE_USER, DEVICE_PASSWORD)
    c.tls_set(ca_certs=str(vendor.ca_file))
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    return c


def publish_all(vendor: VendorBroker, msgs: list[tuple[str, bytes]], inflight: int) -> float:
    """Publish at QoS 1 as fast as the window allows; seconds until the last PUBACK."""
    c = client(vendor, "bench-firmware", inflight)
    c.connect("127.0.0.1", vendor.port)
    c.loop_start()
    start = time.perf_counter()
    infos = [c.publish(t, p, qos=1) for t, p in msgs]
    for info in infos:
        info.wait_for_publish(60)
    took = time.perf_counter() - start
    c.disconnect()
    c.loop_stop()
    return took


def raw_rate(vendor: VendorBroker, msgs: list[tuple[str, bytes]], inflight: int) -> dict[str, float]:
    """The limit: one plain QoS 1 subscriber on the vendor broker, same publisher, same messages."""
    got = 0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        nonlocal got
        got += 1
        if got == len(msgs):
            done.set()

    sub = client(vendor, "bench-raw-subscriber", inflight)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect("127.0.0.1", vendor.port)
    sub.loop_start()
    sub.subscribe("tele/+/STATE", qos=1)
    subscribed.wait(10)
    start = time.perf_counter()
    publish_all(vendor, msgs, inflight)
    done.wait(120)
    took = time.perf_counter() - start
    sub.disconnect()
    sub.loop_stop()
    return {"received": got, "seconds": round(took, 2), "msg_s": round(got / took)}


def stored(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM status_samples WHERE device_id LIKE 'loa-%'").fetchone()
    return int(row[0]) if row else 0


def listening(db_url: str) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT info->>'listening_since' FROM process_health WHERE kind = 'source'"
            " AND info->>'broker' = 'aiot'"
        ).fetchone()
    return bool(row and row[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--per-device", type=int, default=10)
    ap.add_argument("--inflight", type=int, default=1000)
    args = ap.parse_args()
    vendor = VendorBroker(private_dir("ioc-bench-vendor-"))
    vendor.start()
    msgs = messages(args.devices, args.per_device)
    try:
        raw = raw_rate(vendor, msgs, args.inflight)

        def seed(url: str) -> None:
            with psycopg.connect(url) as conn:
                reg = registry_file.parse_yaml(registry_text(vendor, args.devices), profiles_dir=None)
                registry.import_registry(conn, reg, Vault(SECRET))

        with stack("ioc-bench-bridge-", seed, ingest_env={"IOC_SECRET_KEY": SECRET}) as s:
            deadline = time.monotonic() + 60
            while not listening(s.db_url):
                if time.monotonic() > deadline:
                    raise SystemExit("the bridge never heard the vendor broker (see ingest.log)")
                time.sleep(0.2)
            start = time.perf_counter()
            published_s = publish_all(vendor, msgs, args.inflight)
            deadline = time.monotonic() + 300
            while (n := stored(s.db_url)) < len(msgs):
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {n} of {len(msgs)} stored after 300 s")
                time.sleep(0.05)
            took = time.perf_counter() - start
        rate = len(msgs) / took
        print(
            json.dumps(
                {
                    "messages": len(msgs),
                    "devices": args.devices,
                    "bridge": {
                        "seconds_to_last_stored": round(took, 2),
                        "msg_s": round(rate),
                        "stored_after_last_puback_s": round(took - published_s, 2),
                    },
                    "publisher_msg_s": round(len(msgs) / published_s),
                    "raw_subscriber": raw,
                    "bridge_share_of_raw": round(rate / raw["msg_s"], 2),
                },
                indent=2,
            )
        )
    finally:
        vendor.stop()


if __name__ == "__main__":
    main()
