"""The Mosquitto configurations deploy/ ships, run on the real broker: TLS for devices, a plain
listener for the IOC's account only, no anonymous access, the ACL from `ioc mqtt-auth`, a
device's client id tied to its account, deep queues."""

import datetime as dt
import ipaddress
import os
import pwd
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cli.embedded import free_port, mosquitto_binary, port_open
from ingest.mqtt import ack_all
from ingest.paho_fast import FastClient
from services import mqtt_accounts
from services.models import Device
from tests.fix_pg import private_dir

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DEVICES = [Device("spk-1", "thoai-giang", "speaker"), Device("spk-2", "thoai-giang", "speaker")]
PASSWORDS = {"ioc": "ioc-password-123", "spk-1": "spk1-password-123", "spk-2": "spk2-password-123"}


def _certs(d: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1/localhost; returns the CA file."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Commune IOC test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    d.mkdir(mode=0o755)
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    for f in d.iterdir():
        f.chmod(0o644)
    return d / "ca.crt"


def _auth(d: Path) -> None:
    d.mkdir(mode=0o755)
    hashes_ = {u: mqtt_accounts.hash_password(p) for u, p in PASSWORDS.items()}
    (d / "passwd").write_text(mqtt_accounts.render_passwd(hashes_))
    (d / "acl").write_text(mqtt_accounts.render_acl(DEVICES))
    for f in d.iterdir():
        f.chmod(0o644)


class Broker:
    def __init__(
        self, conf: Path, tls_port: int, plain_port: int, ca: Path, proc: subprocess.Popen[bytes]
    ) -> None:
        self.conf, self.tls_port, self.plain_port, self.ca, self.proc = conf, tls_port, plain_port, ca, proc


def _start(src: Path, replace: dict[str, str], tls_port: int, plain_port: int, ca: Path, tmp: Path) -> Broker:
    text = src.read_text()
    for old, new in replace.items():
        assert old in text, f"{src.name} no longer mentions {old}"
        text = text.replace(old, new)
    text = re.sub(r"^listener 8883$", f"listener {tls_port} 127.0.0.1", text, flags=re.M)
    text = re.sub(r"^listener 1883( 127\.0\.0\.1)?$", f"listener {plain_port} 127.0.0.1", text, flags=re.M)
    if os.geteuid() != 0:
        text = text.replace("user mosquitto\n", "")
    conf = tmp / "mosquitto.conf"
    conf.write_text(text)
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while not (port_open(tls_port) and port_open(plain_port)):
        assert proc.poll() is None, f"mosquitto refused {src.name}: see {tmp}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return Broker(conf, tls_port, plain_port, ca, proc)


def _tmp() -> Path:
    d = private_dir("ioc-deploy-mqtt-")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("mosquitto")
        for sub in ("data", "log", "run"):
            (d / sub).mkdir()
            os.chown(d / sub, pw.pw_uid, pw.pw_gid)
    else:
        for sub in ("data", "log", "run"):
            (d / sub).mkdir()
    return d


@pytest.fixture(params=["systemd", "compose"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    tmp = _tmp()
    ca = _certs(tmp / "certs")
    _auth(tmp / "auth")
    if request.param == "systemd":
        src = DEPLOY / "mosquitto" / "mosquitto.conf"
        replace = {
            "/etc/mosquitto/certs/": f"{tmp}/certs/",
            "/etc/mosquitto/ioc/": f"{tmp}/auth/",
            "/var/lib/mosquitto/": f"{tmp}/data/",
            "/var/log/mosquitto/": f"{tmp}/log/",
            "/run/mosquitto/": f"{tmp}/run/",
        }
    else:
        src = DEPLOY / "compose" / "mosquitto.conf"
        replace = {
            "/mosquitto/certs/": f"{tmp}/certs/",
            "/mosquitto/auth/": f"{tmp}/auth/",
            "/mosquitto/data/": f"{tmp}/data/",
        }
    b = _start(src, replace, free_port(), free_port(), ca, tmp)
    yield b
    b.proc.terminate()
    b.proc.wait(10)


def _client(
    b: Broker, user: str | None, password: str | None, *, tls: bool, client_id: str | None = None
) -> tuple[mqtt.Client, int]:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{user}-{time.monotonic_ns()}"
    )
    if user:
        c.username_pw_set(user, password)
    if tls:
        c.tls_set(ca_certs=str(b.ca), cert_reqs=ssl.CERT_REQUIRED)
    done = threading.Event()
    rc: list[int] = []
    c.on_connect = lambda cl, u, f, reason, p: (rc.append(reason.value), done.set())
    c.connect("127.0.0.1", b.tls_port if tls else b.plain_port)
    c.loop_start()
    assert done.wait(10)
    return c, rc[0]


def test_config_keeps_deep_queues_and_persistence() -> None:
    for conf in (DEPLOY / "mosquitto" / "mosquitto.conf", DEPLOY / "compose" / "mosquitto.conf"):
        text = conf.read_text()
        queued = int(re.search(r"^max_queued_messages (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
        assert queued >= 1_000_000
        assert re.search(r"^persistence true$", text, re.M)
        assert re.search(r"^allow_anonymous false$", text, re.M)
        # per_listener_settings true denies every message queued for an offline durable client.
        assert re.search(r"^per_listener_settings false$", text, re.M)
        # A device's client id is its account: it cannot take over an IOC process's session.
        tls_block = text[text.index("listener 8883") : text.index("listener 1883")]
        assert re.search(r"^use_username_as_clientid true$", tls_block, re.M)


def test_device_connects_over_tls_and_the_ioc_reads_it_on_the_plain_listener(broker: Broker) -> None:
    ioc, rc = _client(broker, "ioc", PASSWORDS["ioc"], tls=False)
    assert rc == 0
    got = threading.Event()
    received: list[str] = []
    ioc.on_message = lambda c, u, m: (received.append(m.topic), got.set())
    subscribed = threading.Event()
    ioc.on_subscribe = lambda *a: subscribed.set()
    ioc.subscribe("$share/ingest/ioc/v1/+/+/+/+", qos=1)
    assert subscribed.wait(10)
    dev, rc = _client(broker, "spk-1", PASSWORDS["spk-1"], tls=True)
    assert rc == 0
    dev.publish("ioc/v1/thoai-giang/speaker/spk-2/status", b"{}", qos=1).wait_for_publish(10)
    dev.publish("ioc/v1/thoai-giang/speaker/spk-1/status", b"{}", qos=1).wait_for_publish(10)
    assert got.wait(10)
    time.sleep(0.2)
    assert received == ["ioc/v1/thoai-giang/speaker/spk-1/status"]
    for c in (ioc, dev):
        c.disconnect()
        c.loop_stop()


def test_anonymous_and_wrong_passwords_are_refused_on_both_listeners(broker: Broker) -> None:
    for tls in (True, False):
        for user, password in ((None, None), ("spk-1", "wrong-password"), ("ioc", PASSWORDS["spk-1"])):
            c, rc = _client(broker, user, password, tls=tls)
            assert rc != 0, (tls, user)
            c.loop_stop()


def test_tls_listener_does_not_speak_plain_mqtt(broker: Broker) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain-on-tls")
    c.username_pw_set("spk-1", PASSWORDS["spk-1"])
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    try:
        c.connect("127.0.0.1", broker.tls_port)
        c.loop_start()
        assert not connected.wait(1.5)
    except OSError:
        pass
    finally:
        c.loop_stop()


def test_ingest_client_reads_every_message_over_tls(broker: Broker) -> None:
    """Ingest's buffered paho client behind TLS (where the SSL layer buffers too)."""
    got: list[tuple[str, bytes, int]] = []
    fast = FastClient(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="t-ioc-fast",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
        on_qos1=lambda msgs: (got.extend(msgs), ack_all(fast, [m for _, _, m in msgs])),
    )
    fast.username_pw_set("ioc", PASSWORDS["ioc"])
    fast.tls_set(ca_certs=str(broker.ca), cert_reqs=ssl.CERT_REQUIRED)
    subscribed = threading.Event()
    fast.on_subscribe = lambda *a: subscribed.set()
    fast.on_connect = lambda cl, *a: cl.subscribe("ioc/v1/+/+/+/+", qos=1)
    fast.connect("127.0.0.1", broker.tls_port)
    fast.loop_start()
    dev, rc = _client(broker, "spk-1", PASSWORDS["spk-1"], tls=True)
    try:
        assert rc == 0 and subscribed.wait(10)
        sent = [f'{{"volume": {i}}}'.encode() for i in range(3000)]
        for info in [dev.publish("ioc/v1/thoai-giang/speaker/spk-1/status", p, qos=1) for p in sent]:
            info.wait_for_publish(10)
        deadline = time.monotonic() + 20
        while len(got) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for _, p, _ in got] == sent
    finally:
        for c in (fast, dev):
            c.disconnect()
            c.loop_stop()


def test_a_device_using_an_ioc_client_id_does_not_disconnect_the_ioc_process(broker: Broker) -> None:
    """Issue 13: a device logging in with its own password and ingest's client id took over
    ingest's session. On the devices' listener its client id is its username instead."""
    ioc, rc = _client(broker, "ioc", PASSWORDS["ioc"], tls=False, client_id="ioc-ingest-x")
    assert rc == 0
    dropped = threading.Event()
    ioc.on_disconnect = lambda *a: dropped.set()
    dev, rc = _client(broker, "spk-1", PASSWORDS["spk-1"], tls=True, client_id="ioc-ingest-x")
    assert rc == 0
    # The device has its CONNACK, so a takeover has happened by now; the IOC's own round trip
    # after it would then end in a DISCONNECT instead of a PUBACK.
    info = ioc.publish("ioc/internal/probe", b"x", qos=1)
    deadline = time.monotonic() + 10
    while not (info.is_published() or dropped.is_set()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert info.is_published() and not dropped.is_set()
    for c in (ioc, dev):
        c.disconnect()
        c.loop_stop()
