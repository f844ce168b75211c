"""Sign-in, the routes that need it (all but the open ones), docs and readiness."""

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from cli.embedded import Mosquitto
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.conftest import PASSWORD

# SPEC §6: the only routes that answer without a token or a key.
OPEN_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
    "/redoc",
    # where credentials are obtained
    "/api/v1/auth/login",
    # broadcast audio for speakers (SPEC §9): no login, the URL's own HMAC signature is the credential
    # (one file, until the broadcast expires; tests/broadcasts/test_media_url.py)
    "/media/{media_id}",
}
# The NGSI-LD @context holds vocabulary only, no data; JSON-LD processors fetch it without credentials.
OPEN_PREFIXES = ("/ngsi-ld/v1/jsonldContexts/",)


def routes(app: FastAPI) -> list[tuple[BaseRoute, str]]:
    """Every mounted route with its full path (FastAPI keeps included routers as branches)."""
    return [(c.original_route, c.path or "") for c in iter_route_contexts(app.routes)]


def is_dashboard_static(route: BaseRoute) -> bool:
    """The dashboard's page and its static files are open (the page shows the login form)."""
    if isinstance(route, Mount):
        return True
    endpoint = getattr(route, "endpoint", None)
    return "dashboard" in getattr(endpoint, "__module__", "")


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_login_returns_token_and_role_and_sets_httponly_cookie(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "op-tg", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["role"] == "operator" and len(body["token"]) >= 32
    cookie = r.headers["set-cookie"]
    assert "ioc_session=" in cookie and "httponly" in cookie.lower()


def test_wrong_password_or_unknown_user_is_401(client: TestClient) -> None:
    for user, pw in (("admin", "not-the-password"), ("nobody", PASSWORD)):
        r = client.post("/api/v1/auth/login", json={"username": user, "password": pw})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
    assert "set-cookie" not in r.headers
    assert client.get("/api/v1/devices").status_code == 401


def test_malformed_login_body_is_422(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "admin"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unprocessable"


def test_session_cookie_alone_works(client: TestClient) -> None:
    assert client.get("/api/v1/devices").status_code == 401
    client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    r = client.get("/api/v1/devices")
    assert r.status_code == 200 and len(r.json()["items"]) == 7


def test_bearer_token_alone_works(client: TestClient) -> None:
    token = client.post("/api/v1/auth/login", json={"username": "viewer", "password": PASSWORD}).json()[
        "token"
    ]
    client.cookies.clear()
    assert client.get("/api/v1/status").status_code == 401
    r = client.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and len(r.json()["items"]) == 7
    bad = client.get("/api/v1/status", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and bad.json()["error"]["message"]


def test_logout_ends_the_session(client: TestClient) -> None:
    token = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}).json()[
        "token"
    ]
    client.cookies.clear()
    h = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/auth/logout", headers=h).status_code == 204
    assert client.get("/api/v1/devices", headers=h).status_code == 401


def test_repeated_failures_lock_the_account_even_for_the_right_password(client: TestClient) -> None:
    for _ in range(5):
        assert (
            client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": "wrong-pass"}
            ).status_code
            == 401
        )
    r = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert r.status_code == 401 and "too many" in r.json()["error"]["message"]
    # Other accounts are not affected.
    assert (
        client.post("/api/v1/auth/login", json={"username": "viewer", "password": PASSWORD}).status_code
        == 200
    )


def test_every_route_but_the_open_ones_needs_credentials(ro_client: TestClient) -> None:
    checked_http, checked_ws = [], []
    for route, path in routes(ro_client.app):  # type: ignore[arg-type]
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or is_dashboard_static(route):
            continue
        if isinstance(route, APIWebSocketRoute | WebSocketRoute):
            url = concrete(path)
            # The handshake must be refused: closed before accept, or an HTTP denial.
            with pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)):  # noqa: PT012
                with ro_client.websocket_connect(url) as ws:
                    ws.receive_text()
            checked_ws.append(url)
            continue
        assert isinstance(route, APIRoute | Route), f"unexpected route type {route!r}"
        for method in sorted((route.methods or set()) - {"HEAD", "OPTIONS"}):
            url = concrete(path)
            r = ro_client.request(method, url)
            assert r.status_code == 401, f"{method} {url} answered {r.status_code} without credentials"
            body = r.json()
            if url.startswith("/ngsi-ld/"):  # NGSI-LD errors are ProblemDetails (CIM 009 5.5.3)
                assert body["type"] and body["status"] == 401, f"{method} {url}: no ProblemDetails"
            else:
                assert body["error"]["code"], f"{method} {url}: no JSON error"
            checked_http.append(f"{method} {url}")
    assert "GET /api/v1/devices" in checked_http and "GET /api/v1/devices/1/history" in checked_http
    assert "POST /api/v1/auth/logout" in checked_http


def test_websocket_handshake_is_refused_without_credentials_even_with_a_bad_query_token(
    ro_client: TestClient,
) -> None:
    ws_paths = [p for r, p in routes(ro_client.app) if isinstance(r, APIWebSocketRoute | WebSocketRoute)]  # type: ignore[arg-type]
    if not ws_paths:
        pytest.skip("no WebSocket route mounted yet")
    for path in ws_paths:
        with pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)):  # noqa: PT012
            with ro_client.websocket_connect(concrete(path) + "?token=not-a-token") as ws:
                ws.receive_text()


def test_open_routes_answer_without_credentials(ro_client: TestClient) -> None:
    assert ro_client.get("/healthz").json() == {"status": "ok"}
    spec = ro_client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"/api/v1/devices", "/api/v1/status", "/api/v1/devices/{device_id}/history"} <= set(paths)
    params = {p["name"] for p in paths["/api/v1/devices/{device_id}/history"]["get"]["parameters"]}
    assert {"from", "to", "bucket"} <= params
    docs = ro_client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    m = ro_client.get("/metrics")
    assert m.status_code == 200 and "ioc_ingest_messages_total" in m.text


def test_unknown_route_is_a_json_404(ro_client: TestClient) -> None:
    r = ro_client.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_readyz_follows_the_broker(db_url: str, broker: Mosquitto) -> None:
    settings = GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=broker.url())  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["broker"] == "ok" and r.json()["database"] == "ok"
        broker.stop()
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["broker"] == "unreachable" and r.json()["database"] == "ok"
