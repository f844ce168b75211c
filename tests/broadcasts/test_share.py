"""The broadcast log shared with the province: `GET /api/share/v1/broadcasts`, in the key's scope."""

import csv
import io
from datetime import UTC, datetime, timedelta

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


def test_the_log_is_the_last_24_hours_unless_from_and_to_say_otherwise(
    client: TestClient, as_user: Headers, seeded: str
) -> None:
    for title in ("ba ngày trước", "hôm nay"):
        body = {"title": title, "text": "x", "priority": "normal", "targets": {"villages": ["xom-1"]}}
        assert client.post("/api/v1/broadcasts", json=body, headers=as_user()).status_code == 201
    with psycopg.connect(seeded) as conn:
        conn.execute(
            "UPDATE broadcasts SET created_at = created_at - interval '3 days' WHERE title = 'ba ngày trước'"
        )
    k = key(seeded, None)

    def titles(q: str) -> list[str]:
        r = client.get(f"/api/share/v1/broadcasts{q}", headers=k)
        assert r.status_code == 200, r.text
        return [i["title"] for i in r.json()["items"]]

    now = datetime.now(UTC)
    day = timedelta(days=1)
    assert titles("") == ["hôm nay"]  # default: the last 24 h
    assert titles(f"?from={(now - 4 * day).isoformat()}".replace("+", "%2B")) == ["ba ngày trước", "hôm nay"]
    assert titles(f"?from={(now - 4 * day):%Y-%m-%d}&to={(now - 2 * day):%Y-%m-%d}") == ["ba ngày trước"]
    assert titles(f"?from={(now - 2 * day):%Y-%m-%d}&to={(now - day):%Y-%m-%d}") == []
    for bad in ("?from=hôm-qua", f"?from={now:%Y-%m-%d}&to={(now - day):%Y-%m-%d}", "?from=1800-01-01"):
        r = client.get(f"/api/share/v1/broadcasts{bad}", headers=k)
        assert r.status_code == 400, (bad, r.status_code, r.text)
