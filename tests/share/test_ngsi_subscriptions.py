"""NGSI-LD subscriptions through the gateway (ETSI GS CIM 009 §5.8): create, list, get, update,
delete; each key sees only its own; bad input is a ProblemDetails 400 with the ETSI error type."""

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.ngsi_subscriptions import store
from tests.share.conftest import admin_token, hdr

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
BASE = "/ngsi-ld/v1/subscriptions"


def sub(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Device"}],
        "watchedAttributes": ["deviceState"],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify", "accept": "application/json"}},
    }
    doc.update(over)
    return doc


def create(client: TestClient, key: str, doc: dict[str, Any]) -> str:
    r = client.post(BASE, json=doc, headers=hdr(key))
    assert r.status_code == 201, r.text
    assert r.content == b""
    return r.headers["location"].rsplit("/", 1)[1]


def test_create_get_list_patch_delete_round_trip(client: TestClient, key_a: str) -> None:
    doc = sub(
        id="urn:ngsi-ld:Subscription:tinh-1",
        subscriptionName="Mất kết nối",
        q='deviceState=="offline";kind=="speaker"',
        throttling=30,
        expiresAt="2099-01-01T00:00:00Z",
        notification={
            "attributes": ["deviceState", "name"],
            "format": "keyValues",
            "endpoint": {
                "uri": "https://province.example.vn/ngsi/notify",
                "accept": "application/ld+json",
                "receiverInfo": [
                    {"key": "Authorization", "value": "Bearer s3cret"},
                    {"key": "X-Tinh", "value": "ag"},
                ],
            },
        },
    )
    r = client.post(BASE, json=doc, headers=hdr(key_a))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:tinh-1"

    got = client.get(f"{BASE}/urn:ngsi-ld:Subscription:tinh-1", headers=hdr(key_a))
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in got.headers["link"]
    s = got.json()
    assert s["id"] == "urn:ngsi-ld:Subscription:tinh-1" and s["type"] == "Subscription"
    assert s["status"] == "active" and "isActive" not in s and s["throttling"] == 30  # a default: not shown
    assert s["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert s["expiresAt"] == "2099-01-01T00:00:00Z"
    assert s["q"] == 'deviceState=="offline";kind=="speaker"'
    n = s["notification"]
    assert n["format"] == "keyValues" and n["attributes"] == ["deviceState", "name"] and n["timesSent"] == 0
    assert n["endpoint"]["receiverInfo"] == [
        {"key": "Authorization", "value": "[redacted]"},  # a credential is never returned
        {"key": "X-Tinh", "value": "ag"},
    ]
    assert "lastNotification" not in n and "status" not in n  # never sent yet

    ld = client.get(
        f"{BASE}/urn:ngsi-ld:Subscription:tinh-1", headers=hdr(key_a, Accept="application/ld+json")
    )
    assert ld.headers["content-type"] == "application/ld+json" and "@context" in ld.json()

    r = client.patch(
        f"{BASE}/urn:ngsi-ld:Subscription:tinh-1",
        json={"isActive": False, "q": None, "notification": {"endpoint": {"accept": "application/json"}}},
        headers=hdr(key_a),
    )
    assert r.status_code == 204, r.text
    s = client.get(f"{BASE}/urn:ngsi-ld:Subscription:tinh-1", headers=hdr(key_a)).json()
    assert s["status"] == "paused" and s["isActive"] is False and "q" not in s
    assert s["notification"]["endpoint"]["uri"] == "https://province.example.vn/ngsi/notify"  # kept
    assert s["notification"]["endpoint"]["accept"] == "application/json"
    assert s["notification"]["format"] == "keyValues"

    second = create(client, key_a, sub())
    assert second.startswith("urn:ngsi-ld:Subscription:")
    page = client.get(BASE, params={"limit": 1, "count": "true"}, headers=hdr(key_a))
    assert page.status_code == 200 and page.headers["ngsild-results-count"] == "2"
    assert [x["id"] for x in page.json()] == ["urn:ngsi-ld:Subscription:tinh-1"]
    assert '</ngsi-ld/v1/subscriptions?count=true&limit=1&offset=1>; rel="next"' in page.headers["link"]
    page2 = client.get(BASE, params={"limit": 1, "offset": 1}, headers=hdr(key_a))
    assert [x["id"] for x in page2.json()] == [second] and 'rel="next"' not in page2.headers["link"]

    assert client.delete(f"{BASE}/urn:ngsi-ld:Subscription:tinh-1", headers=hdr(key_a)).status_code == 204
    gone = client.get(f"{BASE}/urn:ngsi-ld:Subscription:tinh-1", headers=hdr(key_a))
    assert gone.status_code == 404 and gone.json()["type"] == ERR + "ResourceNotFound"
    assert client.delete(f"{BASE}/urn:ngsi-ld:Subscription:tinh-1", headers=hdr(key_a)).status_code == 404
    assert [x["id"] for x in client.get(BASE, headers=hdr(key_a)).json()] == [second]


def test_a_key_sees_and_changes_only_its_own_subscriptions(
    client: TestClient, key_a: str, key_all: str
) -> None:
    mine = create(client, key_a, sub())
    theirs = create(client, key_all, sub())
    assert [x["id"] for x in client.get(BASE, headers=hdr(key_a)).json()] == [mine]
    assert [x["id"] for x in client.get(BASE, headers=hdr(key_all)).json()] == [theirs]
    for method in ("get", "delete"):
        r = getattr(client, method)(f"{BASE}/{theirs}", headers=hdr(key_a))
        assert r.status_code == 404 and r.json()["type"] == ERR + "ResourceNotFound", method
    r = client.patch(f"{BASE}/{theirs}", json={"isActive": False}, headers=hdr(key_a))
    assert r.status_code == 404
    assert client.get(f"{BASE}/{theirs}", headers=hdr(key_all)).json()["status"] == "active"
    # An id taken by another key is a conflict, not a way to read theirs.
    r = client.post(BASE, json=sub(id=theirs), headers=hdr(key_a))
    assert r.status_code == 409 and r.json()["type"] == ERR + "AlreadyExists"
    assert client.get(BASE, headers={}).status_code == 401


def test_bad_subscriptions_are_400_with_the_reason(client: TestClient, key_a: str) -> None:
    endpoint = {"uri": "http://127.0.0.1:9/n"}
    cases: list[tuple[dict[str, Any], str, str]] = [
        (sub(watchedAttributes=["deviceStat"]), "BadRequestData", "deviceStat"),
        (sub(notification={"attributes": ["nope"], "endpoint": endpoint}), "BadRequestData", "nope"),
        (sub(notification={"endpoint": {"uri": "ftp://province.example.vn/x"}}), "BadRequestData", "ftp://"),
        (sub(notification={"endpoint": {"uri": "not a url"}}), "BadRequestData", "http"),
        (sub(notification={"endpoint": {**endpoint, "accept": "text/plain"}}), "BadRequestData", "accept"),
        (
            sub(
                notification={
                    "endpoint": {**endpoint, "receiverInfo": [{"key": "Content-Type", "value": "x"}]}
                }
            ),
            "BadRequestData",
            "Content-Type",
        ),
        (sub(entities=[{"type": "Building"}]), "BadRequestData", "Building"),
        (sub(entities=[{"type": "Device", "idPattern": "("}]), "BadRequestData", "idPattern"),
        # a backreference is beyond RE2 (the engine that keeps matching linear in time)
        (sub(entities=[{"type": "Device", "idPattern": "(spk)-\\1"}]), "BadRequestData", "RE2"),
        (
            sub(entities=[{"type": "Device", "id": "urn:ngsi-ld:Device:x"}]),
            "BadRequestData",
            "urn:ngsi-ld:Device",
        ),
        (sub(q="deviceState>>1"), "BadRequestData", "q term"),
        (sub(q='kind=="tractor"'), "BadRequestData", "tractor"),
        # a term on an attribute no Device has: it would never match, so it is refused
        (sub(q='deviceStat=="offline"'), "BadRequestData", "deviceStat"),
        (sub(q='deviceState=="offline"|!batteryLvl'), "BadRequestData", "batteryLvl"),
        (sub(expiresAt="2020-01-01T00:00:00Z"), "BadRequestData", "past"),
        (sub(expiresAt="tomorrow"), "BadRequestData", "expiresAt"),
        (sub(throttling=0), "BadRequestData", "throttling"),
        (sub(type="Subscriptions"), "BadRequestData", "Subscription"),
        (sub(id="1234"), "BadRequestData", "URI"),
        (sub(id="urn:ngsi-ld:Subscription:a/b"), "BadRequestData", "URI"),
        (sub(entities=None, watchedAttributes=None), "BadRequestData", "entities or watchedAttributes"),
        (sub(timeInterval=60), "BadRequestData", "timeInterval"),  # with watchedAttributes
        (sub(timeInterval=1, watchedAttributes=None), "BadRequestData", "timeInterval"),
        (sub(notificationTrigger=["entityCreated"]), "BadRequestData", "notificationTrigger"),
        (sub(timeInterval=60, watchedAttributes=None, throttling=30), "BadRequestData", "timeInterval"),
        ({k: v for k, v in sub().items() if k != "notification"}, "BadRequestData", "notification"),
    ]
    cases.append(({**sub(), "watchedAttributes": None}, "BadRequestData", "null"))  # only PATCH removes
    for doc, kind, words in cases:
        if words != "null":
            doc = {k: v for k, v in doc.items() if v is not None}
        r = client.post(BASE, json=doc, headers=hdr(key_a))
        assert r.status_code == 400, (doc, r.text)
        body = r.json()
        assert body["type"] == ERR + kind and words in body["detail"], (doc, body)
    r = client.post(
        BASE, content=b'{"type": "Subscription",', headers=hdr(key_a, **{"Content-Type": "application/json"})
    )
    assert r.status_code == 400 and r.json()["type"] == ERR + "InvalidRequest", r.text
    # Outside the key's communes: 403, as the entity view answers.
    r = client.post(BASE, json=sub(q='commune=="vong-the"'), headers=hdr(key_a))
    assert r.status_code == 403
    r = client.post(
        BASE,
        json=sub(entities=[{"type": "Device", "id": "urn:ngsi-ld:Device:vong-the:spk-vt-1"}]),
        headers=hdr(key_a),
    )
    assert r.status_code == 403
    assert client.get(BASE, headers=hdr(key_a)).json() == []  # nothing was stored
    ok = create(client, key_a, sub())
    r = client.patch(
        f"{BASE}/{ok}", json={"notification": {"endpoint": {"uri": "ftp://x.example"}}}, headers=hdr(key_a)
    )
    assert r.status_code == 400 and "ftp://" in r.json()["detail"]
    assert (
        client.get(f"{BASE}/{ok}", headers=hdr(key_a))
        .json()["notification"]["endpoint"]["uri"]
        .startswith("http://")
    )
    assert client.get(f"{BASE}/urn:ngsi-ld:Subscription:nope", headers=hdr(key_a)).status_code == 404


def test_expanded_attribute_names_and_status_fields_given_back_are_taken(
    client: TestClient, key_a: str
) -> None:
    doc = sub(watchedAttributes=["https://smartdatamodels.org/dataModel.Device/deviceState"], status="active")
    doc["notification"]["timesSent"] = 4
    sid = create(client, key_a, doc)
    s = client.get(f"{BASE}/{sid}", headers=hdr(key_a)).json()
    assert s["watchedAttributes"] == ["deviceState"] and s["notification"]["timesSent"] == 0


def test_creates_updates_and_deletes_are_audited_without_receiver_credentials(
    client: TestClient, conn: psycopg.Connection, key_a: str
) -> None:
    doc = sub(
        notification={
            "endpoint": {
                "uri": "http://127.0.0.1:9/n",
                "receiverInfo": [{"key": "X-Token", "value": "hunter2"}],
            }
        }
    )
    sid = create(client, key_a, doc)
    client.patch(f"{BASE}/{sid}", json={"isActive": False}, headers=hdr(key_a))
    client.delete(f"{BASE}/{sid}", headers=hdr(key_a))
    token = admin_token(client)
    rows = client.get(
        "/api/v1/audit", params={"actor_kind": "key"}, headers={"Authorization": f"Bearer {token}"}
    ).json()["items"]
    by_action = {r["action"].split(" ")[0]: r for r in rows if "subscriptions" in r["action"]}
    assert set(by_action) == {"POST", "PATCH", "DELETE"}
    assert by_action["POST"]["params"]["subscription_id"] == sid and by_action["POST"]["status"] == 201
    assert by_action["POST"]["params"]["body"]["notification"]["endpoint"]["receiverInfo"] == [
        {"header": "X-Token"}  # the value left out ("key" itself is a name the audit log redacts)
    ]
    assert "hunter2" not in str(rows)
    assert by_action["PATCH"]["params"]["body"] == {"isActive": False}
    assert by_action["DELETE"]["params"]["subscription_id"] == sid and by_action["DELETE"]["status"] == 204
    assert by_action["POST"]["communes"] == ["thoai-giang"]


def test_the_concise_format_drops_types_and_keeps_what_else_is_said() -> None:
    from services.ngsi_subscriptions.matching import concise

    e = {
        "id": "urn:ngsi-ld:Device:thoai-giang:cam-ubnd-1",
        "type": "Device",
        "deviceState": {"type": "Property", "value": "online", "observedAt": "2026-12-03T01:00:00Z"},
        "kind": {"type": "Property", "value": "camera"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [105.33, 10.39]}},
        "refParent": {"type": "Relationship", "object": "urn:ngsi-ld:Device:thoai-giang:gw-trung-binh"},
        "dateLastValueReported": {
            "type": "Property",
            "value": {"@type": "DateTime", "@value": "2026-12-03T01:00:00Z"},
        },
    }
    assert concise(e) == {
        "id": "urn:ngsi-ld:Device:thoai-giang:cam-ubnd-1",
        "type": "Device",
        "deviceState": {"value": "online", "observedAt": "2026-12-03T01:00:00Z"},
        "kind": "camera",
        "location": {"type": "Point", "coordinates": [105.33, 10.39]},
        "refParent": {"object": "urn:ngsi-ld:Device:thoai-giang:gw-trung-binh"},
        "dateLastValueReported": {"value": {"@type": "DateTime", "@value": "2026-12-03T01:00:00Z"}},
    }


def test_a_key_holds_a_bounded_number_of_subscriptions(
    client: TestClient, key_a: str, key_all: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "MAX_PER_KEY", 2)
    first = create(client, key_a, sub())
    create(client, key_a, sub())
    r = client.post(BASE, json=sub(), headers=hdr(key_a))
    assert r.status_code == 400 and "delete one first" in r.json()["detail"]
    create(client, key_all, sub())  # another key's count is its own
    assert client.delete(f"{BASE}/{first}", headers=hdr(key_a)).status_code == 204
    create(client, key_a, sub())


def test_attribute_names_of_other_communes_are_neither_taken_nor_told(
    client: TestClient, conn: psycopg.Connection, key_a: str, key_all: str
) -> None:
    conn.execute("UPDATE device_state SET metrics = '{\"vt_only_field\": 1}' WHERE device_id = 'spk-vt-1'")
    conn.commit()
    r = client.post(BASE, json=sub(watchedAttributes=["vt_only_field"]), headers=hdr(key_a))
    assert r.status_code == 400 and "known:" in r.json()["detail"], r.text
    r = client.post(BASE, json=sub(watchedAttributes=["nope"]), headers=hdr(key_a))
    assert r.status_code == 400 and "vt_only_field" not in r.text
    assert (
        client.post(BASE, json=sub(watchedAttributes=["vt_only_field"]), headers=hdr(key_all)).status_code
        == 201
    )
