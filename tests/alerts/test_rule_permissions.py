"""Alert rules are deployment-wide: only an admin of every commune changes them."""

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import auth

BODY = {"rules": {"offline": {"for_s": 600}}}


@pytest.fixture
def api(db_url: str) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], str]]:
    headers = {}
    with psycopg.connect(db_url) as conn:
        for name, communes in (("admin", None), ("admin-tg", ["thoai-giang"])):
            conn.execute(
                "INSERT INTO users (username, password_hash, role, communes) VALUES (%s, 'x', 'admin', %s)",
                (name, communes),
            )
            token = secrets.token_urlsafe(24)
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, expires_at) SELECT %s, id, now() + interval '1 hour'"
                " FROM users WHERE username = %s",
                (auth.token_hash(token), name),
            )
            headers[name] = {"Authorization": f"Bearer {token}"}
    settings = GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        yield client, headers, db_url


def _config(url: str) -> tuple[object, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT rules, version, updated_by FROM alert_config").fetchone()
        n = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    assert row is not None and n is not None
    return (*row, n[0])


def test_a_commune_admin_cannot_change_deployment_wide_rules(api: tuple[TestClient, dict, str]) -> None:
    client, h, url = api
    before = _config(url)
    r = client.put("/api/v1/alert-rules", json=BODY, headers=h["admin-tg"])
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden" and "every commune" in r.json()["error"]["message"]
    assert _config(url) == before == ({}, 0, None, 0)  # nothing changed, nothing audited
    # Reading them stays open to the commune admin.
    assert client.get("/api/v1/alert-rules", headers=h["admin-tg"]).status_code == 200


def test_an_admin_of_every_commune_changes_rules(api: tuple[TestClient, dict, str]) -> None:
    client, h, url = api
    r = client.put("/api/v1/alert-rules", json=BODY, headers=h["admin"])
    assert r.status_code == 200 and r.json()["rules"]["offline"]["for_s"] == 600
    assert _config(url) == (BODY["rules"], 1, "admin", 1)
