"""GET /api/v1/devices, /devices/{id} and /status: rows, filters, commune scope, pages, errors."""

from collections.abc import Callable
from datetime import datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from services import registry
from tests.gateway.conftest import LAST_SEEN

Headers = Callable[..., dict[str, str]]
ALL_IDS = sorted(
    [
        "gw-trung-binh",
        "cam-ubnd-1",
        "spk-trung-binh-1",
        "spk-tay-binh-1",
        "eb-tay-binh",
        "wifi-xom-1",
        "spk-xom-1",
    ]
)


def ids(body: dict) -> list[str]:
    return [r.get("id") or r["device_id"] for r in body["items"]]


def assert_error(r, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] and err["message"]
    return err


def test_device_list_has_every_active_device_with_registry_fields(
    ro_client: TestClient, ro_user: Headers
) -> None:
    r = ro_client.get("/api/v1/devices", headers=ro_user())
    assert r.status_code == 200
    body = r.json()
    assert ids(body) == ALL_IDS and body["next_cursor"] is None
    cam = next(d for d in body["items"] if d["id"] == "cam-ubnd-1")
    assert cam == cam | {
        "commune": "thoai-giang",
        "village": "trung-binh",
        "kind": "camera",
        "name": "Camera cổng UBND",
        "lat": 10.39,
        "lon": 105.33,
        "parent": "gw-trung-binh",
        "heartbeat_s": 60,
        "state": "online",
    }
    assert cam["onvif"] == {
        "host": "192.0.2.21",
        "port": 80,
        "username": "admin",
        "path": "/onvif/device_service",
        "poll_s": 30,
    }
    assert cam["since"] is not None and cam["last_seen"] is not None
    spk = next(d for d in body["items"] if d["id"] == "spk-tay-binh-1")
    assert spk["state"] == "unknown" and spk["last_seen"] is None and spk["onvif"] is None


def test_camera_password_is_never_returned(ro_client: TestClient, ro_user: Headers) -> None:
    for path in ("/api/v1/devices", "/api/v1/devices/cam-ubnd-1", "/api/v1/status"):
        r = ro_client.get(path, headers=ro_user())
        assert r.status_code == 200
        assert "cam-pass-XYZ" not in r.text and "password" not in r.text


def test_filters_by_commune_village_kind_and_state(ro_client: TestClient, ro_user: Headers) -> None:
    h = ro_user()
    assert ids(ro_client.get("/api/v1/devices?commune=long-thanh", headers=h).json()) == [
        "spk-xom-1",
        "wifi-xom-1",
    ]
    assert ids(ro_client.get("/api/v1/devices?commune=thoai-giang&village=tay-binh", headers=h).json()) == [
        "eb-tay-binh",
        "spk-tay-binh-1",
    ]
    assert ids(ro_client.get("/api/v1/devices?kind=speaker", headers=h).json()) == [
        "spk-tay-binh-1",
        "spk-trung-binh-1",
        "spk-xom-1",
    ]
    assert ids(ro_client.get("/api/v1/devices?state=online", headers=h).json()) == ["cam-ubnd-1", "spk-xom-1"]
    assert ids(ro_client.get("/api/v1/status?state=online&kind=camera", headers=h).json()) == ["cam-ubnd-1"]
    assert ids(ro_client.get("/api/v1/devices?commune=nowhere", headers=h).json()) == []


def test_status_rows_carry_state_metrics_and_reason(ro_client: TestClient, ro_user: Headers) -> None:
    seen = LAST_SEEN
    r = ro_client.get("/api/v1/status?commune=long-thanh", headers=ro_user())
    assert r.status_code == 200
    rows = {row["device_id"]: row for row in r.json()["items"]}
    assert set(rows) == {"spk-xom-1", "wifi-xom-1"}
    spk = rows["spk-xom-1"]
    assert spk["state"] == "online" and spk["reason"] == "status received"
    assert spk["commune"] == "long-thanh" and spk["village"] == "xom-1" and spk["kind"] == "speaker"
    assert datetime.fromisoformat(spk["last_seen"]) == seen
    assert datetime.fromisoformat(spk["since"]) == seen
    assert spk["metrics"] == {"volume": 70, "playing": True}
    assert rows["wifi-xom-1"]["state"] == "unknown" and rows["wifi-xom-1"]["last_seen"] is None


@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/status"])
def test_pages_of_two_return_every_device_exactly_once(
    ro_client: TestClient, ro_user: Headers, path: str
) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        r = ro_client.get(
            path, params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=ro_user()
        )
        assert r.status_code == 200
        body = r.json()
        assert len(body["items"]) <= 2
        seen += ids(body)
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ALL_IDS and pages == 4


def test_paging_with_filter_returns_five_devices_once(ro_client: TestClient, ro_user: Headers) -> None:
    seen: list[str] = []
    params: dict[str, object] = {"limit": 2, "commune": "thoai-giang"}
    while True:
        body = ro_client.get("/api/v1/devices", params=params, headers=ro_user()).json()
        seen += ids(body)
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert sorted(seen) == seen and len(seen) == len(set(seen)) == 5


def test_get_device_and_404_for_unknown_or_retired(client: TestClient, as_user: Headers, seeded: str) -> None:
    r = client.get("/api/v1/devices/spk-xom-1", headers=as_user())
    assert r.status_code == 200 and r.json()["id"] == "spk-xom-1" and r.json()["onvif"] is None
    assert_error(client.get("/api/v1/devices/no-such-device", headers=as_user()), 404)
    with psycopg.connect(seeded) as conn:
        registry.retire(conn, "spk-xom-1")
    assert_error(client.get("/api/v1/devices/spk-xom-1", headers=as_user()), 404)
    assert "spk-xom-1" not in ids(client.get("/api/v1/devices", headers=as_user()).json())
    assert "spk-xom-1" not in ids(client.get("/api/v1/status", headers=as_user()).json())


def test_user_limited_to_a_commune_sees_only_it(ro_client: TestClient, ro_user: Headers) -> None:
    h = ro_user("op-tg")
    body = ro_client.get("/api/v1/devices", headers=h).json()
    assert ids(body) == [d for d in ALL_IDS if d not in ("spk-xom-1", "wifi-xom-1")]
    assert {r["commune"] for r in ro_client.get("/api/v1/status", headers=h).json()["items"]} == {
        "thoai-giang"
    }
    assert ro_client.get("/api/v1/devices?commune=thoai-giang", headers=h).status_code == 200
    assert_error(ro_client.get("/api/v1/devices?commune=long-thanh", headers=h), 403)
    assert_error(ro_client.get("/api/v1/status?commune=long-thanh", headers=h), 403)
    assert_error(ro_client.get("/api/v1/devices/spk-xom-1", headers=h), 404)
    assert_error(ro_client.get("/api/v1/devices/spk-xom-1/history", headers=h), 404)
    assert_error(ro_client.get("/api/v1/devices/spk-xom-1/events", headers=h), 404)


def test_viewer_may_read_devices(ro_client: TestClient, ro_user: Headers) -> None:
    assert ids(ro_client.get("/api/v1/devices", headers=ro_user("viewer")).json()) == ALL_IDS


@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/status"])
@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("kind=toaster", "kind"),
        ("state=asleep", "state"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=abc", "limit"),
        ("cursor=not-a-cursor!!", "cursor"),
        ("cursor=WyJhIiwiYiJd", "cursor"),  # a list of two values: wrong shape
    ],
)
def test_bad_list_parameters_are_400_with_json_error(
    ro_client: TestClient, ro_user: Headers, path: str, query: str, needle: str
) -> None:
    err = assert_error(ro_client.get(f"{path}?{query}", headers=ro_user()), 400)
    assert needle in err["message"]


def test_limit_of_max_is_accepted(ro_client: TestClient, ro_user: Headers) -> None:
    r = ro_client.get("/api/v1/devices?limit=10000", headers=ro_user())
    assert r.status_code == 200 and len(r.json()["items"]) == len(ALL_IDS)
