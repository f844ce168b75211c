"""The operators' alert API through the real gateway app: list, ack, resolve, assign, stats,
rule settings, maintenance windows; roles and the live feed."""

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import auth
from tests.alerts.conftest import (
    Receiver,
    alerts,
    all_online,
    base_config,
    load_registry,
    query,
    write_config,
)

ROLES = {
    "admin": ("admin", None),
    "op": ("operator", None),
    "tech": ("technician", None),
    "viewer": ("viewer", None),
    "op-other": ("operator", ["long-thanh"]),
}


def _open_alert(url: str, device_id: str, rule: str = "offline", opened_ago_s: float = 600) -> int:
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        dev = conn.execute(
            "SELECT commune_id, village_id, kind FROM devices WHERE id = %s", (device_id,)
        ).fetchone()
        assert dev is not None
        row = conn.execute(
            "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, since, opened_at,"
            " notified_at) VALUES (%s, %s, %s, %s, %s, 'critical', 'x', %s, %s, %s) RETURNING id",
            (
                rule,
                device_id,
                *dev,
                now - timedelta(seconds=opened_ago_s),
                now - timedelta(seconds=opened_ago_s),
                now,
            ),
        ).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def api(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], str]]:
    load_registry(db_url)
    all_online(db_url)
    headers = {}
    with psycopg.connect(db_url) as conn:
        for name, (role, communes) in ROLES.items():
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
    cfg = write_config(tmp_path, base_config(receiver))
    settings = GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None, alerts_file=cfg)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        yield client, headers, db_url


def test_list_ack_assign_resolve_with_roles_and_feed(api: tuple[TestClient, dict[str, Any], str]) -> None:
    client, h, url = api
    a1 = _open_alert(url, "spk-tay-binh-1")
    a2 = _open_alert(url, "gw-trung-binh")
    page = client.get("/api/v1/alerts?state=open&limit=1", headers=h["viewer"]).json()
    assert [i["id"] for i in page["items"]] == [a2] and page["next_cursor"]
    rest = client.get(
        f"/api/v1/alerts?state=open&limit=1&cursor={page['next_cursor']}", headers=h["viewer"]
    ).json()
    assert [i["id"] for i in rest["items"]] == [a1] and rest["next_cursor"] is None
    row = rest["items"][0]
    assert {
        k: row[k] for k in ("rule", "device_id", "commune", "village", "severity", "state", "affected")
    } == {
        "rule": "offline",
        "device_id": "spk-tay-binh-1",
        "commune": "thoai-giang",
        "village": "tay-binh",
        "severity": "critical",
        "state": "open",
        "affected": [],
    }
    assert client.post(f"/api/v1/alerts/{a1}/ack", headers=h["viewer"]).status_code == 403
    r = client.post(f"/api/v1/alerts/{a1}/ack", json={"comment": "đang xử lý"}, headers=h["tech"])
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["acked_by"], r.json()["comment"]) == ("acked", "tech", "đang xử lý")
    assert client.post(f"/api/v1/alerts/{a1}/ack", headers=h["tech"]).status_code == 409
    r = client.post(f"/api/v1/alerts/{a1}/assign", json={"username": "tech"}, headers=h["op"])
    assert r.status_code == 200 and r.json()["assignee"] == "tech"
    assert (
        client.post(f"/api/v1/alerts/{a1}/assign", json={"username": "nobody"}, headers=h["op"]).status_code
        == 400
    )
    r = client.post(f"/api/v1/alerts/{a1}/resolve", headers=h["tech"])
    assert r.status_code == 200 and r.json()["state"] == "resolved" and r.json()["resolved_by"] == "tech"
    assert client.get("/api/v1/alerts?state=acked", headers=h["viewer"]).json()["items"] == []
    assert [
        i["id"] for i in client.get("/api/v1/alerts?state=resolved", headers=h["op"]).json()["items"]
    ] == [a1]
    # A user of another commune neither sees nor touches it.
    assert client.get("/api/v1/alerts", headers=h["op-other"]).json()["items"] == []
    assert client.post(f"/api/v1/alerts/{a2}/ack", headers=h["op-other"]).status_code == 404
    one = client.get(f"/api/v1/alerts/{a1}", headers=h["viewer"]).json()
    assert [x["action"] for x in one["history"]] == ["acked", "assigned", "resolved"]
    feed = [
        i
        for (items,) in query(url, "SELECT items FROM feed ORDER BY seq_first")
        for i in items
        if i["type"] == "alert"
    ]
    assert [(i["id"], i["state"]) for i in feed] == [(a1, "acked"), (a1, "acked"), (a1, "resolved")]
    assert client.get("/api/v1/alerts", headers={}).status_code == 401


def test_an_alert_is_assigned_only_to_someone_who_may_act_on_it(
    api: tuple[TestClient, dict[str, Any], str],
) -> None:
    client, h, url = api
    a = _open_alert(url, "spk-tay-binh-1")  # Thoại Giang

    def assign(username: str) -> tuple[int, str]:
        r = client.post(f"/api/v1/alerts/{a}/assign", json={"username": username}, headers=h["admin"])
        return r.status_code, r.json().get("error", {}).get("message", "")

    assert assign("viewer") == (400, "viewer is a viewer and cannot acknowledge or resolve alerts")
    assert assign("op-other") == (400, "op-other does not see commune thoai-giang")
    assert query(url, "SELECT assignee FROM alerts WHERE id = %s", (a,)) == [(None,)]
    assert assign("tech") == (200, "")
    assert query(url, "SELECT assignee FROM alerts WHERE id = %s", (a,)) == [("tech",)]


def test_stats_give_mtta_and_mttr_per_village_and_kind(api: tuple[TestClient, dict[str, Any], str]) -> None:
    client, h, url = api
    a1 = _open_alert(url, "spk-tay-binh-1", opened_ago_s=600)
    _open_alert(url, "eb-tay-binh", opened_ago_s=100)
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE alerts SET state = 'resolved', acked_at = opened_at + interval '60 seconds',"
            " resolved_at = opened_at + interval '300 seconds' WHERE id = %s",
            (a1,),
        )
    items = client.get("/api/v1/alerts/stats?group_by=village,kind", headers=h["viewer"]).json()["items"]
    by = {(i["village"], i["kind"]): i for i in items}
    assert by[("tay-binh", "speaker")]["mtta_s"] == 60.0 and by[("tay-binh", "speaker")]["mttr_s"] == 300.0
    assert by[("tay-binh", "eboard")]["alerts"] == 1 and by[("tay-binh", "eboard")]["mttr_s"] is None
    assert client.get("/api/v1/alerts/stats?group_by=nonsense", headers=h["viewer"]).status_code == 400


def test_admins_edit_rules_and_add_threshold_rules(api: tuple[TestClient, dict[str, Any], str]) -> None:
    client, h, url = api
    got = client.get("/api/v1/alert-rules", headers=h["viewer"]).json()
    assert got["rules"]["offline"]["for_s"] == 1  # from the file
    assert got["rules"]["speaker_battery_low"]["threshold"] == 20  # built-in default
    assert got["channels"] == ["ops"] and "json://" not in str(got)
    body = {
        "rules": {
            "speaker_battery_low": {
                "threshold": 30,
                "for_s": 60,
                "overrides": [{"match": {"village": "tay-binh"}, "threshold": 40}],
            },
            "gateway_cpu": {"metric": "cpu_pct", "op": ">", "threshold": 90, "kinds": ["gateway"]},
        }
    }
    assert client.put("/api/v1/alert-rules", json=body, headers=h["op"]).status_code == 403
    r = client.put("/api/v1/alert-rules", json=body, headers=h["admin"])
    assert r.status_code == 200
    rules = r.json()["rules"]
    assert rules["speaker_battery_low"]["threshold"] == 30 and rules["offline"]["for_s"] == 1
    assert rules["gateway_cpu"]["metric"] == "cpu_pct" and rules["gateway_cpu"]["severity"] == "warning"
    assert client.get("/api/v1/alert-rules", headers=h["viewer"]).json()["version"] == 1
    bad = client.put(
        "/api/v1/alert-rules",
        json={"rules": {"offline": {"for_s": -5}, "x_rule": {"for_s": 1}}},
        headers=h["admin"],
    )
    assert bad.status_code == 422
    assert "rules.offline.for_s" in bad.json()["error"]["message"]
    assert "needs metric" in bad.json()["error"]["message"]


def test_maintenance_windows_api(api: tuple[TestClient, dict[str, Any], str]) -> None:
    client, h, url = api
    now = datetime.now(UTC)
    body = {
        "commune": "thoai-giang",
        "village": "tay-binh",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "reason": "thay loa",
    }
    assert client.post("/api/v1/maintenance", json=body, headers=h["op"]).status_code == 403
    r = client.post("/api/v1/maintenance", json=body, headers=h["admin"])
    assert r.status_code == 201 and r.json()["active"] is True and r.json()["village"] == "tay-binh"
    weekly = {
        "device_id": "cam-ubnd-1",
        "starts_at": "2026-01-06T01:00:00+07:00",
        "ends_at": "2026-01-06T03:00:00+07:00",
        "rrule": "FREQ=WEEKLY;BYDAY=TU",
        "reason": "vệ sinh camera",
    }
    r2 = client.post("/api/v1/maintenance", json=weekly, headers=h["admin"])
    assert r2.status_code == 201 and r2.json()["commune"] == "thoai-giang"
    bad = client.post("/api/v1/maintenance", json={**weekly, "rrule": "FREQ=NEVER"}, headers=h["admin"])
    assert bad.status_code == 400 and "rrule" in bad.json()["error"]["message"]
    listed = client.get("/api/v1/maintenance", headers=h["viewer"]).json()
    assert [w["id"] for w in listed["items"]] == [r.json()["id"], r2.json()["id"]] and listed[
        "next_cursor"
    ] is None
    from services.maintenance import devices_in_maintenance

    with psycopg.connect(url) as conn:
        assert devices_in_maintenance(conn, now) == {"spk-tay-binh-1", "eb-tay-binh"}
    assert client.delete(f"/api/v1/maintenance/{r.json()['id']}", headers=h["admin"]).status_code == 204
    assert client.delete(f"/api/v1/maintenance/{r.json()['id']}", headers=h["admin"]).status_code == 404
    assert [w["id"] for w in client.get("/api/v1/maintenance", headers=h["viewer"]).json()["items"]] == [
        r2.json()["id"]
    ]
    assert alerts(url) == []
