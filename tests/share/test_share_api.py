"""The district API: scope, paging, CSV, ETag, the change log, history, availability, audit."""

import csv
import io
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from services import rollup
from tests.share import world
from tests.share.conftest import admin_token, hdr, make_key

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_devices_are_only_the_keys_communes_and_never_retired(client: TestClient, key_a: str) -> None:
    r = client.get("/api/share/v1/devices", headers=hdr(key_a))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["device_id"] for d in body["items"]] == world.A_DEVICES
    assert body["next_cursor"] is None
    cam = body["items"][0]
    assert cam == {
        "device_id": "cam-ubnd-1",
        "commune": "thoai-giang",
        "village": "trung-binh",
        "kind": "camera",
        "name": "Camera cổng UBND",
        "lat": 10.39,
        "lon": 105.33,
        "parent": "gw-trung-binh",
        "former_commune": None,  # added by the 2025 reform (issue 17); nothing else changed shape
    }


def test_missing_unknown_revoked_and_expired_keys_are_401(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    assert client.get("/api/share/v1/status").status_code == 401
    r = client.get("/api/share/v1/status", headers=hdr("ioc_not-a-real-key"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 s'")
    conn.commit()
    assert client.get("/api/share/v1/status", headers=hdr(key_a)).status_code == 401
    conn.execute("UPDATE api_keys SET expires_at = NULL, revoked_at = now()")
    conn.commit()
    r = client.get("/api/share/v1/status", headers=hdr(key_a))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


ROUTES = ["/devices", "/status", "/history", "/availability", "/alerts", "/changes"]


@pytest.mark.parametrize("route", ROUTES)
def test_no_share_route_reads_outside_the_key_scope(
    client: TestClient, conn: psycopg.Connection, key_a: str, route: str
) -> None:
    world.change(conn, "spk-vt-1", "online", T0)
    world.change(conn, "spk-trung-binh-1", "online", T0)
    world.sample(conn, "spk-vt-1", T0, {"volume": 5})
    world.sample(conn, "spk-trung-binh-1", T0, {"volume": 7})
    conn.execute(
        "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, since, opened_at)"
        " VALUES ('offline', 'spk-vt-1', 'vong-the', 'xom-1', 'speaker', 'critical', %s, %s),"
        "        ('offline', 'spk-trung-binh-1', 'thoai-giang', 'trung-binh', 'speaker', 'critical', %s, %s)",
        (T0, T0, T0, T0),
    )
    conn.commit()
    params = {"from": "2026-10-31T00:00:00Z", "to": "2026-11-02T00:00:00Z"}
    if route == "/availability":
        params["group_by"] = "device"
    if route not in ("/history", "/availability"):
        params = {}
    url = "/api/share/v1" + route
    r = client.get(url, headers=hdr(key_a), params=params)
    assert r.status_code == 200, r.text
    text = r.text
    assert "vong-the" not in text and "spk-vt-1" not in text and "cam-vt-1" not in text
    assert "spk-old" not in text
    # Asking for the other commune by filter is refused, not answered empty.
    r = client.get(url, headers=hdr(key_a), params={**params, "commune": "vong-the"})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"
    if route == "/history":
        assert client.get(url, headers=hdr(key_a), params={**params, "device": "spk-vt-1"}).status_code == 403
        assert client.get(url, headers=hdr(key_a), params={**params, "device": "spk-old"}).status_code == 404


def test_kinds_limit_what_a_key_sees(client: TestClient, conn: psycopg.Connection) -> None:
    key = make_key(conn, None, ["speaker"])
    r = client.get("/api/share/v1/status", headers=hdr(key))
    assert {d["kind"] for d in r.json()["items"]} == {"speaker"}
    assert client.get("/api/share/v1/status", headers=hdr(key), params={"kind": "camera"}).status_code == 403


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"bogus": "1"}, "bogus"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"cursor": "!!!not-a-cursor"}, "cursor"),
        ({"kind": "toaster"}, "kind"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "before"),
        ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "days"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_input_is_a_400_with_a_clear_message(
    client: TestClient, key_all: str, params: dict[str, str], needle: str
) -> None:
    r = client.get("/api/share/v1/history", headers=hdr(key_all), params=params)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_pages_follow_cursors_without_gaps_and_csv_has_the_same_rows(
    client: TestClient, key_all: str
) -> None:
    seen, cursor = [], None
    while True:
        r = client.get(
            "/api/share/v1/status",
            headers=hdr(key_all),
            params={"limit": 2, **({"cursor": cursor} if cursor else {})},
        )
        body = r.json()
        seen += [d["device_id"] for d in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(world.A_DEVICES + world.B_DEVICES)
    r = client.get("/api/share/v1/status", headers=hdr(key_all, Accept="text/csv"), params={"limit": 4})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["device_id"] for x in rows] == seen[:4]
    assert r.headers["x-next-cursor"]
    assert client.get("/api/share/v1/status?format=csv", headers=hdr(key_all)).text.startswith(
        "device_id,commune"
    )


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("text/csv", "text/csv"),
        ("text/csv, application/json;q=0.5", "text/csv"),  # a client that takes JSON too, less gladly
        ("application/json;q=0.5, text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("text/csv, application/json", "application/json"),  # a tie goes to JSON
        ("*/*", "application/json"),
        ("", "application/json"),
        ("application/xml", "application/json"),
    ],
)
def test_accept_q_values_choose_csv_or_json(
    client: TestClient, key_all: str, accept: str, media: str
) -> None:
    r = client.get("/api/share/v1/devices", headers=hdr(key_all, Accept=accept), params={"limit": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith(media), (accept, r.headers)


def test_status_and_devices_answer_304_while_nothing_changed(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    for route in ("/api/share/v1/status", "/api/share/v1/devices"):
        r = client.get(route, headers=hdr(key_a))
        tag = r.headers["etag"]
        again = client.get(route, headers=hdr(key_a, **{"If-None-Match": tag}))
        assert again.status_code == 304 and again.headers["etag"] == tag and again.content == b""
    world.change(conn, "cam-ubnd-1", "online", datetime.now(UTC))
    r = client.get("/api/share/v1/status", headers=hdr(key_a, **{"If-None-Match": tag}))
    assert r.status_code == 200


def test_changes_mirror_every_state_change_and_resume_exactly(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    r = client.get("/api/share/v1/changes", headers=hdr(key_a))
    empty = r.json()
    assert empty["items"] == [] and empty["next_cursor"]
    for i, state in enumerate(["online", "offline", "online"]):
        world.change(conn, "cam-ubnd-1", state, T0 + timedelta(minutes=i))
        world.change(conn, "spk-vt-1", state, T0 + timedelta(minutes=i))  # other commune: not shared
    got, cursor = [], empty["next_cursor"]
    for _ in range(5):
        body = client.get(
            "/api/share/v1/changes", headers=hdr(key_a), params={"cursor": cursor, "limit": 2}
        ).json()
        assert body["next_cursor"] is not None
        got += body["items"]
        cursor = body["next_cursor"]
    assert [(c["device_id"], c["prev_state"], c["state"]) for c in got] == [
        ("cam-ubnd-1", "unknown", "online"),
        ("cam-ubnd-1", "online", "offline"),
        ("cam-ubnd-1", "offline", "online"),
    ]
    assert [c["seq"] for c in got] == sorted(c["seq"] for c in got)
    assert got[0]["at"] == "2026-11-01T00:00:00+00:00"
    # Nothing new: the same cursor comes back; a new change is then the only item.
    body = client.get("/api/share/v1/changes", headers=hdr(key_a), params={"cursor": cursor}).json()
    assert body == {"items": [], "next_cursor": cursor}
    world.change(conn, "gw-trung-binh", "online", T0)
    body = client.get("/api/share/v1/changes", headers=hdr(key_a), params={"cursor": cursor}).json()
    assert [c["device_id"] for c in body["items"]] == ["gw-trung-binh"]


def test_raw_history_exports_every_sample_in_pages_as_json_and_csv(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    for i in range(5):
        for d in ("spk-trung-binh-1", "cam-ubnd-1", "spk-vt-1"):
            world.sample(conn, d, T0 + timedelta(minutes=i), {"volume": i, "note": 'a,"b"'})
    params = {"from": "2026-11-01T00:00:00+00:00", "to": "2026-11-01T01:00:00+00:00", "limit": 3}
    for fmt in ("json", "csv"):
        rows, cursor = [], None
        while True:
            r = client.get(
                "/api/share/v1/history",
                headers=hdr(key_a),
                params={**params, "format": fmt, **({"cursor": cursor} if cursor else {})},
            )
            assert r.status_code == 200, r.text
            if fmt == "json":
                rows += [(x["device_id"], x["ts"], x["metrics"]["volume"]) for x in r.json()["items"]]
                cursor = r.json()["next_cursor"]
            else:
                rows += [
                    (x["device_id"], x["ts"], int(__import__("json").loads(x["metrics"])["volume"]))
                    for x in csv.DictReader(io.StringIO(r.text))
                ]
                cursor = r.headers.get("x-next-cursor")
            if cursor is None:
                break
        assert len(rows) == 10 and len(set(rows)) == 10
        assert rows[0] == ("cam-ubnd-1", "2026-11-01T00:00:00.000000+00:00", 0)
        assert [(t, d) for d, t, _ in rows] == sorted((t, d) for d, t, _ in rows)
        assert {d for d, _, _ in rows} == {"cam-ubnd-1", "spk-trung-binh-1"}


def test_bucketed_history_needs_a_device(client: TestClient, conn: psycopg.Connection, key_a: str) -> None:
    world.change(conn, "spk-trung-binh-1", "online", T0)
    for i in range(4):
        world.sample(conn, "spk-trung-binh-1", T0 + timedelta(minutes=20 * i), {"volume": 10 * i})
    params = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T02:00:00Z", "bucket": "1h"}
    assert client.get("/api/share/v1/history", headers=hdr(key_a), params=params).status_code == 400
    r = client.get(
        "/api/share/v1/history", headers=hdr(key_a), params={**params, "device": "spk-trung-binh-1"}
    )
    items = r.json()["items"]
    assert [(b["n"], b["online_share"]) for b in items] == [(3, 1.0), (1, 1.0)]
    assert items[0]["metrics"]["volume"] == {"min": 0.0, "avg": 10.0, "max": 20.0}


def test_availability_by_village_with_devices_online_now(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=3)
    for d in world.A_DEVICES:
        world.change(conn, d, "online", start)
    world.change(conn, "spk-tay-binh-1", "offline", now - timedelta(hours=1))
    rollup.run(conn, now)
    params = {"from": start.isoformat(), "to": now.isoformat(), "group_by": "village"}
    r = client.get("/api/share/v1/availability", headers=hdr(key_a), params=params)
    assert r.status_code == 200, r.text
    rows = {x["village"]: x for x in r.json()["items"]}
    assert rows["tay-binh"]["availability_pct"] == pytest.approx(66.67, abs=0.02)
    assert (rows["trung-binh"]["devices"], rows["trung-binh"]["devices_online_now"]) == (3, 3)
    assert rows["trung-binh"]["by_kind"]["camera"] == {"devices": 1, "online_now": 1}
    r = client.get("/api/share/v1/availability", headers=hdr(key_a), params={**params, "group_by": "kind"})
    speakers = next(x for x in r.json()["items"] if x["kind"] == "speaker")
    assert (speakers["villages"], speakers["villages_all_online_now"]) == (2, 1)


def test_alerts_since_returns_alerts_in_scope(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    conn.execute(
        "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, since, opened_at,"
        " affected) VALUES ('offline', 'gw-trung-binh', 'thoai-giang', 'trung-binh', 'gateway',"
        " 'critical', %s, %s, '{cam-ubnd-1}'), ('offline', 'cam-ubnd-1', 'thoai-giang', 'trung-binh',"
        " 'camera', 'warning', %s, %s, '{}')",
        (T0, T0, T0 - timedelta(days=2), T0 - timedelta(days=2)),
    )
    conn.commit()
    r = client.get("/api/share/v1/alerts", headers=hdr(key_a), params={"since": "2026-10-31T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert [(a["device_id"], a["affected"]) for a in r.json()["items"]] == [("gw-trung-binh", ["cam-ubnd-1"])]


def test_an_alerts_affected_devices_outside_the_key_are_left_out(
    client: TestClient, conn: psycopg.Connection, key_a: str, key_all: str
) -> None:
    # A parent may serve another commune's devices (a shared uplink): key_a sees the parent's
    # alert, never the ids of vong-the's devices under it.
    conn.execute(
        "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, since, opened_at,"
        " affected) VALUES ('offline', 'gw-trung-binh', 'thoai-giang', 'trung-binh', 'gateway',"
        " 'critical', %s, %s, '{cam-ubnd-1,spk-vt-1,cam-vt-1,spk-trung-binh-1}')",
        (T0, T0),
    )
    conn.commit()
    r = client.get("/api/share/v1/alerts", headers=hdr(key_a))
    assert [a["affected"] for a in r.json()["items"]] == [["cam-ubnd-1", "spk-trung-binh-1"]]
    csv = client.get("/api/share/v1/alerts", headers=hdr(key_a), params={"format": "csv"}).text
    assert "vt-1" not in csv
    r = client.get("/api/share/v1/alerts", headers=hdr(key_all))
    assert [a["affected"] for a in r.json()["items"]] == [
        ["cam-ubnd-1", "spk-vt-1", "cam-vt-1", "spk-trung-binh-1"]
    ]


def test_rate_limit_is_counted_in_the_database_and_answers_429(
    client: TestClient, conn: psycopg.Connection, db_url: str
) -> None:
    key = make_key(conn, None, rate=3)
    codes = [client.get("/api/share/v1/devices", headers=hdr(key)).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    # A second gateway on the same database shares the count.
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    other = GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None)  # type: ignore[call-arg]
    with TestClient(create_app(other)) as second:
        r = second.get("/api/share/v1/devices", headers=hdr(key))
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["code"] == "rate_limited"


def test_every_call_is_audited_and_admins_can_read_it(client: TestClient, key_a: str) -> None:
    client.get("/api/share/v1/status", headers=hdr(key_a), params={"kind": "speaker"})
    client.get("/api/share/v1/status", headers=hdr(key_a), params={"commune": "vong-the"})
    client.get("/api/share/v1/status", headers=hdr("ioc_wrong"))
    token = admin_token(client)
    r = client.get("/api/v1/audit", headers=hdr(token), params={"actor_kind": "key", "limit": 2})
    assert r.status_code == 200, r.text
    page1 = r.json()
    page2 = client.get(
        "/api/v1/audit",
        headers=hdr(token),
        params={"actor_kind": "key", "limit": 2, "cursor": page1["next_cursor"]},
    ).json()
    entries = page1["items"] + page2["items"]
    assert [(e["actor"], e["status"], e["rows"]) for e in entries] == [
        ("(no valid key)", 401, None),
        ("huyen-thoai-son", 403, None),
        ("huyen-thoai-son", 200, 2),
    ]
    assert entries[2]["action"] == "GET /api/share/v1/status"
    assert entries[2]["params"] == {"kind": "speaker"}
    assert entries[2]["key_id"] is not None and entries[2]["at"]
    # Operators who are not admins may not read it; keys may not either.
    op = client.post("/api/v1/auth/login", json={"username": "op", "password": "correct-horse-1"}).json()[
        "token"
    ]
    assert client.get("/api/v1/audit", headers=hdr(op)).status_code == 403
    assert client.get("/api/v1/audit", headers=hdr(key_a)).status_code == 401


def test_operator_availability_report_keeps_to_the_users_communes(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for d in world.A_DEVICES + world.B_DEVICES:
        world.change(conn, d, "online", now - timedelta(hours=2))
    op = client.post("/api/v1/auth/login", json={"username": "op", "password": "correct-horse-1"}).json()[
        "token"
    ]
    r = client.get("/api/v1/reports/availability", headers=hdr(op), params={"group_by": "kind"})
    assert r.status_code == 200, r.text
    assert {x["commune"] for x in r.json()["items"]} == {"thoai-giang"}
    assert all(x["availability_pct"] == 100.0 for x in r.json()["items"])
    assert (
        client.get(
            "/api/v1/reports/availability", headers=hdr(op), params={"commune": "vong-the"}
        ).status_code
        == 403
    )
    # The operator's CSV is a sheet for people (tests/gateway/test_report_csv.py); the province's
    # keeps its machine columns, without a BOM.
    r = client.get("/api/v1/reports/availability", headers=hdr(admin_token(client)), params={"format": "csv"})
    assert r.content.startswith(b"\xef\xbb\xbf") and r.text.lstrip("\ufeff").startswith("Xã,")
    assert len(r.text.splitlines()) == 4  # header + 3 villages
    r = client.get("/api/share/v1/availability", headers=hdr(key_a), params={"format": "csv"})
    assert not r.content.startswith(b"\xef\xbb\xbf")
    assert r.text.splitlines()[0].startswith("commune,device_id,village,kind,availability_pct")
