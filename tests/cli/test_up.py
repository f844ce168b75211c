"""`ioc up` in a subprocess: embedded servers, first admin, children, clean stop, recovery after kill -9."""

import asyncio
import errno
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import psycopg
import pytest

from cli.cmd_simulate import DEMO_META, reserve_demo_port
from cli.cmd_up import Child, Up
from cli.embedded import free_port, port_open
from services import registry_file
from services.settings import IocSettings
from simulator.cameras import start_farms
from simulator.demo import SCENARIO
from tests.fix_pg import private_dir

pytestmark = pytest.mark.slow


class UpProcess:
    """`ioc up` on `data_dir`, named by --data-dir or (`via_env`) by IOC_DATA_DIR only."""

    def __init__(self, data_dir: Path, http_port: int, *args: str, via_env: bool = False) -> None:
        self.data_dir = data_dir
        self.http_port = http_port
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("IOC_DATABASE_URL", "IOC_MQTT_URL", "IOC_SECRET_KEY", "IOC_DATA_DIR")
        }
        env |= {"IOC_HTTP_HOST": "127.0.0.1", "IOC_HTTP_PORT": str(http_port)}
        where = ["--data-dir", str(data_dir)]
        if via_env:
            env["IOC_DATA_DIR"], where = str(data_dir), []
        self.stderr = open(data_dir / "up-test.stderr", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", *where, *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=data_dir,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def banner(self, timeout_s: float = 90) -> list[str]:
        """Stdout up to "Press Ctrl-C"."""
        out: list[str] = []
        deadline = time.monotonic() + timeout_s
        while not out or not out[-1].startswith("Press Ctrl-C"):
            try:
                out.append(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(
                    f"no banner in {timeout_s}s; stdout {out}; stderr:\n{self.tail()}"
                ) from None
        return out

    def tail(self) -> str:
        return (self.data_dir / "up-test.stderr").read_text(errors="replace")[-3000:]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout_s)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.close()
        return rc


def processes_using(data_dir: Path) -> list[str]:
    """Command lines of live processes that name the data dir (servers and children)."""
    found = []
    needle = str(data_dir).encode()
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes()
                state = (p / "stat").read_text().split()[2]
            except OSError:
                continue
            if needle in cmd and state != "Z":
                found.append(cmd.replace(b"\0", b" ").decode(errors="replace"))
    return found


def wait_gone(data_dir: Path, timeout_s: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while (left := processes_using(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def child_pid(data_dir: Path, name: str) -> int | None:
    """The pid of `ioc up`'s child `ioc NAME`, from the state file it keeps."""
    try:
        pids = json.loads((data_dir / "up.json").read_text())["children"]
    except (OSError, ValueError):
        return None
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if name.encode() in argv:
            return int(pid)
    return None


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def data_dir() -> Iterator[Path]:
    d = private_dir("ioc-up-")
    yield d
    for cmd in processes_using(d):  # never leave servers behind, even when a test failed
        print("left running:", cmd)
    for pidfile in (d / "pg" / "postmaster.pid", d / "mqtt" / "mosquitto.pid"):
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


@pytest.mark.timeout(180)
def test_up_demo_starts_prints_url_and_login_and_stops_cleanly(data_dir: Path) -> None:
    port = free_port()
    up = UpProcess(data_dir, port, "--demo", "--rate-scale", "5")
    try:
        banner = up.banner()
        url = next(line.split("dashboard:")[1].split()[0] for line in banner if "dashboard:" in line)
        assert url == f"http://127.0.0.1:{port}/"
        login = next(line for line in banner if "login:" in line)
        password = login.split("admin /")[1].strip()
        assert len(password) >= 12
        assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600
        assert httpx.get(f"{url}healthz", timeout=10).status_code == 200
        # the demo cameras answer on the port their imported registry names
        onvif_port = json.loads((data_dir / DEMO_META).read_text())["onvif_port"]
        snap = f"http://127.0.0.1:{onvif_port}/onvif/tg-cam-ubnd-cong/snapshot.jpg"
        assert httpx.get(snap, timeout=10).status_code == 401
        r = httpx.post(
            f"{url}api/v1/auth/login", json={"username": "admin", "password": password}, timeout=10
        )
        assert r.status_code == 200 and r.json()["role"] == "admin"
        # another command on the same data dir finds the embedded database
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        listed = subprocess.run(
            [sys.executable, "-m", "cli.main", "devices", "list", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=env,
            cwd=data_dir,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        ids = {row.split(",")[0] for row in listed.stdout.splitlines()[1:]}
        assert {"tg-gw-trung-binh", "tg-cam-ubnd-cong", "lt-spk-xom-11"} <= ids and len(ids) == 82
        pg_pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        assert Path(f"/proc/{pg_pid}").stat().st_uid != 0, "PostgreSQL never runs as root"
        # a child that dies is started again
        gateway = child_pid(data_dir, "gateway")
        os.kill(gateway, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (
            child_pid(data_dir, "gateway") in (None, gateway) or not healthy(url)
        ) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert child_pid(data_dir, "gateway") not in (None, gateway) and healthy(url)
        # so is the embedded broker, on the same port
        broker_pid = int((data_dir / "mqtt" / "mosquitto.pid").read_text())
        broker_port = json.loads((data_dir / "mqtt" / "mosquitto.json").read_text())["port"]
        os.kill(broker_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            int((data_dir / "mqtt" / "mosquitto.pid").read_text() or 0) != broker_pid
            and port_open(broker_port)
        ):
            time.sleep(0.2)
        assert int((data_dir / "mqtt" / "mosquitto.pid").read_text()) != broker_pid and port_open(broker_port)
    finally:
        rc = up.stop()
    assert rc == 0, up.tail()
    assert wait_gone(data_dir) == []
    assert not (data_dir / "pg" / "postmaster.pid").exists()


@pytest.mark.timeout(240)
def test_up_recovers_after_kill_9(data_dir: Path) -> None:
    port = free_port()
    first = UpProcess(data_dir, port)
    banner = first.banner()
    assert any("admin /" in line for line in banner)
    pg_pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    first.stop(signal.SIGKILL)
    # the children follow their parent; the database server is left running, as after a crash
    deadline = time.monotonic() + 20
    while any("cli.main" in c for c in processes_using(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any("cli.main" in c for c in processes_using(data_dir))
    assert Path(f"/proc/{pg_pid}").exists()

    second = UpProcess(data_dir, port)
    try:
        banner = second.banner()
        assert not any("admin /" in line for line in banner), "the admin exists: no new password"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        # one `ioc up` per data dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        third = subprocess.run(
            [sys.executable, "-m", "cli.main", "up", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=env,
            cwd=data_dir,
            timeout=60,
        )
        assert third.returncode == 1 and "already runs" in third.stderr
    finally:
        rc = second.stop()
    assert rc == 0, second.tail()
    assert wait_gone(data_dir) == []


# -- order of stops and starts, on real child processes ------------------------------------

RECORDER = """
import signal, sys, time
name, log = sys.argv[1], sys.argv[2]
def note(what):
    with open(log, "a") as f:
        f.write(f"{name} {what}\\n")
def on_term(*_):
    note("term")
    time.sleep(0.3)  # a child's graceful stop takes a while; the next must wait for it
    note("exit")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
note("start")
while True:
    time.sleep(1)
"""


def _recorders(names: list[str], log: Path) -> list[Child]:
    return [Child(n, [sys.executable, "-c", RECORDER, n, str(log)]) for n in names]


def _wait_lines(log: Path, n: int, timeout_s: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"only {log.read_text() if log.exists() else ''!r}")


def test_children_stop_one_by_one_alerts_first_then_gateway_ingest_simulator(tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    up = Up(tmp_path, IocSettings(data_dir=tmp_path))
    up.env = dict(os.environ)
    # planned in the order `ioc up` starts them; stopped in the order that keeps alerts fed
    up.children = _recorders(["ingest", "gateway", "simulate", "alerts"], log)
    up.alerts_released = True
    for c in up.children:
        up.spawn(c)
    _wait_lines(log, 4)
    up.stop_children()
    stops = [line for line in log.read_text().splitlines() if not line.endswith(" start")]
    assert stops == [
        "alerts term",
        "alerts exit",
        "gateway term",
        "gateway exit",
        "ingest term",
        "ingest exit",
        "simulate term",
        "simulate exit",
    ]


INGEST_REPORTS = """
import sys, time, psycopg
log, url = sys.argv[1], sys.argv[2]
time.sleep(1.0)  # connecting to the broker
with psycopg.connect(url) as conn:
    conn.execute(
        "INSERT INTO process_health (name, kind, seen_at) VALUES ('ingest-t', 'ingest', now())"
        " ON CONFLICT (name) DO UPDATE SET seen_at = now()"
    )
with open(log, "a") as f:
    f.write("ingest reported\\n")
time.sleep(600)
"""


@pytest.mark.timeout(90)
def test_alerts_start_only_after_ingest_reports_since_its_own_start(tmp_path: Path, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        # a row left by the previous run is stale: it must not open the gate
        conn.execute("INSERT INTO process_health (name, kind, seen_at) VALUES ('ingest-t', 'ingest', now())")
    log = tmp_path / "order.log"
    up = Up(tmp_path, IocSettings(data_dir=tmp_path))
    up.env, up.db_url = dict(os.environ), db_url
    up.children = [
        Child("ingest", [sys.executable, "-c", INGEST_REPORTS, str(log), db_url]),
        *_recorders(["gateway", "alerts"], log),
    ]
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "alerts start" in log.read_text()) and time.monotonic() < deadline:
            up.supervise_once()
            time.sleep(0.1)
        lines = log.read_text().splitlines()
        assert "alerts start" in lines
        assert lines.index("ingest reported") < lines.index("alerts start"), lines
        assert "gateway start" in lines
    finally:
        up.stopping = True
        up.stop_children()


# -- the demo cameras' port ------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_demo_onvif_port_is_bound_before_the_registry_names_it(tmp_path: Path) -> None:
    path, sock = reserve_demo_port(tmp_path)
    port = sock.getsockname()[1]
    try:
        assert json.loads((tmp_path / DEMO_META).read_text()) == {"onvif_port": port}
        reg = registry_file.read(path)
        cams = [d for d in reg.devices if d.onvif is not None]
        assert cams and {d.onvif.port for d in cams if d.onvif} == {port}
        # from the moment the port is written down, nobody else can take it
        other = socket.socket()
        with pytest.raises(OSError) as exc:
            other.bind(("127.0.0.1", port))
        other.close()
        assert exc.value.errno == errno.EADDRINUSE

        async def serve_and_ask() -> int:
            async with AsyncExitStack() as stack:
                n = await start_farms(stack, reg, SCENARIO, sockets={port: sock})
                assert n == len([d for d in cams if not d.retired_at])
                async with httpx.AsyncClient() as client:
                    r = await client.get(f"http://127.0.0.1:{port}/onvif/{cams[0].id}/snapshot.jpg")
                return r.status_code

        assert asyncio.run(serve_and_ask()) == 401  # the camera answers, asking for its password
        # the next start keeps the same port (the imported registry does not change)
        sock.close()
        path2, sock2 = reserve_demo_port(tmp_path)
        assert sock2.getsockname()[1] == port
        sock2.close()
    finally:
        sock.close()
