"""deploy/examples/province_pull.py against a live gateway: an exact copy, also after a kill."""

import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import uvicorn

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.share import world
from tests.share.conftest import make_key

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "province_pull.py"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def gateway_url(conn: psycopg.Connection, db_url: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None))  # type: ignore[call-arg]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def flap(conn: psycopg.Connection, devices: list[str], n: int, start: int) -> None:
    for i in range(start, start + n):
        world.change(
            conn, devices[i % len(devices)], "online" if i % 2 else "offline", T0 + timedelta(seconds=i)
        )


def pull(url: str, key: str, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--url", url, "--key", key, "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def mirror(db: Path) -> list[tuple]:  # type: ignore[type-arg]
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT seq, device_id, state, prev_state FROM changes ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # not created yet by the puller
        return []
    finally:
        c.close()


def expected(conn: psycopg.Connection) -> list[tuple]:  # type: ignore[type-arg]
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT seq, device_id, state, prev_state FROM state_changes WHERE commune_id = 'thoai-giang' ORDER BY seq"
        )
    ]


def test_province_copy_is_exact_and_resumes_after_being_killed(
    conn: psycopg.Connection, gateway_url: str, tmp_path: Path
) -> None:
    key = make_key(conn, ["thoai-giang"])
    db = tmp_path / "mirror.sqlite"
    flap(conn, world.A_DEVICES + world.B_DEVICES, 30, 0)
    # Stopped after one page: the copy holds exactly that page.
    r = pull(gateway_url, key, db, "--limit", "7", "--max-pages", "1")
    assert r.returncode == 0, r.stderr
    assert mirror(db) == expected(conn)[:7]
    # Polling, killed with SIGKILL mid-way, while changes keep coming.
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--url",
        gateway_url,
        "--key",
        key,
        "--db",
        str(db),
        "--limit",
        "3",
        "--interval",
        "0.2",
    ]
    with subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            deadline = time.monotonic() + 30
            while len(mirror(db)) < 12:
                assert time.monotonic() < deadline, "the puller made no progress"
                time.sleep(0.05)
            flap(conn, world.A_DEVICES + world.B_DEVICES, 20, 30)
        finally:
            proc.send_signal(signal.SIGKILL)
    flap(conn, world.A_DEVICES, 5, 50)
    r = pull(gateway_url, key, db, "--limit", "4", "--once")
    assert r.returncode == 0, r.stderr
    assert mirror(db) == expected(conn)
    with sqlite3.connect(db) as c:
        states = dict(c.execute("SELECT device_id, state FROM device_state").fetchall())
    now = dict(
        conn.execute(
            "SELECT device_id, state FROM device_state WHERE device_id = ANY(%s)", (world.A_DEVICES,)
        ).fetchall()
    )
    assert states == now
