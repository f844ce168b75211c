"""`ioc up` in a subprocess: embedded servers, first admin, children, clean stop, recovery after kill -9."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.embedded import free_port, port_open
from tests.fix_pg import private_dir

pytestmark = pytest.mark.slow


class UpProcess:
    def __init__(self, data_dir: Path, http_port: int, *args: str) -> None:
        self.data_dir = data_dir
        self.http_port = http_port
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("IOC_DATABASE_URL", "IOC_MQTT_URL", "IOC_SECRET_KEY", "IOC_DATA_DIR")
        }
        env |= {"IOC_HTTP_HOST": "127.0.0.1", "IOC_HTTP_PORT": str(http_port)}
        self.stderr = open(data_dir / "up-test.stderr", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--data-dir", str(data_dir), *args],
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
        assert {"tg-gw-trung-binh", "tg-cam-ubnd-cong", "lt-spk-xom-11"} <= ids and len(ids) == 79
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
