"""The gateway in-process on a seeded two-commune database, and API keys for it."""

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import auth, keys
from tests.share import world

ADMIN_PASSWORD = "correct-horse-1"


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        world.seed(c)
        auth.add_user(c, "admin", ADMIN_PASSWORD, "admin")
        auth.add_user(c, "op", ADMIN_PASSWORD, "operator", ["thoai-giang"])
        c.commit()
        yield c


@pytest.fixture
def client(conn: psycopg.Connection, db_url: str) -> Iterator[TestClient]:
    settings = GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as c:
        yield c


def make_key(
    conn: psycopg.Connection,
    communes: list[str] | None = None,
    kinds: list[str] | None = None,
    rate: int = 600,
    name: str = "district",
) -> str:
    _, secret = keys.create(conn, name, communes, kinds, rate)
    conn.commit()
    return secret


@pytest.fixture
def key_a(conn: psycopg.Connection) -> str:
    """A key for commune thoai-giang only."""
    return make_key(conn, ["thoai-giang"], name="huyen-thoai-son")


@pytest.fixture
def key_all(conn: psycopg.Connection) -> str:
    return make_key(conn, None, name="tinh-an-giang")


def hdr(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def admin_token(client: TestClient) -> str:
    r = client.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])
