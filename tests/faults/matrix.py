"""The restart and kill matrix: a device streams QoS 1 statuses while one process of the IOC is
killed, restarted or frozen; then acknowledged and stored messages are counted exactly.

Used by tests/faults/test_restart_matrix.py (small) and bench/restart_matrix.py (30,000).

"Acknowledged" is what the device was told: its PUBACK from the broker. A real device (paho
with a persistent session, as here) forgets a message once it has that PUBACK and sends again,
with DUP, every message it has not. Every message carries a distinct `ts`, so a redelivered one
is stored once: `lost` is acknowledged and not stored, `duplicates` rows stored twice (0: the
key forbids them), `redelivered` how many messages ingest committed again (delivered twice,
stored once).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import psycopg

from cli.embedded import Mosquitto, Postgres, free_port
from services.migrate import migrate
from services.topics import device_topic
from tests.support import load_registry

ROOT = Path(__file__).resolve().parents[2]
N_DEVICES = 50
REGISTRY = (
    "commune: {id: xa, name: Xã}\nvillages: [{id: ap, name: Ấp}]\ndevices:\n"
    + "".join(f"  - {{id: spk-{i}, kind: speaker, village: ap}}\n" for i in range(N_DEVICES))
    + "  - {id: warm, kind: speaker, village: ap}\n"
)
INGEST_ID = "ioc-ingest-matrix"
START = datetime(2026, 11, 1, tzinfo=UTC)
TARGETS = ("postgres", "mosquitto", "ingest", "gateway", "alerts")
# term: graceful stop and start; kill: SIGKILL and start; stop: SIGSTOP, then SIGCONT.
FAULTS = ("term", "kill", "stop")


@dataclass(frozen=True)
class Case:
    target: str
    fault: str

    @property
    def name(self) -> str:
        return f"{self.target}-{self.fault}"


# PostgreSQL's graceful restart is covered by its kill (a harder case); ingest's by its SIGTERM
# in test_ingest_faults; gateway and alerts are not on the message path, so a kill and a
# freeze each show they cannot reach it.
CASES = (
    Case("postgres", "kill"),
    Case("postgres", "stop"),
    Case("mosquitto", "term"),
    Case("mosquitto", "kill"),
    Case("mosquitto", "stop"),
    Case("ingest", "term"),
    Case("ingest", "kill"),
    Case("ingest", "stop"),
    Case("gateway", "kill"),
    Case("gateway", "stop"),
    Case("alerts", "kill"),
    Case("alerts", "stop"),
)
# What a kill -9 of the broker does lose (bench only): ingest is frozen, the broker queues for it
# and acknowledges to the device, and is killed before its next save; that queue is gone.
KILL_WITH_BACKLOG = Case("mosquitto", "kill-backlog")


@dataclass
class Result:
    case: str
    published: int
    acknowledged: int
    stored: int
    duplicates: int
    lost: int
    stored_unacknowledged: int
    redelivered: int
    seconds: float

    def json(self) -> str:
        return json.dumps(asdict(self))


def message(i: int) -> tuple[str, bytes]:
    """Message i of the stream: device i % 50, its own second i // 50 after START."""
    ts = START + timedelta(seconds=i // N_DEVICES)
    body = {"ts": ts.isoformat(), "volume": i % 100, "playing": bool(i % 2)}
    return device_topic("xa", "speaker", f"spk-{i % N_DEVICES}", "status"), json.dumps(body).encode()


def index_of(device_id: str, ts: datetime) -> int:
    return int((ts - START).total_seconds()) * N_DEVICES + int(device_id.removeprefix("spk-"))


class Device:
    """A device as paho runs one: persistent session, automatic reconnect, retries of every
    message without a PUBACK; publishes `n` messages at `rate` per second."""

    def __init__(self, broker: Mosquitto, first: int, client_id: str) -> None:
        self.first = first
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)
        # PUBACKs by message id; ids stay distinct below 65,535 messages.
        self._acked: set[int] = set()
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self._acked.add(mid)
        self.client.connect("127.0.0.1", broker.port or 0, keepalive=10)
        self.client.loop_start()
        self.mids: list[int] = []
        self.sent = threading.Event()

    def stream(self, n: int, rate: float) -> None:
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            topic, payload = message(self.first + i)
            # While the broker is away paho keeps the message and sends it on reconnect.
            self.mids.append(self.client.publish(topic, payload, qos=1).mid)
        self.sent.set()

    def acknowledged(self) -> set[int]:
        acked = set(self._acked)
        return {self.first + i for i, mid in enumerate(self.mids) if mid in acked}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Proc:
    """An `ioc` subprocess in its own process group (so SIGSTOP reaches all of it)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *self.argv],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def term(self, timeout_s: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _scalar(url: str, sql: str) -> Any:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None
    except psycopg.OperationalError:
        return None  # the database is down or frozen at this moment


def _wait(fn: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := fn()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s (last {value!r})")
        time.sleep(0.1)
    return value


class Matrix:
    """PostgreSQL, Mosquitto, ingest, a gateway and the alerts service of their own, kept for
    every case; each case streams its own block of messages from a fresh device session."""

    def __init__(self, base: Path, fast_unsafe: bool = True, broker_binary: str | None = None) -> None:
        self.base = base
        self.pg = Postgres(base / "pg", fast_unsafe=fast_unsafe)
        self.broker = Mosquitto(base / "mqtt", binary=broker_binary)
        self.procs: dict[str, Proc] = {}
        self.offset = 0
        self.gateway_port = free_port()

    def __enter__(self) -> "Matrix":
        self.pg.start()
        migrate(self.pg.url())
        load_registry(self.pg.url(), REGISTRY)
        self.broker.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env |= {
            "IOC_DATABASE_URL": self.pg.url(),
            "IOC_MQTT_URL": self.broker.url(),
            "IOC_DATA_DIR": str(self.base),
            "PYTHONPATH": str(ROOT),
        }
        gw = ["gateway", "--host", "127.0.0.1", "--port", str(self.gateway_port)]
        self.procs = {
            "ingest": Proc(["ingest", "--id", INGEST_ID, "--no-onvif"], env, self.base / "ingest.log"),
            "gateway": Proc(gw, env, self.base / "gateway.log"),
            "alerts": Proc(["alerts"], env, self.base / "alerts.log"),
        }
        for p in self.procs.values():
            p.start()
        _wait(self._ingest_hears, 90, "ingest storing a warm-up status")
        _wait(lambda: _get(f"http://127.0.0.1:{self.gateway_port}/healthz"), 90, "gateway /healthz")
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs.values():
            if p.alive():
                p.signal(signal.SIGCONT)
            p.term()
        self.broker.stop()
        self.pg.stop()

    def _ingest_hears(self) -> bool:
        """A status of the warm-up device, published until stored: ingest has subscribed."""
        topic = device_topic("xa", "speaker", "warm", "status")
        try:
            subprocess.run(
                ["mosquitto_pub", "-p", str(self.broker.port), "-q", "1", "-t", topic, "-m", "{}"],
                check=True,
                timeout=5,
                capture_output=True,
            )
        except (subprocess.SubprocessError, OSError):
            return False
        return bool(_scalar(self.pg.url(), "SELECT count(*) FROM status_samples WHERE device_id = 'warm'"))

    def _stored(self, first: int, n: int) -> list[tuple[str, datetime]]:
        lo, hi = (
            START + timedelta(seconds=first // N_DEVICES),
            START + timedelta(seconds=(first + n) // N_DEVICES),
        )
        with psycopg.connect(self.pg.url()) as conn:
            return conn.execute(
                "SELECT device_id, ts FROM status_samples WHERE device_id LIKE 'spk-%%' AND ts >= %s AND ts < %s",
                (lo, hi),
            ).fetchall()

    def _count(self, first: int, n: int) -> int:
        try:
            return len(self._stored(first, n))
        except psycopg.OperationalError:
            return -1  # PostgreSQL is restarting

    def _read(self) -> int:
        return int(
            _scalar(
                self.pg.url(),
                "SELECT coalesce(sum(value), 0) FROM metric_counters WHERE name = 'ioc_ingest_messages_total'",
            )
            or 0
        )

    def run(
        self, case: Case, n: int = 2000, rate: float = 1000, stop_s: float = 2.0, settle_s: float = 60
    ) -> Result:
        """Stream `n` messages; a third of the way through, inject the fault; count."""
        first = self.offset
        self.offset += n + N_DEVICES  # the next block starts on a second of its own
        self.offset -= self.offset % N_DEVICES
        t0 = time.monotonic()
        for p in self.procs.values():
            assert p.alive(), f"{p.argv[0]} is not running:\n{p.log.read_text()[-2000:]}"
        if case.target == "mosquitto" and case.fault.startswith("kill"):
            # A killed broker restarts from its last save (autosave_interval): make it one that
            # knows ingest's session, as any periodic save after ingest's first start does.
            saved = self.broker.data_dir / "mosquitto.db"
            before = saved.stat().st_mtime_ns if saved.exists() else 0
            self.broker.save()
            _wait(lambda: saved.exists() and saved.stat().st_mtime_ns != before, 10, "the broker's save")
        read_before = self._read()
        dev = Device(self.broker, first, client_id=f"dev-{case.name}-{first}")
        sender = threading.Thread(target=dev.stream, args=(n, rate), name="matrix.device", daemon=True)
        sender.start()
        _wait(lambda: len(dev.mids) >= n // 3, 60, "a third of the stream sent")
        inject(case, self.pg, self.broker, self.procs, stop_s)
        sender.join(n / rate + 120)
        # Settled: every message acknowledged and stored, or nothing moved for 10 s.
        deadline = time.monotonic() + settle_s
        last: tuple[int, int] = (-1, -1)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            now = (len(dev.acknowledged()), self._count(first, n))
            if now[0] == n and now[1] >= n:
                break
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since > 10:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # a commit in flight at the last look
        acked = dev.acknowledged()
        dev.close()
        rows = self._stored(first, n)
        stored = {index_of(d, ts) for d, ts in rows}
        return Result(
            case=case.name,
            published=n,
            acknowledged=len(acked),
            stored=len(rows),
            duplicates=len(rows) - len(stored),
            lost=len(acked - stored),
            stored_unacknowledged=len(stored - acked),
            redelivered=self._read() - read_before - len(rows),
            seconds=round(time.monotonic() - t0, 1),
        )


def _get(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def inject(case: Case, pg: Postgres, broker: Mosquitto, procs: dict[str, Proc], stop_s: float) -> None:
    """The fault itself; returns with the target running again."""
    if case.target == "postgres":
        assert pg.proc is not None
        if case.fault == "kill":
            pg.kill()
            pg.start()
        else:
            os.killpg(pg.proc.pid, signal.SIGSTOP)
            time.sleep(stop_s)
            os.killpg(pg.proc.pid, signal.SIGCONT)
    elif case.target == "mosquitto":
        if case.fault == "term":
            broker.stop()
            broker.start()
        elif case.fault == "kill":
            broker.kill()
            broker.start()
        elif case.fault == "kill-backlog":
            procs["ingest"].signal(signal.SIGSTOP)
            time.sleep(stop_s)
            broker.kill()
            broker.start()
            procs["ingest"].signal(signal.SIGCONT)
        else:
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGSTOP)
            time.sleep(stop_s)
            broker.proc.send_signal(signal.SIGCONT)
    else:
        p = procs[case.target]
        if case.fault == "term":
            p.term()
            p.start()
        elif case.fault == "kill":
            p.kill()
            p.start()
        else:
            p.signal(signal.SIGSTOP)
            time.sleep(stop_s)
            p.signal(signal.SIGCONT)
