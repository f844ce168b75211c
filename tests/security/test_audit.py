"""The audit log through the real gateway and database: one row per operator change, written in
the change's transaction; rows read only by admins of the communes they concern; parameters that
PostgreSQL cannot store (NUL, lone surrogates) and credentials in query strings."""

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import audit, auth, keys
from tests.share import world

A, B = "thoai-giang", "vong-the"
USERS = {
    "admin": ("admin", None),
    "admin-a": ("admin", [A]),
    "admin-b": ("admin", [B]),
    "tech": ("technician", None),
}


@pytest.fixture
def gw(db_url: str) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], psycopg.Connection]]:
    """The gateway on the two-commune world; headers per user and per key (key-a, key-b, key-all)."""
    headers: dict[str, dict[str, str]] = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        world.seed(conn)
        for name, (role, communes) in USERS.items():
            conn.execute(
                "INSERT INTO users (username, password_hash, role, communes) VALUES (%s, 'x', %s, %s)",
                (name, role, communes),
            )
            token = secrets.token_urlsafe(24)
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, expires_at) SELECT %s, id, now() + interval '1 hour'"
                " FROM users WHERE username = %s",
                (auth.token_hash(token), name),
            )
            headers[name] = {"Authorization": f"Bearer {token}"}
        for name, communes in (("key-a", [A]), ("key-b", [B]), ("key-all", None)):
            _, secret = keys.create(conn, name, communes, None, 600)
            headers[name] = {"Authorization": f"Bearer {secret}"}
        settings = GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None)  # type: ignore[call-arg]
        with TestClient(create_app(settings)) as client:
            yield client, headers, conn


def _open_alert(conn: psycopg.Connection, device_id: str) -> int:
    now = datetime.now(UTC)
    row = conn.execute(
        "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, since, opened_at)"
        " SELECT 'offline', id, commune_id, village_id, kind, 'critical', 'x', %s, %s FROM devices WHERE id = %s"
        " RETURNING id",
        (now, now, device_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _rows(conn: psycopg.Connection, where: str = "true", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cur = conn.execute(
        f"SELECT actor_kind, actor, action, params, status, communes FROM audit_log WHERE {where} ORDER BY id",  # noqa: S608
        args,
    )
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _user_rows(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return _rows(conn, "actor_kind = 'user'")


def test_each_operator_change_writes_exactly_one_audit_row(gw: Any) -> None:
    client, h, conn = gw
    alert_id = _open_alert(conn, "cam-ubnd-1")
    now = datetime.now(UTC)
    window = {
        "commune": A,
        "village": "tay-binh",
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "reason": "thay loa",
    }
    steps: list[tuple[str, str, str, dict[str, Any] | None, dict[str, Any]]] = [
        (
            "tech",
            "POST",
            f"/api/v1/alerts/{alert_id}/ack",
            {"comment": "đang xử lý"},
            {"comment": "đang xử lý"},
        ),
        ("tech", "POST", f"/api/v1/alerts/{alert_id}/assign", {"username": "tech"}, {"username": "tech"}),
        ("admin-a", "POST", f"/api/v1/alerts/{alert_id}/resolve", None, {"comment": None}),
        ("admin-a", "POST", "/api/v1/maintenance", window, {"reason": "thay loa", "village": "tay-binh"}),
        ("admin", "PUT", "/api/v1/alert-rules", {"rules": {"offline": {"for_s": 300}}}, {"version": 1}),
    ]
    for user, method, path, body, expected in steps:
        before = len(_user_rows(conn))
        r = client.request(method, path, json=body, headers=h[user])
        assert r.status_code in (200, 201), (path, r.text)
        rows = _user_rows(conn)
        assert len(rows) == before + 1, path
        row = rows[-1]
        assert (row["actor"], row["action"]) == (user, f"{method} {path}")
        assert row["params"].items() >= expected.items(), row["params"]
        if path.startswith("/api/v1/alerts/"):
            assert row["params"]["alert_id"] == alert_id and row["communes"] == [A]
        if path == "/api/v1/maintenance":
            window_id = row["params"]["window_id"]
            assert row["communes"] == [A] and row["status"] == 201
        if path == "/api/v1/alert-rules":
            assert row["communes"] is None  # deployment-wide
            assert row["params"]["rules"] == {"offline": {"for_s": 300}}
    r = client.delete(f"/api/v1/maintenance/{window_id}", headers=h["admin-a"])
    assert r.status_code == 204
    row = _user_rows(conn)[-1]
    assert row["action"] == f"DELETE /api/v1/maintenance/{window_id}" and row["actor"] == "admin-a"
    assert row["params"] == {"window_id": window_id} and row["communes"] == [A]
    # What changed nothing is not "done": a refused change leaves no row.
    n = len(_user_rows(conn))
    assert client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=h["tech"]).status_code == 409
    assert client.delete(f"/api/v1/maintenance/{window_id}", headers=h["admin"]).status_code == 404
    assert len(_user_rows(conn)) == n
    # And the admin reads them through the API.
    got = client.get("/api/v1/audit", params={"actor_kind": "user"}, headers=h["admin"]).json()["items"]
    assert [g["action"] for g in got][:2] == [
        f"DELETE /api/v1/maintenance/{window_id}",
        "PUT /api/v1/alert-rules",
    ]


def test_a_change_whose_audit_row_cannot_be_written_is_not_made(gw: Any) -> None:
    client, h, conn = gw
    alert_id = _open_alert(conn, "cam-ubnd-1")
    conn.execute("ALTER TABLE audit_log ADD CONSTRAINT no_acks CHECK (action NOT LIKE '%/ack') NOT VALID")
    with pytest.raises(psycopg.errors.CheckViolation):  # a 500 for the caller
        client.post(f"/api/v1/alerts/{alert_id}/ack", headers=h["tech"])
    state = conn.execute("SELECT state, acked_by FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    assert state == ("open", None)


def test_a_commune_admin_reads_only_the_audit_of_their_communes(gw: Any) -> None:
    client, h, conn = gw
    calls = [
        ("key-a", {}),
        ("key-b", {}),
        ("key-all", {}),  # every commune: deployment-wide
        ("key-all", {"commune": B}),  # narrowed to B: B's
        ("key-a", {"commune": B}),  # refused (403): shown to A's admins and B's
    ]
    for key, params in calls:
        client.get("/api/share/v1/status", params=params, headers=h[key])
    client.get("/api/share/v1/status", headers={"Authorization": "Bearer not-a-key"})
    alert_b = _open_alert(conn, "spk-vt-1")
    assert client.post(f"/api/v1/alerts/{alert_b}/ack", headers=h["tech"]).status_code == 200

    def seen(user: str) -> list[tuple[str, Any]]:
        r = client.get("/api/v1/audit", headers=h[user])
        assert r.status_code == 200, r.text
        return [(i["actor"], i["params"].get("commune")) for i in reversed(r.json()["items"])]

    assert seen("admin-a") == [("key-a", None), ("key-a", B)]
    assert seen("admin-b") == [("key-b", None), ("key-all", B), ("key-a", B), ("tech", None)]
    assert seen("admin") == [
        ("key-a", None),
        ("key-b", None),
        ("key-all", None),
        ("key-all", B),
        ("key-a", B),
        ("(no valid key)", None),
        ("tech", None),
    ]


def test_ngsi_entity_calls_are_the_commune_of_the_entity(gw: Any) -> None:
    client, h, conn = gw
    client.get(f"/ngsi-ld/v1/entities/urn:ngsi-ld:Device:{B}:spk-vt-1", headers=h["key-all"])
    (row,) = _rows(conn, "actor_kind = 'key'")
    assert row["communes"] == [B]


def test_a_nul_in_a_parameter_is_audited(gw: Any) -> None:
    client, h, conn = gw
    r = client.get("/ngsi-ld/v1/entities?type=Device&attrs=deviceState,location,%00", headers=h["key-a"])
    rows = _rows(conn, "actor_kind = 'key'")
    assert len(rows) == 1, f"answered {r.status_code} without an audit row"
    assert rows[0]["params"]["attrs"] == "deviceState,location,\\x00"
    assert rows[0]["status"] == r.status_code
    if r.status_code == 200:  # (refused as 400 before the route reads the key, it is "no valid key")
        assert rows[0]["actor"] == "key-a" and rows[0]["communes"] == [A]


def test_no_data_leaves_when_its_audit_row_cannot_be_written(gw: Any) -> None:
    client, h, conn = gw
    assert client.get("/api/share/v1/devices", headers=h["key-a"]).status_code == 200
    conn.execute(
        "ALTER TABLE audit_log ADD CONSTRAINT no_devices CHECK (action NOT LIKE '%/devices') NOT VALID"
    )
    r = client.get("/api/share/v1/devices", headers=h["key-a"])
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["error"]["code"] == "unavailable" and "cam-ubnd-1" not in r.text
    r = client.get("/api/share/v1/devices", headers=h["key-a"] | {"Accept": "text/csv"})
    assert r.status_code == 503 and "cam-ubnd-1" not in r.text
    r = client.get("/ngsi-ld/v1/entities?type=Device", headers=h["key-a"])
    assert r.status_code == 200  # other routes are still written
    conn.execute(
        "ALTER TABLE audit_log ADD CONSTRAINT no_entities CHECK (action NOT LIKE '%/entities') NOT VALID"
    )
    r = client.get("/ngsi-ld/v1/entities?type=Device", headers=h["key-a"])
    assert r.status_code == 503 and r.json()["status"] == 503 and "cam-ubnd-1" not in r.text


def test_credentials_in_query_strings_are_redacted(gw: Any) -> None:
    client, h, conn = gw
    secret_params = {
        n: f"s3cret-{n}" for n in ("token", "access_token", "key", "sig", "password", "auth", "secret")
    }
    client.get(
        "/api/share/v1/status",
        params={**secret_params, "Client-Secret": "x", "limit": "5"},
        headers=h["key-a"],
    )
    (row,) = _rows(conn, "actor_kind = 'key'")
    assert row["params"] == {
        **dict.fromkeys(secret_params, "[redacted]"),
        "Client-Secret": "[redacted]",
        "limit": "5",
    }
    assert "s3cret" not in str(row)


def test_record_stores_any_text(db_url: str) -> None:
    nasty = "a\x00b\ud800c\udfffd"
    with psycopg.connect(db_url) as conn:
        audit.record(
            conn,
            actor_kind="user",
            actor="x\x00y",
            action="GET /p\x00th",
            params={"k\x00": [nasty, {"password": nasty, "n": float("nan")}], "long": "x" * 5000},
            communes=["c\x00"],
        )
        row = conn.execute("SELECT actor, action, params, communes FROM audit_log").fetchone()
    assert row is not None
    actor, action, params, communes = row
    assert (actor, action, communes) == ("x\\x00y", "GET /p\\x00th", ["c\\x00"])
    assert params["k\\x00"] == ["a\\x00b\\ud800c\\udfffd", {"password": "[redacted]", "n": "nan"}]
    assert params["long"].startswith("x" * 2000) and params["long"].endswith("(+3000 characters)")
