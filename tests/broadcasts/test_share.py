"""The broadcast log shared with the province: `GET /api/share/v1/broadcasts`, in the key's scope."""

import csv
import io
from datetime import UTC, datetime

import psycopg
from fastapi.testclient import TestClient

from services import keys
from services.broadcasts import delivery
from tests.broadcasts.conftest import SECRET
from tests.gateway.conftest import Headers


def key(url: str, communes: list[str] | None) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        _, secret = keys.create(conn, "tinh", communes, None, 600)
    return {"Authorization": f"Bearer {secret}"}


def test_the_log_lists_broadcasts_of_the_keys_communes_with_their_reach(
    client: TestClient, as_user: Headers, seeded: str
) -> None:
    for commune in ("thoai-giang", "long-thanh"):
        body = {
            "title": f"Thông báo {commune}",
            "text": "Họp dân 19h",
            "priority": "emergency",
            "targets": {"communes": [commune]},
            "risk_level": 2,
        }
        assert client.post("/api/v1/broadcasts", json=body, headers=as_user()).status_code == 201
    huyen = key(seeded, ["thoai-giang"])
    r = client.get("/api/share/v1/broadcasts", headers=huyen)
    assert r.status_code == 200, r.text
    (row,) = r.json()["items"]
    assert row["title"] == "Thông báo thoai-giang" and row["created_by"] == "admin" and row["risk_level"] == 2
    assert (row["villages_targeted"], row["villages_reached"], row["devices_done"]) == (2, 0, 0)
    assert r.json()["next_cursor"] is None
    assert len(client.get("/api/share/v1/broadcasts", headers=key(seeded, None)).json()["items"]) == 2
    assert client.get("/api/share/v1/broadcasts?commune=long-thanh", headers=huyen).status_code == 403
    assert client.get("/api/share/v1/broadcasts", headers=as_user()).status_code == 401


def test_the_log_pages_and_exports_csv_with_formulas_neutralised(
    client: TestClient, as_user: Headers, seeded: str
) -> None:
    for title in ("=HYPERLINK(1)", "b", "c"):
        body = {"title": title, "text": "x", "priority": "emergency", "targets": {"villages": ["xom-1"]}}
        assert client.post("/api/v1/broadcasts", json=body, headers=as_user()).status_code == 201
    k = key(seeded, None)
    first = client.get("/api/share/v1/broadcasts?limit=2", headers=k).json()
    second = client.get(f"/api/share/v1/broadcasts?limit=2&cursor={first['next_cursor']}", headers=k).json()
    assert [i["title"] for i in first["items"] + second["items"]] == ["=HYPERLINK(1)", "b", "c"]
    r = client.get("/api/share/v1/broadcasts?format=csv", headers=k)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["title"] != "=HYPERLINK(1)" and "HYPERLINK" in rows[0]["title"]
    assert list(rows[0]) == [
        "id",
        "title",
        "priority",
        "risk_level",
        "created_at",
        "created_by",
        "approved_by",
        "starts_at",
        "state",
        "villages_targeted",
        "villages_reached",
        "devices_targeted",
        "devices_done",
    ]  # SPEC §9's columns exactly; the JSON items add channels_targeted and channels_sent


def test_a_broadcast_to_two_communes_is_counted_in_the_keys_communes_only(
    client: TestClient, as_user: Headers, seeded: str
) -> None:
    body = {
        "title": "Cảnh báo lũ",
        "text": "Sơ tán",
        "priority": "emergency",
        "targets": {"communes": ["thoai-giang", "long-thanh"]},
    }
    r = client.post("/api/v1/broadcasts", json=body, headers=as_user())
    assert r.status_code == 201, r.text
    with psycopg.connect(seeded) as conn:
        delivery.tick(conn, datetime.now(UTC), "Asia/Ho_Chi_Minh", "http://ioc.test", SECRET)
        conn.commit()
        asked = conn.execute("SELECT targets->'villages_resolved' FROM broadcasts").fetchone()[0]  # type: ignore[index]
        devices = dict(
            conn.execute("SELECT commune_id, count(*) FROM deliveries GROUP BY commune_id").fetchall()
        )
    per_commune = {c: sum(1 for t in asked if t.startswith(f"{c}/")) for c in ("thoai-giang", "long-thanh")}
    assert min(per_commune.values()) > 0 and devices.get("thoai-giang", 0) > 0
    everyone = client.get("/api/share/v1/broadcasts", headers=key(seeded, None)).json()["items"][0]
    assert (everyone["villages_targeted"], everyone["devices_targeted"]) == (
        len(asked),
        sum(devices.values()),
    )
    for commune in ("thoai-giang", "long-thanh"):
        for k, q in ((key(seeded, [commune]), ""), (key(seeded, None), f"?commune={commune}")):
            row = client.get(f"/api/share/v1/broadcasts{q}", headers=k).json()["items"][0]
            assert (row["villages_targeted"], row["devices_targeted"]) == (
                per_commune[commune],
                devices.get(commune, 0),
            )
