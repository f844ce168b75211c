"""The NGSI-LD view: Smart Data Models Device entities, @context, query basics, temporal, scope."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.share import world
from tests.share.conftest import hdr

SCHEMA = json.loads((Path(__file__).parent / "sdm_device_schema.json").read_text())
T0 = datetime(2026, 11, 1, tzinfo=UTC)
CAM = "urn:ngsi-ld:Device:thoai-giang:cam-ubnd-1"


@pytest.fixture
def live(conn: psycopg.Connection) -> psycopg.Connection:
    world.change(conn, "cam-ubnd-1", "online", T0)
    world.sample(conn, "cam-ubnd-1", T0, {"reachable": True, "rtt_ms": 12.5, "firmware": "V5.7"})
    world.sample(conn, "cam-ubnd-1", T0 + timedelta(minutes=1), {"reachable": True, "rtt_ms": 14.0})
    world.change(conn, "cam-ubnd-1", "offline", T0 + timedelta(minutes=5))
    world.change(conn, "spk-trung-binh-1", "online", T0)
    world.sample(
        conn, "spk-trung-binh-1", T0, {"volume": 70, "battery_pct": 55, "rssi_dbm": -71, "playing": False}
    )
    return conn


def test_entities_validate_against_the_smart_data_models_device_schema(
    client: TestClient, live: psycopg.Connection, key_all: str
) -> None:
    r = client.get(
        "/ngsi-ld/v1/entities",
        headers=hdr(key_all),
        params={"type": "Device", "options": "keyValues", "limit": 100},
    )
    assert r.status_code == 200, r.text
    entities = r.json()
    assert len(entities) == 6
    for e in entities:
        jsonschema.validate(e, SCHEMA)
        if "dateLastValueReported" in e:
            datetime.fromisoformat(e["dateLastValueReported"])
    spk = next(e for e in entities if e["id"] == "urn:ngsi-ld:Device:thoai-giang:spk-trung-binh-1")
    assert spk["deviceState"] == "online" and spk["batteryLevel"] == 0.55 and spk["rssi"] == -71
    assert spk["category"] == ["actuator", "multimedia"] and spk["volume"] == 70
    cam = next(e for e in entities if e["id"] == CAM)
    assert cam["location"] == {"type": "Point", "coordinates": [105.33, 10.39]}
    assert cam["refParent"] == "urn:ngsi-ld:Device:thoai-giang:gw-trung-binh"


def test_normalized_entity_has_typed_attributes_and_a_context_link(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    r = client.get(f"/ngsi-ld/v1/entities/{CAM}", headers=hdr(key_a))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    link = r.headers["link"]
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in link
    e = r.json()
    assert e["id"] == CAM and e["type"] == "Device" and "@context" not in e
    assert e["deviceState"] == {"type": "Property", "value": "offline", "observedAt": "2026-11-01T00:05:00Z"}
    assert e["location"]["type"] == "GeoProperty"
    assert e["refParent"] == {
        "type": "Relationship",
        "object": "urn:ngsi-ld:Device:thoai-giang:gw-trung-binh",
    }
    for name, attr in e.items():
        if name not in ("id", "type"):
            assert attr["type"] in ("Property", "GeoProperty", "Relationship"), name
    # As JSON-LD, the context is in the body, and the gateway serves it (no key needed).
    ld = client.get(f"/ngsi-ld/v1/entities/{CAM}", headers=hdr(key_a, Accept="application/ld+json"))
    assert ld.headers["content-type"] == "application/ld+json"
    ctx_url = ld.json()["@context"][0]
    ctx = client.get(ctx_url.replace(str(client.base_url), ""))
    assert ctx.status_code == 200 and "deviceState" in ctx.json()["@context"][0]
    assert link.startswith(f"<{ctx_url}>")


def test_entity_query_filters_attrs_and_paging(
    client: TestClient, live: psycopg.Connection, key_all: str
) -> None:
    r = client.get(
        "/ngsi-ld/v1/entities",
        headers=hdr(key_all),
        params={
            "type": "Device",
            "q": 'deviceState=="online";kind=="speaker"',
            "attrs": "deviceState",
            "count": "true",
        },
    )
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Device:thoai-giang:spk-trung-binh-1"]
    assert set(r.json()[0]) == {"id", "type", "deviceState"}
    assert r.headers["ngsild-results-count"] == "1"
    ids = []
    for offset in (0, 2, 4):
        page = client.get(
            "/ngsi-ld/v1/entities",
            headers=hdr(key_all),
            params={"type": "Device", "limit": 2, "offset": offset},
        ).json()
        ids += [e["id"] for e in page]
    assert len(ids) == 6 == len(set(ids))
    malformed = client.get(
        "/ngsi-ld/v1/entities", headers=hdr(key_all), params={"type": "Device", "q": "deviceState=="}
    )
    assert malformed.status_code == 400
    # An unknown type is an empty list, not an error (SPEC §10).
    car = client.get("/ngsi-ld/v1/entities", headers=hdr(key_all), params={"type": "Car"})
    assert car.status_code == 200 and car.json() == []


def test_ngsi_routes_keep_to_the_key_scope(client: TestClient, live: psycopg.Connection, key_a: str) -> None:
    r = client.get("/ngsi-ld/v1/entities", headers=hdr(key_a), params={"type": "Device", "limit": 100})
    assert {e["id"].split(":")[3] for e in r.json()} == {"thoai-giang"}
    other = "urn:ngsi-ld:Device:vong-the:spk-vt-1"
    assert client.get(f"/ngsi-ld/v1/entities/{other}", headers=hdr(key_a)).status_code == 403
    assert client.get(f"/ngsi-ld/v1/temporal/entities/{other}", headers=hdr(key_a)).status_code == 403
    assert (
        client.get(
            "/ngsi-ld/v1/entities", headers=hdr(key_a), params={"type": "Device", "q": 'commune=="vong-the"'}
        ).status_code
        == 403
    )
    assert (
        client.get(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Device:thoai-giang:spk-old", headers=hdr(key_a)
        ).status_code
        == 404
    )
    assert client.get("/ngsi-ld/v1/entities/not-a-urn", headers=hdr(key_a)).status_code == 400
    assert client.get("/ngsi-ld/v1/entities", params={"type": "Device"}).status_code == 401
    # The query routes answer only the key's devices, whatever they name.
    world.sample(live, "spk-vt-1", T0, {"vt_only_field": 1})
    for url, params in (
        ("/ngsi-ld/v1/entities", {"type": "Device", "id": other}),
        ("/ngsi-ld/v1/entities", {"type": "Device", "idPattern": "vong-the"}),
        ("/ngsi-ld/v1/entities", {"attrs": "vt_only_field"}),
        ("/ngsi-ld/v1/entities", {"type": "Device", "q": "vt_only_field==1"}),
        ("/ngsi-ld/v1/temporal/entities", {"type": "Device", "id": other}),
    ):
        r = client.get(url, headers=hdr(key_a), params=params)
        assert r.status_code == 200 and r.json() == [], (url, params, r.text)
    assert "vt_only_field" not in client.get("/ngsi-ld/v1/attributes", headers=hdr(key_a)).text
    assert client.get("/ngsi-ld/v1/attributes/vt_only_field", headers=hdr(key_a)).status_code == 404


def test_temporal_entity_between_gives_state_and_measured_values(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    params = {"timerel": "between", "timeAt": "2026-11-01T00:00:00Z", "endTimeAt": "2026-11-01T00:03:00Z"}
    r = client.get(f"/ngsi-ld/v1/temporal/entities/{CAM}", headers=hdr(key_a), params=params)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["deviceState"] == [{"type": "Property", "value": "online", "observedAt": "2026-11-01T00:00:00Z"}]
    assert [i["value"] for i in t["rtt_ms"]] == [12.5, 14.0]
    assert t["firmware"] == [{"type": "Property", "value": "V5.7", "observedAt": "2026-11-01T00:00:00Z"}]
    bad = client.get(
        f"/ngsi-ld/v1/temporal/entities/{CAM}",
        headers=hdr(key_a),
        params={**params, "endTimeAt": "2026-10-01T00:00:00Z"},
    )
    assert bad.status_code == 400
