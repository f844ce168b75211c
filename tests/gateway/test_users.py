"""GET /api/v1/users: the assign picker's list — who may ask, whom they see, pages, nothing secret."""

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.gateway.conftest import Headers, password_hash

# Besides the seeded admin (every commune), op-tg (operator, Thoại Giang) and viewer (every commune).
MORE = {
    "tech-tg": ("technician", ["thoai-giang"]),
    "tech-lt": ("technician", ["long-thanh"]),
    "tech-both": ("technician", ["long-thanh", "thoai-giang"]),
    "tech-empty": ("technician", []),
    "tech-gone": ("technician", None),
}


@pytest.fixture
def users(seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        for name, (role, communes) in MORE.items():
            conn.execute(
                "INSERT INTO users (username, password_hash, role, communes) VALUES (%s, %s, %s, %s)",
                (name, password_hash(), role, communes),
            )
        conn.execute("UPDATE users SET disabled_at = now() WHERE username = 'tech-gone'")


@pytest.mark.usefixtures("users")
def test_admin_lists_every_active_user_with_role_and_communes_only(
    client: TestClient, as_user: Headers
) -> None:
    r = client.get("/api/v1/users", headers=as_user("admin"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    assert body["items"] == [
        {"username": "admin", "role": "admin", "communes": None},
        {"username": "op-tg", "role": "operator", "communes": ["thoai-giang"]},
        {"username": "tech-both", "role": "technician", "communes": ["long-thanh", "thoai-giang"]},
        # An empty list means every commune, as at sign-in.
        {"username": "tech-empty", "role": "technician", "communes": None},
        {"username": "tech-lt", "role": "technician", "communes": ["long-thanh"]},
        {"username": "tech-tg", "role": "technician", "communes": ["thoai-giang"]},
        {"username": "viewer", "role": "viewer", "communes": None},
    ]
    assert "argon2" not in r.text and "hash" not in r.text


@pytest.mark.usefixtures("users")
@pytest.mark.parametrize("who", ["op-tg", "tech-tg"])
def test_a_user_limited_to_a_commune_sees_those_sharing_it_or_having_all(
    client: TestClient, as_user: Headers, who: str
) -> None:
    r = client.get("/api/v1/users", headers=as_user(who))
    assert r.status_code == 200, r.text
    assert [u["username"] for u in r.json()["items"]] == [
        "admin",
        "op-tg",
        "tech-both",
        "tech-empty",
        "tech-tg",
        "viewer",
    ]


@pytest.mark.usefixtures("users")
def test_only_the_roles_that_may_assign_alerts_may_list_users(client: TestClient, as_user: Headers) -> None:
    assert client.get("/api/v1/users").status_code == 401
    r = client.get("/api/v1/users", headers={"Authorization": "Bearer not-a-session"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = client.get("/api/v1/users", headers=as_user("viewer"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.get("/api/v1/users", headers=as_user("tech-lt")).status_code == 200


@pytest.mark.usefixtures("users")
def test_pages_never_skip_or_repeat_a_user(client: TestClient, as_user: Headers) -> None:
    everyone = [u["username"] for u in client.get("/api/v1/users", headers=as_user()).json()["items"]]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/users", params=params, headers=as_user()).json()
        assert len(body["items"]) <= 2
        seen += [u["username"] for u in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == everyone and pages == 4
    for bad in ({"limit": 0}, {"limit": 10001}, {"cursor": "not-a-cursor"}):
        r = client.get("/api/v1/users", params=bad, headers=as_user())
        assert r.status_code == 400 and r.json()["error"]["message"], bad
