"""The gateway in-process (TestClient, lifespan included) on a fresh database with a small registry."""

from collections.abc import Callable, Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import auth, registry, registry_file
from services.vault import Vault

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


@pytest.fixture
def settings(db_url: str) -> GatewaySettings:
    # No .env file: a developer's settings must not leak into tests.
    return GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None)  # type: ignore[call-arg]


@pytest.fixture
def seeded(db_url: str) -> str:
    """Two communes, seven devices, three users (password PASSWORD)."""
    vault = Vault("test-secret-key-0123456789")
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(THOAI_GIANG), vault)
        registry.import_registry(conn, registry_file.parse_yaml(LONG_THANH), vault)
        for name, (role, communes) in USERS.items():
            auth.add_user(conn, name, PASSWORD, role, communes)
    return db_url


@pytest.fixture
def client(settings: GatewaySettings, seeded: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def as_user(seeded: str) -> Callable[[str], dict[str, str]]:
    """Authorization headers of a signed-in user (session opened directly, so no cookie is kept)."""
    tokens: dict[str, str] = {}

    def headers(name: str = "admin") -> dict[str, str]:
        if name not in tokens:
            with psycopg.connect(seeded) as conn:
                tokens[name], _ = auth.login(conn, name, PASSWORD)
        return {"Authorization": f"Bearer {tokens[name]}"}

    return headers
