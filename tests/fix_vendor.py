"""A second Mosquitto as a vendor's cloud broker: TLS with a test CA made here, a password file, and
persistent sessions, on a free loopback port; and a client that publishes as the vendor's devices."""

import datetime as dt
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cli.embedded import free_port, port_open
from services.mqtt_accounts import hash_password
from tests.fix_pg import private_dir

USER = "ioc-thoai-giang"
PASSWORD = "vendor-cloud-secret-42"
DEVICE_USER = "firmware"
DEVICE_PASSWORD = "firmware-pass-7"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path) -> Path:
    """A test CA and a server certificate for 127.0.0.1 / localhost signed by it; returns the CA file."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Vendor test CA"))
        .issuer_name(_name("Vendor test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return directory / "ca.pem"


@dataclass
class VendorBroker:
    """Mosquitto with TLS and passwords; `stop`/`start` keep its port and its persistent sessions."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.ca_file = make_ca(self.dir)
        (self.dir / "passwd").write_text(
            f"{USER}:{hash_password(PASSWORD)}\n{DEVICE_USER}:{hash_password(DEVICE_PASSWORD)}\n"
        )
        (self.dir / "passwd").chmod(0o600)
        (self.dir / "mosquitto.conf").write_text(
            f"""per_listener_settings false
listener {self.port} 127.0.0.1
cafile {self.ca_file}
certfile {self.dir}/server.pem
keyfile {self.dir}/server.key
allow_anonymous false
password_file {self.dir}/passwd
persistence true
persistence_location {self.dir}/
autosave_interval 1
max_queued_messages 100000
max_inflight_messages 100
log_dest stderr
log_type error
log_type warning
{"user root" if os.geteuid() == 0 else ""}
"""
        )

    def url(self, user: str = USER, password: str = PASSWORD) -> str:
        return f"mqtts://{user}:{password}@127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        log = (self.dir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.dir / "mosquitto.conf")], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + 15
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"vendor mosquitto exited: {(self.dir / 'mosquitto.log').read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("vendor mosquitto did not listen")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)
        self.proc = None
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def device(self, client_id: str = "vendor-firmware") -> "VendorDevice":
        return VendorDevice(self, client_id)


class VendorDevice:
    """A vendor device's client: TLS, its own password, QoS 1 publishes that wait for PUBACK."""

    def __init__(self, broker: VendorBroker, client_id: str) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.username_pw_set(DEVICE_USER, DEVICE_PASSWORD)
        self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def vendor_broker() -> Iterator[VendorBroker]:
    b = VendorBroker(private_dir("ioc-vendor-"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def vendor_device(vendor_broker: VendorBroker) -> Iterator[VendorDevice]:
    d = vendor_broker.device()
    yield d
    d.close()
