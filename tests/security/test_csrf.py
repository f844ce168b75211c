"""CSRF (issue 13, item 4): a state-changing request authenticated by the session cookie must come
from the gateway's own origin and carry JSON; bearer-token clients are not affected."""

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.conftest import PASSWORD, headers_for, seed

EVIL = "http://evil.example"


def _settings(db_url: str, **kw: object) -> GatewaySettings:
    return GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None, **kw)  # type: ignore[call-arg]


def _open_alert(db_url: str, device_id: str = "spk-tay-binh-1") -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, state, message,"
            " since, opened_at) SELECT 'offline', id, commune_id, village_id, kind, 'critical', 'open', 'm',"
            " now(), now() FROM devices WHERE id = %s RETURNING id",
            (device_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def seeded(db_url: str) -> str:
    seed(db_url)
    return db_url


@pytest.fixture
def signed_in(seeded: str) -> Iterator[TestClient]:
    """A browser-like client: signed in, so the session cookie rides on every request."""
    with TestClient(create_app(_settings(seeded))) as c:
        r = c.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 200 and "ioc_session" in c.cookies
        yield c


def _state(c: TestClient, alert_id: int) -> str:
    return str(c.get(f"/api/v1/alerts/{alert_id}").json()["state"])


def test_cookie_mutation_from_another_origin_is_refused(signed_in: TestClient, seeded: str) -> None:
    alert_id = _open_alert(seeded)
    # The report's request: another origin, a content type a page may send anywhere.
    for origin in (EVIL, "http://testserver:8080", "http://sub.testserver", "null"):
        r = signed_in.post(
            f"/api/v1/alerts/{alert_id}/resolve",
            headers={"Origin": origin, "Content-Type": "text/plain"},
            content=b"{}",
        )
        assert r.status_code == 403, origin
        assert r.json()["error"]["code"] == "forbidden"
        # JSON does not make another origin acceptable.
        r = signed_in.post(f"/api/v1/alerts/{alert_id}/ack", headers={"Origin": origin}, json={})
        assert r.status_code == 403, origin
    assert _state(signed_in, alert_id) == "open"


def test_form_logout_from_another_page_is_refused(signed_in: TestClient) -> None:
    # A plain HTML form: urlencoded, and its Referer names the other page (no Origin: old browsers).
    r = signed_in.post(
        "/api/v1/auth/logout",
        headers={"Referer": EVIL + "/page.html", "Content-Type": "application/x-www-form-urlencoded"},
        content=b"",
    )
    assert r.status_code == 403
    r = signed_in.post("/api/v1/auth/logout", headers={"Origin": EVIL})
    assert r.status_code == 403
    # Even without Origin or Referer a form's content type is refused with the cookie.
    r = signed_in.post("/api/v1/auth/logout", headers={"Content-Type": "text/plain"}, content=b"x")
    assert r.status_code == 403
    assert signed_in.get("/api/v1/auth/me").status_code == 200  # still signed in


def test_same_origin_dashboard_requests_work(signed_in: TestClient, seeded: str) -> None:
    alert_id = _open_alert(seeded)
    own = {"Origin": "http://testserver"}
    r = signed_in.post(f"/api/v1/alerts/{alert_id}/ack", headers=own, json={"comment": "đang xử lý"})
    assert r.status_code == 200 and r.json()["state"] == "acked"
    r = signed_in.post(
        f"/api/v1/alerts/{alert_id}/resolve", headers={"Referer": "http://testserver/#/alerts"}
    )
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    assert signed_in.post("/api/v1/auth/logout", headers=own).status_code == 204
    assert signed_in.get("/api/v1/auth/me").status_code == 401


def test_configured_origins_and_public_url_count_as_own(seeded: str) -> None:
    settings = _settings(
        seeded, cors_origins=["https://district.example"], public_url="https://ioc.example.vn/"
    )
    with TestClient(create_app(settings)) as c:
        assert (
            c.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}).status_code == 200
        )
        for origin, device_id in (
            ("https://district.example", "eb-tay-binh"),
            ("https://ioc.example.vn", "spk-tay-binh-1"),
        ):
            alert_id = _open_alert(seeded, device_id)
            r = c.post(f"/api/v1/alerts/{alert_id}/ack", headers={"Origin": origin}, json={})
            assert r.status_code == 200, origin


def test_bearer_clients_are_not_affected(seeded: str) -> None:
    alert_id = _open_alert(seeded)
    bearer = headers_for(seeded)("admin")
    with TestClient(create_app(_settings(seeded))) as c:
        # A program with its token may send what it likes from anywhere: no page can add the header.
        r = c.post(
            f"/api/v1/alerts/{alert_id}/resolve",
            headers={**bearer, "Origin": EVIL, "Content-Type": "text/plain"},
        )
        assert r.status_code == 200 and r.json()["state"] == "resolved"
        assert c.post("/api/v1/auth/logout", headers={**bearer, "Origin": EVIL}).status_code == 204
