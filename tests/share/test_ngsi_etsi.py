"""What the ETSI NGSI-LD test suite asserts, on our Device view.

Each test copies the expectations (status, Content-Type, Link, ProblemDetails type, body shape) of
the Robot Framework test named in it, from the ETSI NGSI-LD API test suite
(https://forge.etsi.org/rep/cim/ngsi-ld-test-suite, read from its GitHub copy
github.com/marek-mraz/ngsi-ld-test-suite, paths under TP/NGSI-LD/). The suite's Building and
Vehicle entities are our Device entities: the view is read-only, so nothing is created first.
"""

from datetime import UTC, datetime
from typing import Any

import httpx2
import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.share import world
from tests.share.conftest import hdr

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
ENTITIES = "/ngsi-ld/v1/entities"
CAM = "urn:ngsi-ld:Device:thoai-giang:cam-ubnd-1"
SPK = "urn:ngsi-ld:Device:thoai-giang:spk-trung-binh-1"
SPK2 = "urn:ngsi-ld:Device:thoai-giang:spk-tay-binh-1"
GW = "urn:ngsi-ld:Device:thoai-giang:gw-trung-binh"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
SUB = {
    "type": "Subscription",
    "entities": [{"type": "Device"}],
    "notification": {
        "format": "keyValues",
        "endpoint": {"uri": "http://localhost:1111/notify", "accept": "application/json"},
    },
}


@pytest.fixture
def live(conn: psycopg.Connection) -> psycopg.Connection:
    world.change(conn, "cam-ubnd-1", "online", T0)
    world.change(conn, "spk-trung-binh-1", "online", T0)
    world.sample(conn, "spk-trung-binh-1", T0, {"battery_pct": 15, "rssi_dbm": -71, "volume": 70})
    world.change(conn, "spk-tay-binh-1", "offline", T0)
    world.sample(conn, "spk-tay-binh-1", T0, {"battery_pct": 80, "volume": 40})
    return conn


def problem_type(r: httpx2.Response, status: int, name: str) -> None:
    """Check Response Status Code + ...ProblemDetails Element Containing Type/Title Element."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["type"] == ERR + name, body
    assert body["title"] and body["detail"] and body["title"] != body["detail"]


def content_type(client: TestClient, url: str, key: str, accept: str) -> str:
    r = client.get(url, headers=hdr(key, Accept=accept))
    assert r.status_code == 200, (accept, r.text)
    return str(r.headers["content-type"])


def make_subscription(client: TestClient, key: str, sub_id: str) -> str:
    r = client.post(
        "/ngsi-ld/v1/subscriptions",
        json={**SUB, "id": sub_id},
        headers=hdr(key, **{"Content-Type": "application/ld+json"}),
    )
    assert r.status_code == 201, r.text
    return f"/ngsi-ld/v1/subscriptions/{sub_id}"


# --- CommonBehaviours -------------------------------------------------------------------------


def test_accept_precedence_on_retrieve_entity_045_02_and_045_04(client: TestClient, key_a: str) -> None:
    # CommonBehaviours/CommonResponses/VerifyAcceptPrecedence/045_02.robot and 045_04.robot
    url = f"{ENTITIES}/{CAM}"
    cases = {
        "application/ld+json, application/json": "application/json",  # equal weights: §6.3.4 order
        "application/geo+json, application/json": "application/json",
        "application/json;q=0.1, application/ld+json;q=0.9": "application/ld+json",
        "application/ld+json": "application/ld+json",
        "application/json;q=0, */*": "application/ld+json",  # the exact range is more specific
        "application/json;q=0, application/ld+json": "application/ld+json",
        "*/*;q=0.9, application/ld+json;q=0.8": "application/json",
        "application/ld+json;q=notanumber": "application/ld+json",  # a bad weight counts as 1
        "application/geo+json": "application/geo+json",
    }
    for accept, expected in cases.items():
        assert content_type(client, url, key_a, accept).startswith(expected), accept


def test_accept_precedence_on_retrieve_subscription_045_03(client: TestClient, key_a: str) -> None:
    # CommonBehaviours/CommonResponses/VerifyAcceptPrecedence/045_03.robot
    url = make_subscription(client, key_a, "urn:ngsi-ld:Subscription:045-03")
    cases = {
        "application/geo+json, application/json": "application/json",
        "application/geo+json;q=0.9, application/ld+json;q=0.1": "application/ld+json",
        "*/*": "application/json",
        "application/json;q=0, application/ld+json": "application/ld+json",
    }
    for accept, expected in cases.items():
        assert content_type(client, url, key_a, accept).startswith(expected), accept


def test_get_with_any_accept_is_json_with_a_context_link_045_01(client: TestClient, key_a: str) -> None:
    # CommonBehaviours/CommonResponses/VerifyGETWithoutAccept/045_01.robot: Content-Type equal to
    # application/json, Link not empty, on /entities/{id}, /subscriptions/{id}, /temporal/entities.
    urls = [
        f"{ENTITIES}/{CAM}",
        make_subscription(client, key_a, "urn:ngsi-ld:Subscription:045-01"),
        "/ngsi-ld/v1/temporal/entities?type=Device&timerel=after&timeAt=2020-08-01T12:05:00Z",
    ]
    for url in urls:
        r = client.get(url, headers=hdr(key_a, Accept="*/*"))
        assert r.status_code == 200, (url, r.text)
        assert r.headers["content-type"] == "application/json", url
        assert r.headers["link"], url


def test_not_acceptable_media_types_049_01_and_049_02(client: TestClient, key_a: str) -> None:
    # CommonBehaviours/CommonResponses/VerifyNotAcceptableMediaType/049_01.robot (application/xml
    # anywhere) and 049_02.robot (application/geo+json outside Retrieve and Query Entities): 406,
    # even for an entity or subscription that does not exist.
    temporal = "/ngsi-ld/v1/temporal/entities?type=Vehicle&timerel=after&timeAt=2020-08-01T12:05:00Z"
    unknown_sub = "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:0000000000000001"
    for url in (f"{ENTITIES}/urn:ngsi-ld:Building:1234567890123456", unknown_sub, temporal):
        assert client.get(url, headers=hdr(key_a, Accept="application/xml")).status_code == 406, url
    for url in (unknown_sub, temporal):
        assert client.get(url, headers=hdr(key_a, Accept="application/geo+json")).status_code == 406, url


def test_an_unknown_query_parameter_is_invalid_request_059_01(client: TestClient, key_a: str) -> None:
    # CommonBehaviours/CommonResponses/VerifyInvalidParameters/059_01.robot:
    # ?invalidParams=invalidValue -> 400 InvalidRequest.
    bad = {"invalidParams": "invalidValue"}
    for url, extra in (
        (ENTITIES, {"type": "Building"}),
        ("/ngsi-ld/v1/temporal/entities", {"type": "Building"}),
        ("/ngsi-ld/v1/types", {}),
        ("/ngsi-ld/v1/subscriptions", {}),
    ):
        r = client.get(url, params={**bad, **extra}, headers=hdr(key_a))
        problem_type(r, 400, "InvalidRequest")
    r = client.post(
        "/ngsi-ld/v1/subscriptions",
        params=bad,
        json=SUB,
        headers=hdr(key_a, **{"Content-Type": "application/ld+json"}),
    )
    problem_type(r, 400, "InvalidRequest")


# --- Retrieve Entity --------------------------------------------------------------------------


def test_retrieve_entity_errors_018_02_018_03_018_16(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    # Consumption/Entity/RetrieveEntity/018_02.robot: an id that is not a URI is BadRequestData.
    problem_type(client.get(f"{ENTITIES}/thisisaninvaliduri", headers=hdr(key_a)), 400, "BadRequestData")
    # 018_03_01.robot: a well-formed id the system does not know is ResourceNotFound.
    for unknown in ("urn:ngsi-ld:Building:1234567890123456", "urn:ngsi-ld:Device:thoai-giang:spk-9"):
        problem_type(client.get(f"{ENTITIES}/{unknown}", headers=hdr(key_a)), 404, "ResourceNotFound")
    # 018_03_02.robot: attrs naming nothing in the entity is ResourceNotFound.
    r = client.get(
        f"{ENTITIES}/{CAM}",
        params={"attrs": "property_not_found"},
        headers=hdr(key_a, Accept="application/ld+json"),
    )
    problem_type(r, 404, "ResourceNotFound")
    # 018_16.robot: a bad format or options is InvalidRequest, checked before the id is looked up.
    for params in (
        {"format": "invalidFormat"},
        {"options": "invalidOptions"},
        {"options": "keyValues,invalid"},
        {"format": "keyValues", "options": "invalid"},
    ):
        r = client.get(f"{ENTITIES}/urn:ngsi-ld:Building:0000000000000001", params=params, headers=hdr(key_a))
        problem_type(r, 400, "InvalidRequest")


def test_retrieve_entity_representations_018_04_018_05_018_15(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    # 018_04.robot (keyValues), 018_15.robot (format / options), 018_05.robot (GeoJSON).
    url = f"{ENTITIES}/{CAM}"
    for params in ({"options": "keyValues"}, {"format": "keyValues"}, {"format": "simplified"}):
        e = client.get(url, params=params, headers=hdr(key_a)).json()
        assert e["deviceState"] == "online" and e["location"]["type"] == "Point", params
    e = client.get(url, params={"format": "normalized", "options": "keyValues"}, headers=hdr(key_a)).json()
    assert e["deviceState"]["type"] == "Property"  # format wins over options
    concise = client.get(url, params={"format": "concise"}, headers=hdr(key_a)).json()
    assert concise["deviceState"]["value"] == "online" and "type" not in concise["deviceState"]
    sys = client.get(url, params={"options": "sysAttrs"}, headers=hdr(key_a)).json()
    assert sys["createdAt"] and sys["modifiedAt"] and sys["deviceState"]["createdAt"]
    datetime.fromisoformat(sys["modifiedAt"])
    geo = client.get(url, headers=hdr(key_a, Accept="application/geo+json"))
    assert geo.headers["content-type"] == "application/geo+json" and geo.headers["link"]
    f = geo.json()
    assert f["id"] == CAM and f["type"] == "Feature"
    assert f["geometry"] == {"type": "Point", "coordinates": [105.33, 10.39]}
    assert f["properties"]["type"] == "Device" and f["properties"]["deviceState"]["value"] == "online"


# --- Query Entities ---------------------------------------------------------------------------


def ids(r: httpx2.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()]


def test_query_entities_by_ids_types_pattern_and_attrs_019_01(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    # Consumption/Entity/QueryEntities/019_01_01 (id), 019_01_02 (type), 019_01_03 (idPattern),
    # 019_01_04 (attrs given as expanded IRIs: entities having any of them, only those shown).
    q = {"type": "Device", "id": f"{SPK},{CAM},urn:ngsi-ld:Building:1"}
    assert ids(client.get(ENTITIES, params=q, headers=hdr(key_a))) == [CAM, SPK]
    all_types = {"type": "https://smartdatamodels.org/dataModel.Device/Device", "limit": 100}
    assert len(ids(client.get(ENTITIES, params=all_types, headers=hdr(key_a)))) == 4
    assert len(ids(client.get(ENTITIES, params={"type": "*", "limit": 100}, headers=hdr(key_a)))) == 4
    assert ids(client.get(ENTITIES, params={"type": "Building"}, headers=hdr(key_a))) == []
    both = {"type": "Building,Device", "idPattern": "^urn:ngsi-ld:Device:thoai-giang:spk-"}
    assert ids(client.get(ENTITIES, params=both, headers=hdr(key_a))) == [SPK2, SPK]
    attrs = {
        "attrs": "https://smartdatamodels.org/dataModel.Device/batteryLevel,https://smartdatamodels.org/dataModel.Device/rssi"
    }
    r = client.get(ENTITIES, params=attrs, headers=hdr(key_a))
    assert ids(r) == [SPK2, SPK]
    assert r.json()[0] == {"id": SPK2, "type": "Device", "batteryLevel": r.json()[0]["batteryLevel"]}
    assert set(r.json()[1]) == {"id", "type", "batteryLevel", "rssi"}


def test_query_entities_errors_019_03(client: TestClient, key_a: str) -> None:
    # 019_03_01: ids that are not URIs; 019_03_02: a bad idPattern; 019_03_03: attrs=id,type;
    # 019_03_05: none of the minimal parameters (ids alone). All BadRequestData.
    for params in (
        {"type": "Device", "id": "thisisaninvaliduri1,thisisaninvaliduri2"},
        {"type": "Device", "idPattern": "invalid_entity_id_pattern**"},
        {"attrs": "id,type"},
        {"id": "urn:ngsi-ld:Entity:01,urn:ngsi-ld:Entity:02"},
        {"type": "Device", "georel": "near;maxDistance==10", "geometry": "Point"},  # no coordinates
        {"type": "Device", "georel": "within", "geometry": "Polygon", "coordinates": "[1,2]"},
    ):
        problem_type(client.get(ENTITIES, params=params, headers=hdr(key_a)), 400, "BadRequestData")


def test_query_entities_q_numeric_and_geoqueries_019_09_019_10_019_11(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    # 019_09.robot (q), 019_10.robot (near a Point), 019_11.robot (within a Polygon).
    def q(**params: str) -> list[str]:
        return ids(client.get(ENTITIES, params={"type": "Device", **params}, headers=hdr(key_a)))

    assert q(q="batteryLevel<0.2") == [SPK]
    assert q(q="batteryLevel>=0.2") == [SPK2]
    assert q(q="volume==40..50") == [SPK2]
    assert q(q='deviceState=="offline"|rssi<-70') == [SPK2, SPK]
    assert q(q='kind=="speaker";!rssi') == [SPK2]
    assert q(q='name~="(?i)^camera"') == [CAM]
    assert q(q='https://smartdatamodels.org/dataModel.Device/deviceState=="offline"') == [SPK2]  # expanded
    # The camera is at 105.33, 10.39; the other devices have no location.
    assert q(georel="near;maxDistance==2000", geometry="Point", coordinates="[105.34,10.39]") == [CAM]
    assert q(georel="near;maxDistance==500", geometry="Point", coordinates="[105.34,10.39]") == []
    square = "[[[105.3,10.3],[105.4,10.3],[105.4,10.4],[105.3,10.4],[105.3,10.3]]]"
    assert q(georel="within", geometry="Polygon", coordinates=square) == [CAM]
    assert q(georel="disjoint", geometry="Polygon", coordinates=square) == []


def test_query_entities_pagination_links_and_count_019_07_019_31(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    # 019_07.robot (count) and 019_31.robot: NGSILD-Results-Count is the total; Link has rel="prev"
    # and rel="next" (besides the @context link) with the request's parameters in name order.
    pattern = "urn:ngsi-ld:Device:thoai-giang:.*"

    def page(limit: int, offset: int) -> tuple[int, list[str]]:
        r = client.get(
            ENTITIES,
            params={
                "type": "Device",
                "idPattern": pattern,
                "limit": limit,
                "offset": offset,
                "count": "true",
            },
            headers=hdr(key_a),
        )
        assert r.status_code == 200, r.text
        assert r.headers["ngsild-results-count"] == "4"
        links = [
            link for link in r.headers["link"].replace(" ", "").split(",") if "json-ld#context" not in link
        ]
        return len(r.json()), links

    def link(limit: int, offset: int, rel: str) -> str:
        return (
            f"<{ENTITIES}?count=true&idPattern={pattern}&limit={limit}&offset={offset}&type=Device>;"
            f'rel="{rel}";type="application/json"'
        )

    assert page(1, 0) == (1, [link(1, 1, "next")])
    assert page(1, 1) == (1, [link(1, 0, "prev"), link(1, 2, "next")])
    assert page(1, 3) == (1, [link(1, 2, "prev")])
    assert page(3, 0) == (3, [link(3, 3, "next")])
    assert page(0, 0) == (0, [])  # 4.13: limit=0 with count gives the total alone


def test_query_entities_geojson_019_05(client: TestClient, live: psycopg.Connection, key_a: str) -> None:
    # 019_05.robot: Accept: application/geo+json gives a FeatureCollection.
    r = client.get(
        ENTITIES, params={"type": "Device", "id": CAM}, headers=hdr(key_a, Accept="application/geo+json")
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and [f["id"] for f in fc["features"]] == [CAM]
    assert fc["features"][0]["geometry"]["coordinates"] == [105.33, 10.39]


# --- Discovery --------------------------------------------------------------------------------


def test_types_and_attributes_022_to_027(client: TestClient, live: psycopg.Connection, key_a: str) -> None:
    # Consumption/Discovery: 022_01 (EntityTypeList), 023_01 (details), 024_01/02 (EntityTypeInfo,
    # 404 for an unknown type), 025_01 (AttributeList), 026_01 (details), 027_01/02 (Attribute).
    types = client.get("/ngsi-ld/v1/types", headers=hdr(key_a)).json()
    assert types["type"] == "EntityTypeList" and types["typeList"] == ["Device"]
    assert types["id"].startswith("urn:ngsi-ld:EntityTypeList:")
    detailed = client.get("/ngsi-ld/v1/types", params={"details": "true"}, headers=hdr(key_a)).json()
    assert detailed[0]["type"] == "EntityType" and detailed[0]["typeName"] == "Device"
    assert detailed[0]["id"] == "https://smartdatamodels.org/dataModel.Device/Device"
    assert "deviceState" in detailed[0]["attributeNames"]
    for name in ("Device", "https%3A%2F%2Fsmartdatamodels.org%2FdataModel.Device%2FDevice"):
        info = client.get(f"/ngsi-ld/v1/types/{name}", headers=hdr(key_a)).json()
        assert info["type"] == "EntityTypeInfo" and info["typeName"] == "Device" and info["entityCount"] == 4
        state = next(a for a in info["attributeDetails"] if a["attributeName"] == "deviceState")
        assert state == {
            "id": "https://smartdatamodels.org/dataModel.Device/deviceState",
            "type": "Attribute",
            "attributeName": "deviceState",
            "attributeTypes": ["Property"],
        }
    problem_type(client.get("/ngsi-ld/v1/types/Building", headers=hdr(key_a)), 404, "ResourceNotFound")
    attrs = client.get("/ngsi-ld/v1/attributes", headers=hdr(key_a)).json()
    assert attrs["type"] == "AttributeList" and {"deviceState", "location", "volume"} <= set(
        attrs["attributeList"]
    )
    detailed_attrs = client.get(
        "/ngsi-ld/v1/attributes", params={"details": "true"}, headers=hdr(key_a)
    ).json()
    assert {"id", "type", "attributeName", "typeNames"} == set(detailed_attrs[0])
    battery = client.get("/ngsi-ld/v1/attributes/batteryLevel", headers=hdr(key_a)).json()
    assert battery == {
        "id": "https://smartdatamodels.org/dataModel.Device/batteryLevel",
        "type": "Attribute",
        "attributeName": "batteryLevel",
        "attributeCount": 2,
        "attributeTypes": ["Property"],
        "typeNames": ["Device"],
    }
    loc = client.get("/ngsi-ld/v1/attributes/location", headers=hdr(key_a)).json()
    assert loc["attributeTypes"] == ["GeoProperty"] and loc["attributeCount"] == 1
    problem_type(
        client.get("/ngsi-ld/v1/attributes/airQualityLevel", headers=hdr(key_a)), 404, "ResourceNotFound"
    )


# --- Temporal ---------------------------------------------------------------------------------


def test_query_temporal_entities_uses_the_entity_attribute_names_021(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    # Consumption/TemporalEntity/QueryTemporalEvolutionOfEntities/021_*.robot: a list of temporal
    # entities; the attribute names are the entity's (batteryLevel, not battery_pct only).
    r = client.get(
        "/ngsi-ld/v1/temporal/entities",
        params={
            "type": "Device",
            "q": 'kind=="speaker"',
            "timerel": "after",
            "timeAt": "2026-10-01T00:00:00Z",
        },
        headers=hdr(key_a),
    )
    assert r.status_code == 200, r.text
    got = {t["id"]: t for t in r.json()}
    assert set(got) == {SPK, SPK2}
    assert got[SPK]["batteryLevel"] == [
        {"type": "Property", "value": 0.15, "observedAt": "2026-11-01T00:00:00Z"}
    ]
    assert got[SPK]["deviceState"][0]["value"] == "online"
    values = client.get(
        "/ngsi-ld/v1/temporal/entities",
        params={"type": "Device", "id": SPK, "options": "temporalValues", "attrs": "rssi"},
        headers=hdr(key_a),
    ).json()
    assert values == [
        {"id": SPK, "type": "Device", "rssi": {"type": "Property", "values": [[-71, "2026-11-01T00:00:00Z"]]}}
    ]
    problem_type(
        client.get(
            "/ngsi-ld/v1/temporal/entities", params={"type": "Device", "timerel": "soon"}, headers=hdr(key_a)
        ),
        400,
        "BadRequestData",
    )


# --- Subscriptions ----------------------------------------------------------------------------


def test_subscription_errors_028_029_030_032(client: TestClient, key_a: str) -> None:
    # Subscription/CreateSubscription/028_03 (invalid and empty id), 028_04 (existing id: 409
    # AlreadyExists), RetrieveSubscription/030_01 + 030_02, UpdateSubscription/029_01 + 029_02,
    # DeleteSubscription/032_01 + 032_02 + 032_03.
    base = "/ngsi-ld/v1/subscriptions"
    ld = {"Content-Type": "application/ld+json"}
    for bad_id in ("invalidId", ""):
        r = client.post(base, json={**SUB, "id": bad_id}, headers=hdr(key_a, **ld))
        problem_type(r, 400, "BadRequestData")
    url = make_subscription(client, key_a, "urn:ngsi-ld:Subscription:028-04")
    again = client.post(base, json={**SUB, "id": "urn:ngsi-ld:Subscription:028-04"}, headers=hdr(key_a, **ld))
    problem_type(again, 409, "AlreadyExists")
    unknown = f"{base}/urn:ngsi-ld:Subscription:0000000000000001"
    problem_type(client.get(f"{base}/invalidUri", headers=hdr(key_a)), 400, "BadRequestData")
    problem_type(client.get(unknown, headers=hdr(key_a)), 404, "ResourceNotFound")
    patch = {"notification": {"attributes": ["deviceState"]}}
    problem_type(client.patch(f"{base}/invalidUri", json=patch, headers=hdr(key_a)), 400, "BadRequestData")
    problem_type(client.patch(unknown, json=patch, headers=hdr(key_a)), 404, "ResourceNotFound")
    problem_type(client.delete(f"{base}/invalidUri", headers=hdr(key_a)), 400, "BadRequestData")
    problem_type(client.delete(unknown, headers=hdr(key_a)), 404, "ResourceNotFound")
    deleted = client.delete(url, headers=hdr(key_a))
    assert deleted.status_code == 204 and deleted.content == b""
    problem_type(client.get(url, headers=hdr(key_a)), 404, "ResourceNotFound")


def test_query_subscriptions_pages_with_links_031_02(client: TestClient, key_a: str) -> None:
    # Subscription/QuerySubscriptions/031_02.robot: limit/offset pages with rel="prev" and
    # rel="next" links exactly as the suite expects (JSON-LD asked for).
    for n in range(3):
        make_subscription(client, key_a, f"urn:ngsi-ld:Subscription:031-{n}")
    base = "/ngsi-ld/v1/subscriptions"

    def page(limit: int, offset: int) -> tuple[int, list[str]]:
        r = client.get(
            base, params={"limit": limit, "offset": offset}, headers=hdr(key_a, Accept="application/ld+json")
        )
        assert r.status_code == 200, r.text
        links = r.headers.get("link", "").replace(" ", "").split(",")
        return len(r.json()), sorted(link for link in links if link and "json-ld#context" not in link)

    def link(offset: int, rel: str) -> str:
        return f'<{base}?limit=1&offset={offset}>;rel="{rel}";type="application/ld+json"'

    assert page(1, 1) == (1, sorted([link(0, "prev"), link(2, "next")]))
    assert page(1, 2) == (1, [link(1, "prev")])
    assert page(15, 0) == (3, [])
    counted = client.get(base, params={"limit": 2, "count": "true"}, headers=hdr(key_a))
    assert counted.headers["ngsild-results-count"] == "3" and len(counted.json()) == 2


def test_subscription_bodies_must_be_json_048_01_and_merge_patch_is_taken_044_02(
    client: TestClient, key_a: str
) -> None:
    # CommonBehaviours/CommonResponses/VerifyUnsupportedMediaType/048_01.robot (048_01_02, 048_01_04):
    # Content-Type application/xml is 415, also for a subscription that does not exist;
    # VerifyMergePatchJson/044_02.robot: PATCH with application/merge-patch+json is 204.
    base = "/ngsi-ld/v1/subscriptions"
    xml = {"Content-Type": "application/xml"}
    body = orjson.dumps({**SUB, "id": "urn:ngsi-ld:Subscription:048-01"})
    assert client.post(base, content=body, headers=hdr(key_a, **xml)).status_code == 415
    unknown = f"{base}/urn:ngsi-ld:Subscription:0000000000000001"
    assert client.patch(unknown, content=b'{"isActive": false}', headers=hdr(key_a, **xml)).status_code == 415
    url = make_subscription(client, key_a, "urn:ngsi-ld:Subscription:044-02")
    merge = {"Content-Type": "application/merge-patch+json"}
    r = client.patch(url, content=b'{"isActive": false}', headers=hdr(key_a, **merge))
    assert r.status_code == 204, r.text
    assert client.get(url, headers=hdr(key_a)).json()["status"] == "paused"


def test_pick_and_omit_018_17_018_18_018_19_019_18(
    client: TestClient, live: psycopg.Connection, key_a: str
) -> None:
    # Consumption/Entity/RetrieveEntity/018_17.robot (pick and omit on attributes and core members),
    # 018_18.robot and QueryEntities/019_18.robot (BadRequestData), 018_19.robot (nothing left: 404).
    url = f"{ENTITIES}/{CAM}"

    def get(**params: str) -> dict[str, Any]:
        r = client.get(url, params=params, headers=hdr(key_a))
        assert r.status_code == 200, (params, r.text)
        return dict(r.json())

    assert get(pick="deviceState") == {"deviceState": get()["deviceState"]}
    assert "deviceState" not in get(omit="deviceState") and get(omit="deviceState")["id"] == CAM
    assert get(pick="id") == {"id": CAM}
    assert "id" not in get(omit="id")
    assert set(get(pick="id,deviceState")) == {"id", "deviceState"}
    assert "type" not in get(omit="type,deviceState") and "deviceState" not in get(omit="type,deviceState")
    for params in (
        {"pick": "name", "omit": "name"},
        {"pick": "name", "attrs": "category"},
        {"omit": "name", "attrs": "category"},
        {"pick": "id;name"},
        {"pick": "id,locatedAt{name"},
        {"pick": "id,,name"},
    ):
        problem_type(client.get(url, params=params, headers=hdr(key_a)), 400, "BadRequestData")
        q = client.get(ENTITIES, params={"type": "Device", **params}, headers=hdr(key_a))
        problem_type(q, 400, "BadRequestData")
    problem_type(client.get(url, params={"pick": "unknown"}, headers=hdr(key_a)), 404, "ResourceNotFound")
    everything = ",".join(get())
    problem_type(client.get(url, params={"omit": everything}, headers=hdr(key_a)), 404, "ResourceNotFound")
    r = client.get(ENTITIES, params={"type": "Device", "pick": "id"}, headers=hdr(key_a))
    assert r.json() == [{"id": e} for e in sorted([CAM, GW, SPK2, SPK])]
