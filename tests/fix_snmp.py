"""Real SNMP agents on loopback UDP ports: Debian's net-snmp `snmpd` with its own config (a v2c
community, v3 users SHA/AES, MD5/DES and SHA without privacy), and agents that misbehave (garbage,
truncated BER, silence)."""

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fix_pg import private_dir

COMMUNITY = "ioc-test-community"
V3_USERS = {
    # user: (auth, auth_key, priv, priv_key); priv None is authNoPriv
    "ioc-sha-aes": ("sha", "sha-auth-key-1", "aes", "aes-priv-key-1"),
    "ioc-md5-des": ("md5", "md5-auth-key-1", "des", "des-priv-key-1"),
    "ioc-sha-nopriv": ("sha", "nopriv-auth-key-1", None, None),
}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Snmpd:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes]


def _snmpd_conf(port: int) -> str:
    lines = [
        f"agentaddress udp:127.0.0.1:{port}",
        f"rocommunity {COMMUNITY} 127.0.0.1",
        "sysDescr Commune IOC test agent (net-snmp)",
        "sysLocation test",
        "sysContact tests@example.invalid",
    ]
    for user, (auth, akey, priv, pkey) in V3_USERS.items():
        if priv:
            lines.append(f'createUser {user} {auth.upper()} "{akey}" {priv.upper()} "{pkey}"')
            lines.append(f"rouser {user} priv")
        else:
            lines.append(f'createUser {user} {auth.upper()} "{akey}"')
            lines.append(f"rouser {user} auth")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def snmpd() -> Iterator[Snmpd]:
    """Debian's snmpd (deploy/install-deps.sh installs it), not the system service: own config,
    own persistent dir, foreground, logging to stdout."""
    if shutil.which("snmpd") is None or shutil.which("snmpget") is None:
        pytest.fail("snmpd/snmpget missing: run deploy/install-deps.sh (packages snmpd, snmp)")
    d = private_dir("ioc-snmpd-")
    port = free_udp_port()
    conf = d / "snmpd.conf"
    conf.write_text(_snmpd_conf(port))
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(d / "persist"), "MIBS": ""}
    log = (d / "snmpd.log").open("wb")
    proc = subprocess.Popen(
        ["snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-p", str(d / "snmpd.pid"), "-M", "/nonexistent"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 20
    while not snmp_answers("127.0.0.1", port, COMMUNITY):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"snmpd did not start: {(d / 'snmpd.log').read_text()[-2000:]}")
        time.sleep(0.1)
    yield Snmpd(port, d, proc)
    proc.terminate()
    proc.wait(10)
    log.close()
    shutil.rmtree(d, ignore_errors=True)


class UdpResponder:
    """A UDP server on loopback answering every datagram with `reply(datagram)` (None: silence)."""

    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.received = 0
        self._reply = reply
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"udp-responder-{self.port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1
            out = self._reply(data)
            if out is not None:
                self.sock.sendto(out, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def udp_responder() -> Iterator[Callable[[Callable[[bytes], bytes | None]], UdpResponder]]:
    made: list[UdpResponder] = []

    def make(reply: Callable[[bytes], bytes | None]) -> UdpResponder:
        r = UdpResponder(reply)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


SNMPSIM = Path(os.environ.get("IOC_SNMPSIM", "/opt/ioc-snmpsim")) / "bin" / "snmpsim-command-responder"
SNMPREC_DIR = Path(__file__).resolve().parent / "sources" / "snmprec"


@dataclass
class Snmpsim:
    """snmpsim replaying tests/sources/snmprec: the community is the file's name."""

    port: int


def snmp_answers(host: str, port: int, community: str, timeout_s: float = 0.5) -> bool:
    """Whether the agent answers a v2c GET of sysUpTime (net-snmp's snmpget)."""
    out = subprocess.run(
        ["snmpget", "-m", "", "-v2c", "-c", community, "-t", f"{timeout_s:g}", "-r", "0",
         f"{host}:{port}", "1.3.6.1.2.1.1.3.0"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    return out.returncode == 0


def start_snmpsim(d: Path, data: Path, endpoints: list[str], log: Any) -> subprocess.Popen[bytes]:
    """snmpsim serving the .snmprec files of `data` on `endpoints` (host:port), its cache under
    `d`. It refuses to run as root: it drops to nobody, who must read its venv, data and cache."""
    cache = d / "cache"
    cache.mkdir(exist_ok=True)
    for p in [data, *data.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    cache.chmod(0o777)
    return subprocess.Popen(
        [
            str(SNMPSIM),
            f"--data-dir={data}",
            *(f"--agent-udpv4-endpoint={e}" for e in endpoints),
            f"--cache-dir={cache}",
            "--process-user=nobody",
            "--process-group=nogroup",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="session")
def snmpsim() -> Iterator[Snmpsim]:
    if not SNMPSIM.exists():
        pytest.fail(f"{SNMPSIM} missing: run deploy/install-deps.sh (it builds snmpsim's venv)")
    d = private_dir("ioc-snmpsim-")
    data = d / "data"
    shutil.copytree(SNMPREC_DIR, data)
    port = free_udp_port()
    log = (d / "snmpsim.log").open("wb")
    proc = start_snmpsim(d, data, [f"127.0.0.1:{port}"], log)
    deadline = time.monotonic() + 60
    while not snmp_answers("127.0.0.1", port, "unifi"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"snmpsim did not start: {(d / 'snmpsim.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield Snmpsim(port)
    proc.terminate()
    proc.wait(10)
    log.close()
    shutil.rmtree(d, ignore_errors=True)
