"""`ioc mqtt-auth` against a real Mosquitto: passwords, per-device ACLs, reload on SIGHUP, and
client ids tied to accounts (the broker as the shipped configs run it: a devices' listener and
the IOC's own)."""

import csv
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cli.embedded import Mosquitto
from cli.main import main as ioc
from services import mqtt_accounts, registry, registry_file
from tests.fix_pg import private_dir

REGISTRY = """
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
devices:
  - {id: spk-1, kind: speaker, village: trung-binh}
  - {id: spk-2, kind: speaker, village: trung-binh}
  - {id: cam-1, kind: camera, village: trung-binh}
"""


def _import(db_url: str, text: str) -> None:
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(text), None)


def _creds(out: Path) -> dict[str, str]:
    with (out / "credentials.csv").open() as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f)}


class Client:
    """A paho client that connects synchronously and records what it receives."""

    def __init__(
        self,
        broker: Mosquitto,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        port: int | None = None,
        persistent: bool = False,
    ) -> None:
        """Devices use the devices' listener, the `ioc` account the IOC's, unless `port` says."""
        self.port = port or (broker.port if username == "ioc" else broker.device_port or broker.port) or 0
        self.persistent = persistent
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{username}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.c.username_pw_set(username, password)
        self.received: list[tuple[str, bytes]] = []
        self.got = threading.Event()
        self.subscribed = threading.Event()
        self.c.on_message = lambda c, u, m: (self.received.append((m.topic, m.payload)), self.got.set())
        self.c.on_subscribe = lambda c, u, mid, rc, p: self.subscribed.set()
        self.broker = broker
        self.flags: list[mqtt.ConnectFlags] = []

    def connect(self) -> mqtt.ReasonCode:
        done = threading.Event()
        result: list[mqtt.ReasonCode] = []
        self.c.on_connect = lambda c, u, f, rc, p: (result.append(rc), self.flags.append(f), done.set())
        props = Properties(PacketTypes.CONNECT)
        if self.persistent:
            props.SessionExpiryInterval = 3600
        self.c.connect("127.0.0.1", self.port, clean_start=not self.persistent, properties=props)
        self.c.loop_start()
        assert done.wait(10), "no CONNACK"
        return result[0]

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def provisioned(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Mosquitto, Path, Path]]:
    """The registry imported, `ioc mqtt-auth` run, and a broker started on its files."""
    _import(db_url, REGISTRY)
    data = private_dir("ioc-data-")
    out = data / "mosquitto-auth"
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data)]) == 0
    m = Mosquitto(
        private_dir("ioc-mqtt-"),
        passwd_file=out / "passwd",
        acl_file=out / "acl",
        device_listener=True,
    )
    m.start()
    yield m, out, data
    m.stop()


def test_passwd_hash_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(f), "alice", "s3cret-pw"], check=True)
    theirs = f.read_text().strip().split(":", 1)[1]
    assert mqtt_accounts.verify_password(theirs, "s3cret-pw")
    assert not mqtt_accounts.verify_password(theirs, "s3cret-px")
    salt = __import__("base64").b64decode(theirs.split("$")[3])
    assert mqtt_accounts.hash_password("s3cret-pw", salt=salt) == theirs


def test_files_list_every_device_and_the_ioc_account(provisioned: tuple[Mosquitto, Path, Path]) -> None:
    _, out, data = provisioned
    creds = _creds(out)
    assert set(creds) == {"ioc", "spk-1", "spk-2", "cam-1"}
    with (out / "credentials.csv").open() as f:
        rows = {r["username"]: r["device_id"] for r in csv.DictReader(f)}
    assert rows["ioc"] == "" and rows["spk-1"] == "spk-1"
    users = [line.split(":")[0] for line in (out / "passwd").read_text().splitlines()]
    assert sorted(users) == ["cam-1", "ioc", "spk-1", "spk-2"]
    acl = (out / "acl").read_text()
    assert "user spk-1\ntopic write ioc/v1/thoai-giang/speaker/spk-1/status\n" in acl
    assert "topic write ioc/v1/thoai-giang/speaker/spk-1/cmd_result\n" in acl
    assert "topic read ioc/v1/thoai-giang/speaker/spk-1/cmd\n" in acl
    pw_file = data / "mqtt" / "ioc.password"
    assert pw_file.read_text().strip() == creds["ioc"]
    assert pw_file.stat().st_mode & 0o777 == 0o600
    assert (out / "credentials.csv").stat().st_mode & 0o777 == 0o600


def test_device_with_its_password_connects_and_wrong_password_is_refused(
    provisioned: tuple[Mosquitto, Path, Path],
) -> None:
    m, out, _ = provisioned
    creds = _creds(out)
    good = Client(m, "spk-1", creds["spk-1"])
    assert good.connect() == 0
    good.close()
    bad = Client(m, "spk-1", creds["spk-1"] + "x")
    assert bad.connect().is_failure
    bad.close()
    stranger = Client(m, "nobody", "whatever-password")
    assert stranger.connect().is_failure
    stranger.close()


def test_device_cannot_publish_under_another_devices_topic(provisioned: tuple[Mosquitto, Path, Path]) -> None:
    m, out, _ = provisioned
    creds = _creds(out)
    ioc_sub = Client(m, "ioc", creds["ioc"])
    assert ioc_sub.connect() == 0
    ioc_sub.subscribe("ioc/v1/#")
    spk1 = Client(m, "spk-1", creds["spk-1"])
    assert spk1.connect() == 0
    # Forged: spk-1 pretends to be spk-2, and to be a camera; then its own message as a marker.
    spk1.publish("ioc/v1/thoai-giang/speaker/spk-2/status", b'{"volume": 1}')
    spk1.publish("ioc/v1/thoai-giang/camera/spk-1/status", b'{"reachable": false}')
    spk1.publish("ioc/v1/other-commune/speaker/spk-1/status", b"{}")
    spk1.publish("ioc/v1/thoai-giang/speaker/spk-1/status", b'{"volume": 50}')
    assert ioc_sub.got.wait(10)
    # Messages from one publisher arrive in order: once the marker is here, forged ones would be too.
    time.sleep(0.2)
    assert ioc_sub.received == [("ioc/v1/thoai-giang/speaker/spk-1/status", b'{"volume": 50}')]
    spk1.close()
    ioc_sub.close()


def test_device_reads_only_its_own_commands(provisioned: tuple[Mosquitto, Path, Path]) -> None:
    m, out, _ = provisioned
    creds = _creds(out)
    spy = Client(m, "spk-1", creds["spk-1"])
    assert spy.connect() == 0
    spy.subscribe("ioc/#")
    spy.subscribe("ioc/internal/#")
    spy.subscribe("ioc/v1/thoai-giang/speaker/spk-2/cmd")
    spk2 = Client(m, "spk-2", creds["spk-2"])
    assert spk2.connect() == 0
    spk2.publish("ioc/v1/thoai-giang/speaker/spk-2/status", b'{"volume": 2}')
    ioc_pub = Client(m, "ioc", creds["ioc"])
    assert ioc_pub.connect() == 0
    ioc_pub.publish("ioc/internal/probe", b"x")
    ioc_pub.publish("ioc/v1/thoai-giang/camera/cam-1/status", b'{"reachable": true}')
    ioc_pub.publish("ioc/v1/thoai-giang/speaker/spk-2/cmd", b'{"id": "d-2", "type": "stop"}')
    # One connection per account (its client id is its name): the spy publishes its own status.
    spy.publish("ioc/v1/thoai-giang/speaker/spk-1/status", b'{"volume": 1}')
    # Its own commands still reach it: proof the subscription works, and ordering makes it the last.
    ioc_pub.publish("ioc/v1/thoai-giang/speaker/spk-1/cmd", b'{"id": "d-1", "type": "stop"}')
    assert spy.got.wait(10)
    time.sleep(0.2)
    assert [t for t, _ in spy.received] == ["ioc/v1/thoai-giang/speaker/spk-1/cmd"]
    for c in (spy, spk2, ioc_pub):
        c.close()


def test_device_publishes_its_cmd_result_and_the_ioc_hears_it(
    provisioned: tuple[Mosquitto, Path, Path],
) -> None:
    m, out, _ = provisioned
    creds = _creds(out)
    ioc_sub = Client(m, "ioc", creds["ioc"])
    assert ioc_sub.connect() == 0
    ioc_sub.subscribe("ioc/v1/#")
    spk1 = Client(m, "spk-1", creds["spk-1"])
    assert spk1.connect() == 0
    spk1.publish("ioc/v1/thoai-giang/speaker/spk-2/cmd_result", b'{"id": "x", "status": "done"}')
    spk1.publish("ioc/v1/thoai-giang/speaker/spk-1/cmd_result", b'{"id": "d-1", "status": "done"}')
    assert ioc_sub.got.wait(10)
    time.sleep(0.2)
    assert [t for t, _ in ioc_sub.received] == ["ioc/v1/thoai-giang/speaker/spk-1/cmd_result"]
    spk1.close()
    ioc_sub.close()


def test_device_account_cannot_take_over_ingest_session(provisioned: tuple[Mosquitto, Path, Path]) -> None:
    """Issue 13: spk-1's own password and ingest's client id with clean start disconnected
    ingest and discarded its session with the messages queued in it (10 of 10)."""
    m, out, _ = provisioned
    creds = _creds(out)
    group = "$share/ioc-ingest/ioc/v1/#"
    ingest = Client(m, "ioc", creds["ioc"], client_id="ioc-ingest-x", persistent=True)
    assert ingest.connect() == 0
    ingest.subscribe(group)
    ingest.close()  # away for a moment: the broker queues for its session
    spk1 = Client(m, "spk-1", creds["spk-1"])
    assert spk1.connect() == 0
    sent = [f'{{"volume": {i}}}'.encode() for i in range(10)]
    for p in sent:
        spk1.publish("ioc/v1/thoai-giang/speaker/spk-1/status", p)
    spk1.close()
    # On the devices' listener the broker makes the client id the account's name.
    hijack = Client(m, "spk-1", creds["spk-1"], client_id="ioc-ingest-x")
    assert hijack.connect() == 0
    hijack.close()
    back = Client(m, "ioc", creds["ioc"], client_id="ioc-ingest-x", persistent=True)
    assert back.connect() == 0
    assert back.flags[0].session_present
    deadline = time.monotonic() + 10
    while len(back.received) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [p for _, p in back.received] == sent
    back.close()


def test_device_ids_that_look_like_ioc_client_ids_are_refused(
    db_url: str, provisioned: tuple[Mosquitto, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, data = provisioned
    _import(db_url, REGISTRY + "  - {id: ioc-ingest-x, kind: wifi, village: trung-binh}\n")
    before = (out / "passwd").read_text()
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data)]) == 1
    assert "ioc-ingest-x" in capsys.readouterr().err
    assert (out / "passwd").read_text() == before


def test_ioc_account_reads_shared_subscription_and_internal_topics(
    provisioned: tuple[Mosquitto, Path, Path],
) -> None:
    m, out, _ = provisioned
    creds = _creds(out)
    ingest = Client(m, "ioc", creds["ioc"])
    assert ingest.connect() == 0
    ingest.subscribe("$share/ingest/ioc/v1/+/+/+/+")
    ingest.subscribe("ioc/internal/#")
    poller = Client(m, "ioc", creds["ioc"])
    assert poller.connect() == 0
    poller.publish("ioc/v1/thoai-giang/camera/cam-1/status", b'{"reachable": true}')
    poller.publish("ioc/internal/probe", b"p")
    deadline = time.monotonic() + 10
    while len(ingest.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(t for t, _ in ingest.received) == [
        "ioc/internal/probe",
        "ioc/v1/thoai-giang/camera/cam-1/status",
    ]
    ingest.close()
    poller.close()


def test_passwords_are_kept_across_runs_and_rotate_makes_a_new_one(
    provisioned: tuple[Mosquitto, Path, Path],
) -> None:
    m, out, data = provisioned
    first = _creds(out)
    passwd_before = (out / "passwd").read_text()
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data)]) == 0
    assert _creds(out) == {}
    assert (out / "passwd").read_text() == passwd_before
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data), "--rotate", "spk-2"]) == 0
    rotated = _creds(out)
    assert set(rotated) == {"spk-2"} and rotated["spk-2"] != first["spk-2"]
    m.reload()
    old = Client(m, "spk-2", first["spk-2"])
    new = Client(m, "spk-2", rotated["spk-2"])
    kept = Client(m, "spk-1", first["spk-1"])
    deadline = time.monotonic() + 10
    # SIGHUP is asynchronous: wait until the broker has read the new file.
    while (rc := old.connect()) == 0 and time.monotonic() < deadline:
        old.close()
        old = Client(m, "spk-2", first["spk-2"])
        time.sleep(0.05)
    assert rc.is_failure
    assert new.connect() == 0
    assert kept.connect() == 0
    for c in (old, new, kept):
        c.close()


def test_rotate_of_unknown_device_fails_and_changes_nothing(
    provisioned: tuple[Mosquitto, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, data = provisioned
    before = (out / "passwd").read_text()
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data), "--rotate", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
    assert (out / "passwd").read_text() == before


def test_new_device_connects_after_regenerate_and_sighup(
    db_url: str, provisioned: tuple[Mosquitto, Path, Path]
) -> None:
    m, out, data = provisioned
    _import(db_url, REGISTRY + "  - {id: wifi-1, kind: wifi, village: trung-binh}\n")
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data)]) == 0
    creds = _creds(out)
    assert set(creds) == {"wifi-1"}
    m.reload()
    deadline = time.monotonic() + 10
    while True:
        c = Client(m, "wifi-1", creds["wifi-1"])
        rc = c.connect()
        if rc == 0 or time.monotonic() > deadline:
            break
        c.close()
        time.sleep(0.05)
    assert rc == 0
    sub = Client(m, "ioc", _creds_ioc(data))
    assert sub.connect() == 0
    sub.subscribe("ioc/v1/#")
    c.publish("ioc/v1/thoai-giang/wifi/wifi-1/status", b'{"clients": 3}')
    assert sub.got.wait(10)
    assert sub.received[0][0] == "ioc/v1/thoai-giang/wifi/wifi-1/status"
    c.close()
    sub.close()


def test_retired_device_loses_its_account(db_url: str, provisioned: tuple[Mosquitto, Path, Path]) -> None:
    m, out, data = provisioned
    with psycopg.connect(db_url) as conn:
        registry.retire(conn, "spk-2")
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data)]) == 0
    assert "spk-2" not in (out / "passwd").read_text()
    assert "spk-2" not in (out / "acl").read_text()


def test_ioc_password_file_lost_gives_a_new_ioc_password(provisioned: tuple[Mosquitto, Path, Path]) -> None:
    _, out, data = provisioned
    (data / "mqtt" / "ioc.password").unlink()
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data)]) == 0
    creds = _creds(out)
    assert set(creds) == {"ioc"}
    assert (data / "mqtt" / "ioc.password").read_text().strip() == creds["ioc"]


def _creds_ioc(data: Path) -> str:
    return (data / "mqtt" / "ioc.password").read_text().strip()


def test_ingest_runs_as_ioc_account_under_the_acl(
    db_url: str, provisioned: tuple[Mosquitto, Path, Path]
) -> None:
    """The production wiring: IOC_MQTT_URL names `ioc` without a password; ingest reads it from
    DATA_DIR/mqtt/ioc.password, subscribes, probes ioc/internal, and stores a device's status."""
    import os
    import sys

    m, out, data = provisioned
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")} | {
        "IOC_DATABASE_URL": db_url,
        "IOC_MQTT_URL": f"mqtt://ioc@127.0.0.1:{m.port}",
        "IOC_DATA_DIR": str(data),
    }
    log = data / "ingest.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "ingest", "--id", "ioc-ingest-acl", "--no-onvif"],
            env=env,
            stdout=f,
            stderr=f,
        )
    try:
        spk = Client(m, "spk-1", _creds(out)["spk-1"])
        assert spk.connect() == 0
        found, healthy = None, None
        deadline = time.monotonic() + 30
        with psycopg.connect(db_url, autocommit=True) as conn:
            while time.monotonic() < deadline and not (found and healthy):
                # Re-published until stored: the first may precede ingest's subscription.
                spk.publish("ioc/v1/thoai-giang/speaker/spk-1/status", b'{"volume": 42}')
                found = conn.execute(
                    "SELECT metrics FROM status_samples WHERE device_id = 'spk-1'"
                ).fetchone()
                healthy = conn.execute("SELECT 1 FROM process_health WHERE kind = 'ingest'").fetchone()
                time.sleep(0.2)
        spk.close()
        assert proc.poll() is None, log.read_text()
        assert found is not None and found[0]["volume"] == 42
        assert healthy is not None, (
            "ingest never heard its own probe on ioc/internal/probe:\n" + log.read_text()
        )
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.timeout(60)
def test_simulated_devices_sign_in_with_their_credentials_on_the_devices_listener(
    provisioned: tuple[Mosquitto, Path, Path], tmp_path: Path
) -> None:
    """`ioc simulate --credentials` against the broker as shipped: every device its own account
    (and so its own client id), publishing only what its ACL grants."""
    import os
    import sys

    m, out, data = provisioned
    ioc_sub = Client(m, "ioc", _creds_ioc(data))
    assert ioc_sub.connect() == 0
    ioc_sub.subscribe("ioc/v1/#")
    reg = tmp_path / "registry.yaml"
    reg.write_text(REGISTRY, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env["IOC_MQTT_URL"] = f"mqtt://127.0.0.1:{m.device_port}"
    cmd = ["simulate", str(reg), "--credentials", str(out / "credentials.csv"), "--rate-scale", "30"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *cmd, "--data-dir", str(tmp_path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 40
        wanted = {"ioc/v1/thoai-giang/speaker/spk-1/status", "ioc/v1/thoai-giang/speaker/spk-2/status"}
        while not wanted <= {t for t, _ in ioc_sub.received} and time.monotonic() < deadline:
            assert proc.poll() is None, "the simulator exited"
            time.sleep(0.1)
        assert wanted <= {t for t, _ in ioc_sub.received}
    finally:
        proc.terminate()
        proc.wait(20)
        ioc_sub.close()


def test_a_device_heard_through_a_profile_on_the_ioc_broker_publishes_its_vendor_topics_only(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Tasmota speaker on the IOC's own broker (SPEC §8, a profile without `broker`) speaks its
    firmware's topics: the ACL lets it publish those of its own Topic and the `ioc` account read
    them; another device's Tasmota topics stay closed to it."""
    _import(
        db_url,
        REGISTRY
        + "  - {id: loa-tb-1, kind: speaker, village: trung-binh,"
        + " source: {mqtt: {profile: tasmota, id: loa_tb_1}}}\n"
        + "  - {id: loa-tb-2, kind: speaker, village: trung-binh,"
        + " source: {mqtt: {profile: tasmota, id: loa_tb_2}}}\n",
    )
    data = private_dir("ioc-data-")
    out = data / "mosquitto-auth"
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data)]) == 0
    acl = (out / "acl").read_text()
    assert "user loa-tb-1\n" in acl and "topic write tele/loa_tb_1/STATE\n" in acl
    assert "topic read tele/loa_tb_1/LWT\n" in acl.split("user loa-tb-1")[0]  # the ioc account's part
    m = Mosquitto(
        private_dir("ioc-mqtt-"), passwd_file=out / "passwd", acl_file=out / "acl", device_listener=True
    )
    m.start()
    try:
        creds = _creds(out)
        ioc_sub = Client(m, "ioc", creds["ioc"])
        assert ioc_sub.connect() == 0
        for t in ("tele/loa_tb_1/STATE", "tele/loa_tb_1/LWT", "tele/loa_tb_2/STATE"):
            ioc_sub.subscribe(t)
        spk = Client(m, "loa-tb-1", creds["loa-tb-1"])
        assert spk.connect() == 0
        spk.publish("tele/loa_tb_2/STATE", b'{"POWER": "OFF"}')  # another speaker's topic: dropped
        spk.publish("tele/loa_tb_1/LWT", b"Online")
        spk.publish("tele/loa_tb_1/STATE", b'{"POWER": "ON"}')
        deadline = time.monotonic() + 10
        while len(ioc_sub.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # one publisher's messages arrive in order: a forged one would be here
        assert ioc_sub.received == [
            ("tele/loa_tb_1/LWT", b"Online"),
            ("tele/loa_tb_1/STATE", b'{"POWER": "ON"}'),
        ]
        spk.close()
        ioc_sub.close()
    finally:
        m.stop()


def test_a_broken_profiles_dir_stops_mqtt_auth_in_one_line_and_writes_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _import(
        db_url,
        REGISTRY
        + "  - {id: loa-tb-1, kind: speaker, village: trung-binh,"
        + " source: {mqtt: {profile: tasmota, id: loa_tb_1}}}\n",
    )
    profiles = private_dir("ioc-profiles-")
    (profiles / "hang-x.yaml").write_text("mqtt: {status: [{topic: 'a/{id}', fields: {nope: x}}]}\n")
    data = private_dir("ioc-data-")
    out = data / "mosquitto-auth"
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)
    monkeypatch.setenv("IOC_PROFILES_DIR", str(profiles))
    assert ioc(["mqtt-auth", "--out", str(out), "--data-dir", str(data)]) != 0
    err = capsys.readouterr().err.strip()
    assert "IOC_PROFILES_DIR" in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (out / "acl").exists()
