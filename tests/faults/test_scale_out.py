"""Two ingest and two gateway processes on one broker and database: every message stored once,
every WebSocket client on either gateway sees every change, in the same order."""

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from websockets.sync.client import connect

from cli.embedded import Mosquitto
from ingest.service import IngestService, IngestSettings
from services import auth
from services.topics import device_topic
from tests.dashboard.serve import gateway
from tests.ingest.conftest import Publisher
from tests.support import load_registry, scalar, wait_for

N_DEVICES = 20
REGISTRY = "commune: {id: xa, name: Xã}\nvillages: [{id: ap, name: Ấp}]\ndevices:\n" + "".join(
    f"  - {{id: spk-{i}, kind: speaker, village: ap}}\n" for i in range(N_DEVICES)
)
START = datetime(2026, 11, 1, tzinfo=UTC)


def login(base: str) -> str:
    r = httpx.post(base + "/api/v1/auth/login", json={"username": "op", "password": "mat-khau-dai"})
    r.raise_for_status()
    return str(r.json()["token"])


class Watcher:
    """A WebSocket client collecting every feed message after its snapshot."""

    def __init__(self, base: str, token: str) -> None:
        self.url = base.replace("http://", "ws://") + "/ws/live"
        self.token = token
        self.snapshot_seq = -1
        self.messages: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
            self.snapshot_seq = json.loads(ws.recv(timeout=10))["seq"]
            while not self.stop.is_set():
                try:
                    self.messages.append(json.loads(ws.recv(timeout=0.2)))
                except TimeoutError:
                    continue


def test_two_ingests_and_two_gateways_store_once_and_every_client_sees_every_change(
    db_url: str, broker: Mosquitto
) -> None:
    load_registry(db_url, REGISTRY)
    with psycopg.connect(db_url) as conn:
        auth.add_user(conn, "op", "mat-khau-dai", "operator")
    settings = [
        IngestSettings(
            database_url=db_url, mqtt_url=broker.url(), ingest_id=f"ingest-{x}", ingest_onvif=False
        )
        for x in "ab"
    ]
    with (
        IngestService(settings[0]) as a,
        IngestService(settings[1]) as b,
        gateway(db_url) as gw1,
        gateway(db_url) as gw2,
    ):
        wait_for(a.health.check)
        wait_for(b.health.check)
        watchers = [Watcher(gw1, login(gw1)), Watcher(gw2, login(gw2))]
        for w in watchers:
            w.thread.start()
        wait_for(lambda: all(w.snapshot_seq >= 0 for w in watchers))
        pub = Publisher(broker.url())
        statuses = [
            (
                device_topic("xa", "speaker", f"spk-{i % N_DEVICES}", "status"),
                json.dumps({"ts": (START + timedelta(seconds=i)).isoformat(), "volume": i % 100}).encode(),
            )
            for i in range(5_000)
        ]
        pub.publish_many(statuses)
        wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == len(statuses), timeout=60)
        # every device goes offline (last will) and comes back: state changes the clients must see
        # (an offline and an online report landing in one batch would fold into no change at all)
        for value in ("offline", "online"):
            for i in range(N_DEVICES):
                pub.publish(device_topic("xa", "speaker", f"spk-{i}", "availability"), value)
            wait_for(
                lambda v=value: (
                    scalar(db_url, "SELECT count(*) FROM device_state WHERE state = %s", (v,)) == N_DEVICES
                )
            )
        final = wait_for(lambda: scalar(db_url, "SELECT value FROM counters WHERE name = 'feed'"))
        wait_for(lambda: all(w.messages and w.messages[-1]["seq"] >= final for w in watchers), timeout=30)
        for w in watchers:
            w.stop.set()
            w.thread.join(5)
        pub.close()
        assert a.mqtt.committed > 0 and b.mqtt.committed > 0
    assert scalar(db_url, "SELECT count(DISTINCT (device_id, ts)) FROM status_samples") == len(statuses)
    for w in watchers:
        seqs = [m["seq"] for m in w.messages if m["seq"] <= final]
        # every message after the snapshot, gap-free and in order
        assert seqs == list(range(w.snapshot_seq + 1, final + 1))
    # both clients saw every state change, in the same order
    changes = [
        [
            (m["device_id"], m["state"])
            for m in w.messages
            if m["type"] == "status" and m["state"] == "offline"
        ]
        for w in watchers
    ]
    assert len(changes[0]) == N_DEVICES and changes[0] == changes[1]
