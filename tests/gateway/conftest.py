"""The gateway in-process (TestClient, lifespan included) on a fresh database with a small registry."""

import functools
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from cli.embedded import Postgres
from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import auth, registry, registry_file
from services.vault import Vault
from tests.fix_pg import clone_db, drop_db

THOAI_GIANG = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
  - {id: tay-binh, name: "Ấp Tây Bình"}
devices:
  - {id: gw-trung-binh, kind: gateway, village: trung-binh, name: "Router ấp Trung Bình"}
  - {id: cam-ubnd-1, kind: camera, village: trung-binh, name: "Camera cổng UBND", lat: 10.39, lon: 105.33,
     parent: gw-trung-binh,
     onvif: {host: 192.0.2.21, port: 80, username: admin, password: "cam-pass-XYZ", poll_s: 30}}
  - {id: spk-trung-binh-1, kind: speaker, village: trung-binh, heartbeat_s: 30}
  - {id: spk-tay-binh-1, kind: speaker, village: tay-binh}
  - {id: eb-tay-binh, kind: eboard, village: tay-binh}
"""

LONG_THANH = """\
commune: {id: long-thanh, name: "Xã Long Thạnh"}
villages:
  - {id: xom-1, name: "Xóm 1"}
devices:
  - {id: wifi-xom-1, kind: wifi, village: xom-1}
  - {id: spk-xom-1, kind: speaker, village: xom-1}
"""

PASSWORD = "correct-horse-1"
USERS = {"admin": ("admin", None), "op-tg": ("operator", ["thoai-giang"]), "viewer": ("viewer", None)}
LAST_SEEN = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
Headers = Callable[..., dict[str, str]]


@functools.cache
def password_hash() -> str:
    # argon2 takes a good fraction of a second on a busy machine: hash once per session.
    return PasswordHasher().hash(PASSWORD)


def seed(url: str) -> None:
    """Two communes, seven devices (all unknown), three users with the password PASSWORD."""
    vault = Vault("test-secret-key-0123456789")
    with psycopg.connect(url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(THOAI_GIANG), vault)
        registry.import_registry(conn, registry_file.parse_yaml(LONG_THANH), vault)
        for name, (role, communes) in USERS.items():
            conn.execute(
                "INSERT INTO users (username, password_hash, role, communes) VALUES (%s, %s, %s, %s)",
                (name, password_hash(), role, communes),
            )


def headers_for(url: str) -> Headers:
    """Authorization headers of a user, from a session row written directly (no cookie, no argon2)."""
    tokens: dict[str, str] = {}

    def headers(name: str = "admin") -> dict[str, str]:
        if name not in tokens:
            tokens[name] = secrets.token_urlsafe(32)
            with psycopg.connect(url) as conn:
                conn.execute(
                    "INSERT INTO sessions (token_hash, user_id, expires_at)"
                    " SELECT %s, id, now() + interval '1 hour' FROM users WHERE username = %s",
                    (auth.token_hash(tokens[name]), name),
                )
        return {"Authorization": f"Bearer {tokens[name]}"}

    return headers


def gateway_settings(url: str) -> GatewaySettings:
    # No .env file: a developer's settings must not leak into tests.
    return GatewaySettings(_env_file=None, database_url=url, mqtt_url=None)  # type: ignore[call-arg]


@pytest.fixture
def seeded(db_url: str) -> str:
    """A fresh database of this test's own, seeded; for tests that change things."""
    seed(db_url)
    return db_url


@pytest.fixture
def client(seeded: str) -> Iterator[TestClient]:
    with TestClient(create_app(gateway_settings(seeded))) as c:
        yield c


@pytest.fixture
def as_user(seeded: str) -> Headers:
    return headers_for(seeded)


@pytest.fixture(scope="module")
def shared_db(pg_server: Postgres) -> Iterator[str]:
    """One seeded database for the read-only tests of a module; spk-xom-1 and cam-ubnd-1 are online."""
    name = clone_db(pg_server)
    url = pg_server.url(name)
    seed(url)
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE device_state SET state = 'online', since = %s, last_seen = %s, metrics = %s,"
            " reason = 'status received' WHERE device_id = 'spk-xom-1'",
            (LAST_SEEN, LAST_SEEN, Jsonb({"volume": 70, "playing": True})),
        )
        conn.execute(
            "UPDATE device_state SET state = 'online', last_seen = now() WHERE device_id = 'cam-ubnd-1'"
        )
    yield url
    drop_db(pg_server, name)


@pytest.fixture(scope="module")
def ro_client(shared_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(gateway_settings(shared_db))) as c:
        yield c


@pytest.fixture(scope="module")
def ro_user(shared_db: str) -> Headers:
    return headers_for(shared_db)
