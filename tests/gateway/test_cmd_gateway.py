"""`ioc gateway` as real processes: two side by side on one database, and logs without query tokens."""

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from cli.cmd_gateway import RedactQueryTokens
from cli.embedded import free_port
from tests.gateway.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def ioc(args: list[str], env: dict[str, str], cwd: Path, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, **kw
    )  # type: ignore[call-overload]


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    # cwd is a temp dir so no developer .env is read; the package comes from PYTHONPATH.
    env |= {"PYTHONPATH": str(ROOT), "IOC_DATA_DIR": str(tmp_path / "data"), **extra}
    return env


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"gateway on {port} exited with {proc.returncode}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gateway on {port} did not answer within {timeout_s}s")


@pytest.fixture
def two_gateways(seeded: str, tmp_path: Path) -> Iterator[tuple[list[int], list[Path]]]:
    env = clean_env(tmp_path, IOC_DATABASE_URL=seeded, IOC_HTTP_PORT="1")  # --port must win
    ports, logs, procs = [free_port(), free_port()], [tmp_path / "gw1.log", tmp_path / "gw2.log"], []
    # The second one does not compress live frames.
    envs = [env, env | {"IOC_LIVE_DEFLATE": "false"}]
    for port, log, gw_env in zip(ports, logs, envs, strict=True):
        with log.open("wb") as f:
            procs.append(
                ioc(
                    ["gateway", "--host", "127.0.0.1", "--port", str(port)],
                    gw_env,
                    tmp_path,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_healthy(port, proc)
        yield ports, logs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_two_gateways_share_sessions_and_logs_never_hold_query_tokens(
    two_gateways: tuple[list[int], list[Path]],
) -> None:
    (p1, p2), logs = two_gateways
    login = httpx.post(
        f"http://127.0.0.1:{p1}/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
    )
    assert login.status_code == 200
    token = login.json()["token"]
    # A session opened on one gateway works on the other: they meet in the database.
    r = httpx.get(f"http://127.0.0.1:{p2}/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and len(r.json()["items"]) == 7

    # Both offer the same feed; only the first compresses it for a client that asks, as browsers do.
    for port, extension in ((p1, "permessage-deflate"), (p2, None)):
        with ws_connect(
            f"ws://127.0.0.1:{port}/ws/live",
            additional_headers={"Authorization": f"Bearer {token}"},
            compression="deflate",
            open_timeout=5,
        ) as ws:
            assert ws.response is not None
            offered = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (offered.split(";")[0] if offered else None) == extension
            assert '"type":"snapshot"' in str(ws.recv(timeout=5))

    httpx.get(f"http://127.0.0.1:{p1}/api/v1/devices?limit=5&token={token}")
    httpx.get(f"http://127.0.0.1:{p1}/healthz?a=1&token=SECRET-HTTP-TOKEN&b=2")
    httpx.get(f"http://127.0.0.1:{p1}/api/v1/status?access_token=SECRET-ACCESS-TOKEN")
    for query in (f"token={token}", "token=SECRET-WS-TOKEN"):
        try:
            with ws_connect(f"ws://127.0.0.1:{p2}/ws/live?{query}", open_timeout=5) as ws:
                ws.close()
        except Exception:  # noqa: BLE001, S110 - refused or accepted, the log line is what we check
            pass

    # uvicorn writes (and flushes) the line before the response leaves, so the logs are complete.
    text = "".join(log.read_text(errors="replace") for log in logs)
    assert "GET /api/v1/devices?limit=5&token=[redacted]" in text
    assert "/healthz?a=1&token=[redacted]&b=2" in text
    assert "/ws/live?token=[redacted]" in text
    for secret in (token, "SECRET-HTTP-TOKEN", "SECRET-ACCESS-TOKEN", "SECRET-WS-TOKEN"):
        assert secret not in text


def test_redact_filter_rewrites_message_and_args() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" 403',
        ("127.0.0.1:5000", "/ws/live?since=4&token=abc.def-ghi"),
        None,
    )
    assert RedactQueryTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /ws/live?since=4&token=[redacted]" 403'
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /x?KEY=k1&tokens=keep", None, None)
    RedactQueryTokens().filter(record)
    assert record.getMessage() == "GET /x?KEY=[redacted]&tokens=keep"


def test_gateway_without_database_fails_with_one_line_naming_the_setting(tmp_path: Path) -> None:
    p = ioc(["gateway"], clean_env(tmp_path), tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2
    assert err.decode().strip().splitlines() == [err.decode().strip()] and "IOC_DATABASE_URL" in err.decode()

    url = f"postgresql://ioc@127.0.0.1:{free_port()}/ioc"
    p = ioc(
        ["gateway"],
        clean_env(tmp_path, IOC_DATABASE_URL=url),
        tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "IOC_DATABASE_URL" in err.decode() and "unreachable" in err.decode()


def test_gateway_help_names_its_options(tmp_path: Path) -> None:
    p = ioc(["gateway", "--help"], clean_env(tmp_path), tmp_path, stdout=subprocess.PIPE)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0
    assert all(opt in out.decode() for opt in ("--host", "--port", "--data-dir"))
