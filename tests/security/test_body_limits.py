"""Request bodies and slow clients (issue 13, item 7): a size limit by path (413, at once by
Content-Length, or while a chunked body streams), a deadline for slow bodies (408) and for slow
headers, on the real gateway (uvicorn subprocess) where sockets matter."""

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from gateway import errors
from gateway.app import create_app
from gateway.body_limits import BodyGuard
from gateway.settings import GatewaySettings
from tests.dashboard.serve import gateway

SOCKET_TIMEOUT_S = 15.0  # bounds a test against a gateway that never answers


def _settings(db_url: str, **kw: object) -> GatewaySettings:
    return GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None, **kw)  # type: ignore[call-arg]


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(db_url, http_body_max_bytes=64 * 1024))) as c:
        yield c


def test_a_body_over_the_limit_is_413_with_the_error_body(client: TestClient) -> None:
    big = b'{"username": "admin", "password": "' + b"x" * 100_000 + b'"}'
    r = client.post("/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    assert r.headers["connection"] == "close"


def test_a_chunked_body_is_counted_as_it_streams(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    r = client.post("/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_small_bodies_pass_and_paths_have_their_own_limits(db_url: str) -> None:
    settings = _settings(
        db_url, http_body_max_bytes=1000, http_body_max_bytes_by_path={"/api/v1/media": 200_000}
    )
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/v1/auth/login", json={"username": "nobody", "password": "wrong-password"})
        assert r.status_code == 401  # read and answered by the route
        r = c.post("/api/v1/auth/login", content=b"x" * 1001, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        # The upload path takes more: the body reaches the media route (which asks for a sign-in), not 413.
        r = c.post("/api/v1/media", content=b"x" * 100_000, headers={"Content-Type": "application/json"})
        assert r.status_code == 401
        r = c.post("/api/v1/media", content=b"x" * 200_001, headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_a_streamed_body_read_by_a_route_is_refused_with_413_and_the_connection_closed() -> None:
    # Bodies larger than the buffer (audio uploads) stream to the route; the limit still holds.
    app = FastAPI()
    errors.install(app)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        return {"n": len(await request.body())}

    app.add_middleware(BodyGuard, max_bytes=10_000, by_path={}, timeout_s=10, min_bps=1000, buffer_max=1000)
    with TestClient(app) as c:
        assert c.post("/upload", content=b"x" * 5000).json() == {"n": 5000}

        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b"x" * 1000

        r = c.post("/upload", content=chunks())
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert r.headers["connection"] == "close"


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the gateway closes the connection (a socket timeout fails the test)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


@pytest.mark.timeout(120)
def test_slow_clients_are_answered_and_dropped_on_the_real_gateway(db_url: str) -> None:
    with gateway(
        db_url, http_body_timeout_s="1", http_header_timeout_s="2", http_body_max_bytes=str(1024 * 1024)
    ) as base:
        # A declared 400 MB sign-in: refused before a byte of the body is sent.
        with _connect(base) as s:
            s.sendall(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 400000000\r\n\r\n"
            )
            answer = _read_all(s)
        assert answer.startswith(b"HTTP/1.1 413 ") and b'"too_large"' in answer

        # A body that stops halfway: 408 once its deadline passes, and the connection is closed.
        with _connect(base) as s:
            s.sendall(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"username": "adm'
            )
            answer = _read_all(s)
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in answer

        # A body trickled a byte at a time never earns more than its deadline.
        with _connect(base) as s:
            s.sendall(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n"
            )
            s.settimeout(0.2)
            answer = b""
            for _ in range(int(SOCKET_TIMEOUT_S / 0.2)):
                try:
                    s.sendall(b" ")
                    answer += s.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if answer:
                    break
        assert answer.startswith(b"HTTP/1.1 408 ")

        # Headers that never finish, and a connection that never says anything: closed.
        with _connect(base) as s:
            s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            assert _read_all(s).startswith(b"HTTP/1.1 408 ")
        with _connect(base) as s:
            assert _read_all(s) == b""

        # The gateway still serves.
        with _connect(base) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_all(s).startswith(b"HTTP/1.1 200 ")
