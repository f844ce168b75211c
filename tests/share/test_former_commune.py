"""Former communes (the 2025 reform): a village's `former_commune` comes with its devices and status
rows, filters the device, status and share lists, and groups the availability report."""

from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from services import registry, registry_file
from tests.share import world
from tests.share.conftest import admin_token, hdr

T0 = datetime(2026, 11, 1, tzinfo=UTC)
REFORMED = world.COMMUNE_A.replace(
    '{id: trung-binh, name: "Ấp Trung Bình"}',
    '{id: trung-binh, name: "Ấp Trung Bình", former_commune: "Xã Thoại Giang"}',
).replace(
    '{id: tay-binh, name: "Ấp Tây Bình"}',
    '{id: tay-binh, name: "Ấp Tây Bình", former_commune: "Xã Bình Thành"}',
)


def reform(conn: psycopg.Connection) -> None:
    registry.import_registry(conn, registry_file.parse_yaml(REFORMED, profiles_dir=None), None)
    registry.retire(conn, "spk-old")  # the import names it again; it stays retired
    conn.commit()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_share_rows_carry_the_former_commune_and_only_gain_that_field(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    before = client.get("/api/share/v1/devices", headers=hdr(key_a)).json()["items"]
    reform(conn)
    after = client.get("/api/share/v1/devices", headers=hdr(key_a)).json()["items"]
    assert [{k: v for k, v in d.items() if k != "former_commune"} for d in after] == [
        {k: v for k, v in d.items() if k != "former_commune"} for d in before
    ]
    assert {d["device_id"]: d["former_commune"] for d in after} == {
        "cam-ubnd-1": "Xã Thoại Giang",
        "gw-trung-binh": "Xã Thoại Giang",
        "spk-tay-binh-1": "Xã Bình Thành",
        "spk-trung-binh-1": "Xã Thoại Giang",
    }
    status = client.get("/api/share/v1/status", headers=hdr(key_a)).json()["items"]
    assert {s["device_id"]: s["former_commune"] for s in status}["spk-tay-binh-1"] == "Xã Bình Thành"
    csv = client.get("/api/share/v1/devices?format=csv", headers=hdr(key_a)).text.splitlines()
    assert csv[0] == "device_id,commune,village,kind,name,lat,lon,parent,former_commune"


def test_the_share_lists_filter_by_former_commune(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    reform(conn)
    for path in ("/api/share/v1/devices", "/api/share/v1/status"):
        r = client.get(path, params={"former_commune": "Xã Bình Thành"}, headers=hdr(key_a))
        assert r.status_code == 200, r.text
        assert [d["device_id"] for d in r.json()["items"]] == ["spk-tay-binh-1"]
        r = client.get(path, params={"former_commune": "Xã Vọng Đông"}, headers=hdr(key_a))
        assert r.json()["items"] == []
    world.change(conn, "spk-tay-binh-1", "online", T0)
    world.change(conn, "spk-trung-binh-1", "online", T0)
    r = client.get("/api/share/v1/changes", params={"former_commune": "Xã Thoại Giang"}, headers=hdr(key_a))
    assert [c["device_id"] for c in r.json()["items"]] == ["spk-trung-binh-1"]


def test_operator_lists_and_the_device_page_carry_and_filter_former_commune(
    client: TestClient, conn: psycopg.Connection
) -> None:
    reform(conn)
    h = bearer(admin_token(client))
    dev = client.get("/api/v1/devices/spk-tay-binh-1", headers=h).json()
    assert dev["former_commune"] == "Xã Bình Thành"
    r = client.get("/api/v1/devices", params={"former_commune": "Xã Bình Thành"}, headers=h)
    assert [d["id"] for d in r.json()["items"]] == ["spk-tay-binh-1"]
    r = client.get(
        "/api/v1/status", params={"former_commune": "Xã Thoại Giang", "kind": "speaker"}, headers=h
    )
    assert [(s["device_id"], s["former_commune"]) for s in r.json()["items"]] == [
        ("spk-trung-binh-1", "Xã Thoại Giang")
    ]
    # the other commune has no former communes recorded
    r = client.get("/api/v1/status", params={"commune": "vong-the"}, headers=h)
    assert {s["former_commune"] for s in r.json()["items"]} == {None}
    assert client.get("/api/v1/devices", params={"former_commune": "x" * 201}, headers=h).status_code == 400


def test_the_availability_report_groups_by_former_commune(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    reform(conn)
    token = admin_token(client)
    for d in world.A_DEVICES:
        world.change(conn, d, "online", T0)
    world.change(conn, "spk-tay-binh-1", "offline", T0 + timedelta(hours=12))
    q = {"from": T0.isoformat(), "to": (T0 + timedelta(days=1)).isoformat(), "group_by": "former_commune"}
    r = client.get(
        "/api/v1/reports/availability", params={**q, "commune": "thoai-giang"}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    rows = {row["former_commune"]: row for row in r.json()["items"]}
    assert set(rows) == {"Xã Bình Thành", "Xã Thoại Giang"}
    assert rows["Xã Bình Thành"]["availability_pct"] == 50.0 and rows["Xã Bình Thành"]["devices"] == 1
    assert rows["Xã Thoại Giang"]["availability_pct"] == 100.0 and rows["Xã Thoại Giang"]["devices"] == 3
    assert rows["Xã Thoại Giang"]["villages"] == 1 and rows["Xã Thoại Giang"]["by_kind"]["camera"] == {
        "devices": 1,
        "online_now": 1,
    }
    # the province gets the same grouping
    r = client.get("/api/share/v1/availability", params=q, headers=hdr(key_a))
    assert sorted(row["former_commune"] for row in r.json()["items"]) == ["Xã Bình Thành", "Xã Thoại Giang"]
    # and a commune without former communes is one group with none
    r = client.get("/api/v1/reports/availability", params={**q, "commune": "vong-the"}, headers=bearer(token))
    assert [row["former_commune"] for row in r.json()["items"]] == [None]


def test_a_csv_registry_adds_a_former_commune_and_a_yaml_one_states_it_in_full(
    conn: psycopg.Connection,
) -> None:
    reform(conn)
    csv = "commune,id,kind,village,former_commune\nvong-the,spk-vt-1,speaker,xom-1,Xã Vọng Thê cũ\n"
    registry.import_registry(
        conn, registry_file.parse_csv(csv, profiles_dir=None), None, names_authoritative=False
    )
    conn.commit()

    def former() -> dict[str, str | None]:
        return dict(conn.execute("SELECT id, former_commune FROM villages ORDER BY id").fetchall())

    assert former() == {
        "tay-binh": "Xã Bình Thành",
        "trung-binh": "Xã Thoại Giang",
        "xom-1": "Xã Vọng Thê cũ",
    }
    # a CSV row without it keeps what the village has
    csv = "commune,id,kind,village\nthoai-giang,spk-tay-binh-1,speaker,tay-binh\n"
    registry.import_registry(
        conn, registry_file.parse_csv(csv, profiles_dir=None), None, names_authoritative=False
    )
    assert former()["tay-binh"] == "Xã Bình Thành"
    # the YAML file without it clears it: the file is the registry
    registry.import_registry(conn, registry_file.parse_yaml(world.COMMUNE_A, profiles_dir=None), None)
    assert former()["tay-binh"] is None
