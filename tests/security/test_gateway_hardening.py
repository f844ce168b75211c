"""Gateway hardening: security headers, closed CORS, login rate limits, secure cookies,
WebSocket origin check, and roles on every mutating operator route."""

import re
from collections.abc import Iterator

import psycopg
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from gateway.app import create_app
from gateway.deps import Operator
from gateway.settings import GatewaySettings
from services import auth

PASSWORD = "correct-horse-1"


def _settings(db_url: str, **kw: object) -> GatewaySettings:
    return GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None, **kw)  # type: ignore[call-arg]


@pytest.fixture
def users(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        auth.add_user(conn, "admin", PASSWORD, "admin")
        auth.add_user(conn, "viewer", PASSWORD, "viewer")
    return db_url


@pytest.fixture
def app(users: str) -> FastAPI:
    return create_app(_settings(users))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=("198.51.100.1", 40000)) as c:
        yield c


def _login(c: TestClient, username: str, password: str) -> int:
    return c.post("/api/v1/auth/login", json={"username": username, "password": password}).status_code


def test_security_headers_on_pages_api_and_errors(client: TestClient) -> None:
    for path, status in (("/healthz", 200), ("/api/v1/auth/me", 401), ("/no-such-page", 404)):
        r = client.get(path)
        assert r.status_code == status
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp
        assert "frame-ancestors 'none'" in csp
        assert "http" not in csp  # no other origin anywhere
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
    assert client.get("/api/v1/auth/me").headers["cache-control"] == "no-store"


def test_docs_page_loads_its_scripts_from_the_gateway_only(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "http" not in csp and "frame-ancestors 'none'" in csp
    scripts = re.findall(r'<script src="([^"]+)"', r.text)
    assert scripts and all(src.startswith("/ui/") for src in scripts)
    for src in scripts:
        assert client.get(src).status_code == 200


def test_cors_is_closed_by_default(client: TestClient, as_viewer: dict[str, str]) -> None:
    evil = {"Origin": "https://evil.example"}
    r = client.get("/api/v1/auth/me", headers=evil | as_viewer)
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/api/v1/auth/me",
        headers=evil
        | {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"},
    )
    assert "access-control-allow-origin" not in pre.headers
    assert pre.status_code >= 400


def test_cors_allows_only_configured_origins(users: str) -> None:
    app = create_app(_settings(users, cors_origins=["https://district.example"]))
    with TestClient(app) as c:
        pre = c.options(
            "/api/v1/auth/me",
            headers={
                "Origin": "https://district.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://district.example"
        assert "access-control-allow-credentials" not in pre.headers
        r = c.get("/healthz", headers={"Origin": "https://district.example"})
        assert r.headers["access-control-allow-origin"] == "https://district.example"
        r = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_login_failures_from_one_address_are_limited(app: FastAPI, client: TestClient) -> None:
    limiter = app.state.login_limiter
    limiter.per_ip = 4  # the default (20) works the same; fewer argon2 checks keep the test fast
    for i in range(limiter.per_ip):
        assert _login(client, f"guess-{i}", "wrong-password") == 401
    r = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["error"]["code"] == "rate_limited"
    assert r.headers["x-content-type-options"] == "nosniff"
    # Another address is not affected.
    other = TestClient(app, client=("203.0.113.7", 40000))
    assert _login(other, "admin", PASSWORD) == 200


def test_login_failures_for_one_username_are_limited_across_addresses(
    app: FastAPI, client: TestClient
) -> None:
    limiter = app.state.login_limiter
    limiter.per_user = 4
    for i in range(limiter.per_user):
        c = TestClient(app, client=(f"192.0.2.{i + 1}", 40000))
        assert _login(c, "no-such-user", "wrong-password") == 401
    fresh = TestClient(app, client=("192.0.2.200", 40000))
    assert _login(fresh, "no-such-user", "anything-else") == 429
    assert _login(fresh, "viewer", PASSWORD) == 200


def test_login_limit_lifts_after_the_window(app: FastAPI, client: TestClient) -> None:
    limiter = app.state.login_limiter
    now = [1000.0]
    limiter.clock = lambda: now[0]
    limiter.per_user = 3
    for _ in range(limiter.per_user):
        assert _login(client, "viewer", "wrong-password") in (401,)
    assert _login(client, "viewer", PASSWORD) == 429
    now[0] += limiter.window_s + 1
    # The database lockout (5 failures, 5 minutes) is separate; clear it as an admin would.
    with psycopg.connect(app.state.settings.database_url) as conn:
        conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE username = 'viewer'")
    assert _login(client, "viewer", PASSWORD) == 200


def test_session_cookie_is_secure_when_configured(users: str) -> None:
    with TestClient(create_app(_settings(users, cookie_secure=True)), base_url="https://testserver") as c:
        r = c.post("/api/v1/auth/login", json={"username": "viewer", "password": PASSWORD})
        cookie = r.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_session_cookie_is_not_secure_by_default(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "viewer", "password": PASSWORD})
    assert r.status_code == 200
    parts = [p.strip().lower() for p in r.headers["set-cookie"].split(";")]
    assert "secure" not in parts and "httponly" in parts


def test_websocket_from_a_foreign_page_is_refused(app: FastAPI, client: TestClient) -> None:
    @app.websocket("/ws/test-origin")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    with client.websocket_connect("/ws/test-origin", headers={"Origin": "http://testserver"}) as ws:
        assert ws.receive_text() == "hello"
    with client.websocket_connect("/ws/test-origin") as ws:  # no Origin: not a browser
        assert ws.receive_text() == "hello"
    with (
        pytest.raises(WebSocketDisconnect) as err,
        client.websocket_connect("/ws/test-origin", headers={"Origin": "https://evil.example"}) as ws,
    ):
        ws.receive_text()
    assert err.value.code == 1008


# --- roles on every mutating operator route -------------------------------------------------

# Routes a viewer may call: signing in and out of its own session.
VIEWER_MAY = {"/api/v1/auth/login", "/api/v1/auth/logout"}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def mutating_operator_routes(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith("/api/v1/"):
            continue
        if route.path in VIEWER_MAY:
            continue
        out += [(m, route.path) for m in sorted(route.methods & MUTATING)]
    return out


def viewer_reachable(client: TestClient, routes: list[tuple[str, str]], headers: dict[str, str]) -> list[str]:
    """Routes that do not answer 403 to a viewer. Path parameters get a plausible value and the
    body is `{}`: FastAPI resolves dependencies (the role check) before it validates the body."""
    offenders = []
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "1", path)
        r = client.request(method, url, headers=headers, json={})
        if r.status_code != 403:
            offenders.append(f"{method} {path} -> {r.status_code}")
    return offenders


@pytest.fixture
def as_viewer(users: str) -> dict[str, str]:
    with psycopg.connect(users) as conn:
        token, _ = auth.login(conn, "viewer", PASSWORD)
    return {"Authorization": f"Bearer {token}"}


def test_viewer_gets_403_on_every_mutating_operator_route(
    client: TestClient, app: FastAPI, as_viewer: dict[str, str]
) -> None:
    routes = mutating_operator_routes(app)
    assert viewer_reachable(client, routes, as_viewer) == []


def test_route_walk_catches_a_route_without_a_role_check(
    client: TestClient, app: FastAPI, as_viewer: dict[str, str]
) -> None:
    from pydantic import BaseModel

    class Body(BaseModel):
        name: str
        count: int

    @app.post("/api/v1/test-open/{thing_id}")
    def open_route(thing_id: int, body: Body) -> dict[str, str]:
        return {"ok": "yes"}

    @app.put("/api/v1/test-guarded/{thing_id}")
    def guarded(thing_id: int, body: Body, user: Operator) -> dict[str, str]:
        return {"ok": "yes"}

    routes = mutating_operator_routes(app)
    assert ("POST", "/api/v1/test-open/{thing_id}") in routes
    assert ("PUT", "/api/v1/test-guarded/{thing_id}") in routes
    offenders = viewer_reachable(client, routes, as_viewer)
    assert offenders == ["POST /api/v1/test-open/{thing_id} -> 422"]
