"""The commands' topics under the ACL that `ioc mqtt-auth` writes, on a real Mosquitto as the
shipped configs run it (SPEC §9): a device reads only its own `cmd` and publishes only its own
`cmd_result` (and its §4 channels); the `ioc` account publishes every `cmd`. Then the whole path
through it: ingest's delivery worker as `ioc`, devices with their own passwords."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from cli.embedded import Mosquitto
from ingest.service import IngestService, IngestSettings
from services import media
from services.broadcasts import store
from tests.broadcasts.conftest import SECRET, wav
from tests.security.test_mqtt_auth import Client, _creds, _creds_ioc, provisioned
from tests.support import scalar, wait_for

__all__ = ["provisioned"]

T = "ioc/v1/thoai-giang/speaker"
Provisioned = tuple[Mosquitto, Path, Path]


def _puback(c: Client, topic: str, payload: bytes, retain: bool = False) -> mqtt.ReasonCode | None:
    """Publish QoS 1 and return the PUBACK's reason code (MQTT 5: 0x87 when the ACL refuses)."""
    got: list[mqtt.ReasonCode] = []
    c.c.on_publish = lambda _c, _u, _mid, rc, _p: got.append(rc)
    c.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(30)
    wait_for(lambda: got, timeout=30)
    return got[0]


def test_a_device_publishes_its_own_cmd_result_and_nothing_in_anothers_name(provisioned: Provisioned) -> None:
    m, out, data = provisioned
    creds = _creds(out)
    ioc = Client(m, "ioc", _creds_ioc(data))
    assert ioc.connect() == 0
    ioc.subscribe("ioc/v1/#")
    spk1 = Client(m, "spk-1", creds["spk-1"])
    assert spk1.connect() == 0
    refused = [
        f"{T}/spk-2/cmd_result",  # another device's result
        "ioc/v1/thoai-giang/camera/spk-1/cmd_result",  # as another kind
        f"{T}/spk-1/cmd",  # a command to itself
        f"{T}/spk-2/cmd",  # a command to another device
        f"{T}/spk-1/cmd_result/extra",
    ]
    for topic in refused:
        rc = _puback(spk1, topic, b'{"id": "1", "status": "done"}', retain=True)
        assert rc is not None and rc.value == 0x87, (topic, rc)
    assert _puback(spk1, f"{T}/spk-1/cmd_result", b'{"id": "1", "status": "done"}').value == 0  # type: ignore[union-attr]
    wait_for(lambda: ioc.received, timeout=30)
    # One publisher's messages arrive in order: the last one here means none refused got through.
    assert [t for t, _ in ioc.received] == [f"{T}/spk-1/cmd_result"]
    # Nothing refused was kept retained either: a fresh subscriber of spk-1's cmd gets nothing.
    spk1.close()
    again = Client(m, "spk-1", creds["spk-1"])
    assert again.connect() == 0
    again.subscribe(f"{T}/spk-1/cmd")
    _puback(ioc, f"{T}/spk-1/cmd", b'{"id": "7", "type": "stop", "broadcast": "3"}')
    wait_for(lambda: again.received, timeout=30)
    assert again.received == [(f"{T}/spk-1/cmd", b'{"id": "7", "type": "stop", "broadcast": "3"}')]
    for c in (again, ioc):
        c.close()


def test_a_device_reads_only_its_own_commands_and_no_ones_results(provisioned: Provisioned) -> None:
    m, out, data = provisioned
    creds = _creds(out)
    spy = Client(m, "spk-1", creds["spk-1"])
    assert spy.connect() == 0
    for f in ("ioc/v1/+/+/+/cmd", "ioc/v1/+/+/+/cmd_result", f"{T}/spk-2/#", "#"):
        spy.subscribe(f)
    spk2 = Client(m, "spk-2", creds["spk-2"])
    assert spk2.connect() == 0
    ioc = Client(m, "ioc", _creds_ioc(data))
    assert ioc.connect() == 0
    _puback(spk2, f"{T}/spk-2/cmd_result", b'{"id": "2", "status": "accepted"}')
    _puback(ioc, f"{T}/spk-2/cmd", b'{"id": "2", "type": "play"}')
    _puback(ioc, f"{T}/spk-1/cmd", b'{"id": "1", "type": "play"}')  # its own: the marker, last
    # The broker routed the others (acknowledged before it) first: once the marker is here,
    # anything the ACL let through would be too.
    wait_for(lambda: spy.received, timeout=30)
    assert {t for t, _ in spy.received} == {f"{T}/spk-1/cmd"}
    for c in (spy, spk2, ioc):
        c.close()


class Device:
    """A speaker with its own account on the devices' listener: says it is online, and answers
    each command with `accepted` then `done`, plus a forged result for another device."""

    def __init__(self, m: Mosquitto, name: str, password: str, forge_for: str | None = None) -> None:
        self.name = name
        self.client = Client(m, name, password)
        self.forge_for = forge_for
        self.commands: list[dict[str, str]] = []

    def start(self) -> None:
        assert self.client.connect() == 0
        self.client.c.on_message = lambda _c, _u, msg: self._on_cmd(orjson.loads(msg.payload))
        self.client.subscribe(f"{T}/{self.name}/cmd")

    def online(self) -> None:
        self.client.publish(f"{T}/{self.name}/status", b'{"volume": 60, "playing": false}')

    def _on_cmd(self, cmd: dict[str, str]) -> None:
        self.commands.append(cmd)
        c = self.client.c
        if self.forge_for is not None:
            forged = {"id": cmd["id"], "status": "failed", "reason": "forged"}
            c.publish(f"{T}/{self.forge_for}/cmd_result", orjson.dumps(forged), qos=1)
        for status in ("accepted", "done"):
            c.publish(f"{T}/{self.name}/cmd_result", orjson.dumps({"id": cmd["id"], "status": status}), qos=1)


@pytest.fixture
def ingest_as_ioc(db_url: str, provisioned: Provisioned, tmp_path: Path) -> Iterator[IngestService]:
    m, _, data = provisioned
    settings = IngestSettings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=db_url,
        mqtt_url=f"mqtt://ioc:{_creds_ioc(data)}@127.0.0.1:{m.port}",
        ingest_id="ioc-ingest-acl-broadcasts",
        ingest_onvif=False,
        ingest_sources=False,
        ingest_poll=False,
        secret_key=SECRET,
        public_url="http://127.0.0.1:9",
        data_dir=tmp_path,
    )
    with IngestService(settings) as svc:
        wait_for(lambda: svc.health.check(), timeout=60)
        yield svc


@pytest.mark.timeout(180)
def test_an_emergency_goes_out_as_ioc_and_each_speakers_own_results_come_back_under_the_acl(
    db_url: str, provisioned: Provisioned, ingest_as_ioc: IngestService, tmp_path: Path
) -> None:
    m, out, _ = provisioned
    creds = _creds(out)
    # spk-1 also tries to fail spk-2's delivery in spk-2's name: the broker refuses it.
    spk1 = Device(m, "spk-1", creds["spk-1"], forge_for="spk-2")
    spk2 = Device(m, "spk-2", creds["spk-2"])
    for d in (spk1, spk2):
        d.start()

    def both_online() -> bool:
        for d in (spk1, spk2):
            d.online()
        n = scalar(
            db_url,
            "SELECT count(*) FROM device_state WHERE state = 'online' AND device_id IN ('spk-1', 'spk-2')",
        )
        return n == 2

    wait_for(both_online, timeout=60, interval=0.5)
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        audio = media.store(conn, tmp_path / "media", wav(1.0), "admin")
        b = store.create(
            conn,
            title="Cảnh báo lũ",
            priority="emergency",
            media_id=audio.id,
            text=None,
            targets={"villages": ["trung-binh"], "kinds": ["speaker"]},
            starts_at=None,
            rrule=None,
            expires_at=None,
            risk_level=4,
            volume=None,
            actor="admin",
            role="admin",
            scope=None,
            now=now,
            tz="Asia/Ho_Chi_Minh",
        )

    def outcome() -> dict[str, str] | None:
        with psycopg.connect(db_url) as conn:
            rows = dict(
                conn.execute("SELECT device_id, state FROM deliveries WHERE broadcast_id = %s", (b.id,))
            )
        return rows if len(rows) == 2 and set(rows.values()) == {"done"} else None

    assert wait_for(outcome, timeout=60, interval=0.3) == {"spk-1": "done", "spk-2": "done"}
    # Each speaker heard its own command only, and the forged `failed` never reached ingest.
    assert [c["type"] for c in spk1.commands] == ["play"] and [c["type"] for c in spk2.commands] == ["play"]
    assert spk1.commands[0]["id"] != spk2.commands[0]["id"]
    assert scalar(db_url, "SELECT count(*) FROM dead_letters WHERE topic LIKE '%%cmd_result'") == 0
    for d in (spk1, spk2):
        d.client.close()
