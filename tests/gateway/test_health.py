"""/readyz tells the truth (ingest stalled or silent, a hung broker, a failed worker of the gateway),
/metrics shows every series from the start, the live-feed tailer's failure ends `ioc gateway`, and
signing out closes the session's live sockets on every gateway."""

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from cli.embedded import free_port
from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import liveness, topics
from services.intake import REASONS
from tests.fix_mqtt import Mosquitto
from tests.gateway.conftest import PASSWORD
from tests.gateway.test_cmd_gateway import clean_env, ioc, wait_healthy
from tests.support import wait_for


def _settings(db_url: str, mqtt_url: str | None) -> GatewaySettings:
    return GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=mqtt_url)  # type: ignore[call-arg]


def _ingest_row(url: str, name: str, age_s: float = 0, **info: Any) -> None:
    """A process_health row as services.liveness.report_health writes it, `age_s` old."""
    info = {"listening_since": "2026-12-01T00:00:00+00:00", "stalled_s": 0, **info}
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO process_health (name, kind, seen_at, info)"
            " VALUES (%s, 'ingest', now() - make_interval(secs => %s), %s)"
            " ON CONFLICT (name) DO UPDATE SET seen_at = EXCLUDED.seen_at, info = EXCLUDED.info",
            (name, age_s, Jsonb(info)),
        )


@pytest.fixture
def hung_broker() -> Iterator[str]:
    """A port that accepts TCP connections (the kernel does) and never answers: a hung broker."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"mqtt://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_readyz_is_503_naming_the_ingest_that_stalled(db_url: str, broker: Mosquitto) -> None:
    with TestClient(create_app(_settings(db_url, broker.url()))) as c:
        _ingest_row(db_url, "ingest-a", waiting=120, stalled_s=5)
        assert c.get("/readyz").status_code == 200
        _ingest_row(db_url, "ingest-a", waiting=120, stalled_s=31)
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["ingest"] == "stalled"
        assert r.json()["causes"] == ["ingest ingest-a: 120 messages waiting and nothing committed for 31 s"]


def test_readyz_hung_broker_is_not_ok_when_no_ingest_hears_it(db_url: str, hung_broker: str) -> None:
    with TestClient(create_app(_settings(db_url, hung_broker))) as c:
        r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["broker"] == "unreachable"
    assert "did not answer CONNECT" in r.json()["causes"][0]


def test_readyz_trusts_the_ingest_that_hears_the_broker(db_url: str, hung_broker: str) -> None:
    # A gateway on another host may not reach the broker at all; ingest's probe is the truth.
    _ingest_row(db_url, "ingest-a")
    with TestClient(create_app(_settings(db_url, hung_broker))) as c:
        r = c.get("/readyz")
    assert r.status_code == 200 and r.json()["broker"] == "ok" and r.json()["ingest"] == "ok"


def test_readyz_silent_ingest_is_503_and_one_stopped_on_purpose_is_not(
    db_url: str, broker: Mosquitto
) -> None:
    with TestClient(create_app(_settings(db_url, broker.url()))) as c:
        _ingest_row(db_url, "ingest-a", age_s=40)
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["ingest"] == "silent"
        (cause,) = r.json()["causes"]  # 40 s, or a little more on a busy machine
        assert re.fullmatch(r"ingest: no ingest has heard the broker for 4\d s", cause), cause
        _ingest_row(db_url, "ingest-a", age_s=40, stopped="planned")
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["ingest"] == "stopped", r.json()


def test_metrics_show_every_series_from_zero_and_ingest_gauges(db_url: str) -> None:
    _ingest_row(db_url, "ingest-a", last_commit_at="2026-12-02T10:00:00+00:00", waiting=3, stalled_s=2)
    with TestClient(create_app(_settings(db_url, None))) as c:
        wait_for(lambda: 'ioc_process_starts_total{process="gateway"} 1' in c.get("/metrics").text)
        text = c.get("/metrics").text
    for reason in REASONS:
        assert f'ioc_ingest_dead_letters_total{{reason="{reason}"}} 0' in text
    for channel in topics.CHANNELS:
        assert f'ioc_ingest_messages_total{{channel="{channel}"}} 0' in text
    assert 'ioc_process_starts_total{process="ingest"} 0' in text
    at = datetime(2026, 12, 2, 10, tzinfo=UTC).timestamp()
    assert f'ioc_ingest_last_commit_timestamp_seconds{{ingest="ingest-a"}} {at}' in text
    assert 'ioc_ingest_waiting_messages{ingest="ingest-a"} 3.0' in text


def test_an_ingest_gone_for_a_week_leaves_the_metrics_when_another_reports(db_url: str) -> None:
    _ingest_row(db_url, "ingest-old-host", age_s=liveness.GONE_S + 60, waiting=0)
    _ingest_row(db_url, "ingest-down-since-yesterday", age_s=86400, waiting=0)
    with psycopg.connect(db_url) as conn:
        liveness.report_health(conn, "ingest-a", datetime.now(UTC), waiting=0)
        names = [
            n for (n,) in conn.execute("SELECT name FROM process_health WHERE kind = 'ingest' ORDER BY name")
        ]
    assert names == ["ingest-a", "ingest-down-since-yesterday"]
    with TestClient(create_app(_settings(db_url, None))) as c:
        text = c.get("/metrics").text
    assert 'ingest="ingest-down-since-yesterday"' in text and "ingest-old-host" not in text


def _bad_feed_row(url: str) -> None:
    """A feed row whose items are not messages (a bug in some writer): the tailer cannot go on."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO feed (seq_first, seq_last, at, items)"
            " SELECT coalesce(max(seq_last), 0) + 1, coalesce(max(seq_last), 0) + 1, now(), '[1]' FROM feed"
        )
        conn.execute("NOTIFY ioc_feed")


def test_a_failed_tailer_makes_readyz_503_naming_it(db_url: str) -> None:
    with TestClient(create_app(_settings(db_url, None))) as c:
        wait_for(lambda: c.app.state.live.ready.is_set())  # type: ignore[attr-defined]
        _bad_feed_row(db_url)
        r = wait_for(lambda: (r := c.get("/readyz")).status_code == 503 and r)
    assert r.json()["workers"] == "failed"
    assert any(x.startswith("gateway: worker live.tail failed: AttributeError") for x in r.json()["causes"])


def test_ioc_gateway_exits_non_zero_when_its_live_feed_fails(seeded: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gw.log"
    with log.open("wb") as f:
        proc = ioc(
            ["gateway", "--port", str(port)],
            clean_env(tmp_path, IOC_DATABASE_URL=seeded),
            tmp_path,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(port, proc)
        with _live(port, _login(port)) as ws:  # the snapshot comes once the tailer follows the feed
            _bad_feed_row(seeded)
            assert proc.wait(30) == 1
            assert _closed_by_server(ws) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "worker live.tail failed: AttributeError" in text
    assert text.count("Traceback") == 1  # logged once


def _login(port: int) -> str:
    r = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/auth/login",
        json={"username": "admin", "password": PASSWORD},
        timeout=30,
    )
    token: str = r.json()["token"]
    return token


@contextmanager
def _live(port: int, token: str) -> Iterator[Any]:
    """A live-feed socket that has had its snapshot."""
    url = f"ws://127.0.0.1:{port}/ws/live"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        yield ws


@pytest.fixture
def two_gateways(seeded: str, tmp_path: Path) -> Iterator[list[int]]:
    env = clean_env(tmp_path, IOC_DATABASE_URL=seeded)
    ports = [free_port(), free_port()]
    procs = [
        ioc(
            ["gateway", "--port", str(p)], env, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for p in ports
    ]
    try:
        for p, proc in zip(ports, procs, strict=True):
            wait_healthy(p, proc)
        yield ports
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _closed_by_server(ws: Any, timeout_s: float = 15) -> int | None:
    """Read until the server closes the socket; its close code (None: still open at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ws.recv(timeout=0.5)
        except TimeoutError:
            continue
        except ConnectionClosed as err:
            return err.rcvd.code if err.rcvd else None
    return None


def test_signing_out_closes_the_sessions_live_sockets_on_every_gateway(two_gateways: list[int]) -> None:
    a, b = two_gateways
    token, other = _login(a), _login(a)
    with ExitStack() as stack:
        sockets = [stack.enter_context(_live(a, token)), stack.enter_context(_live(b, token))]
        kept = stack.enter_context(_live(b, other))
        r = httpx.post(
            f"http://127.0.0.1:{a}/api/v1/auth/logout",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert r.status_code == 204
        assert [_closed_by_server(ws) for ws in sockets] == [1008, 1008]
        # Another session of the same user is not signed out.
        with pytest.raises(TimeoutError):
            kept.recv(timeout=3)
