"""Errors of the NGSI-LD view are RFC 7807 ProblemDetails with NGSI-LD error types (CIM 009 5.5);
the rest of the API keeps SPEC §6's {"error": ...} shape."""

from typing import Any

import httpx2
import psycopg
from fastapi.testclient import TestClient

from tests.share.conftest import hdr, make_key

ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
CAM = "urn:ngsi-ld:Device:thoai-giang:cam-ubnd-1"


def problem(r: httpx2.Response, status: int, error_type: str) -> dict[str, Any]:
    """The ProblemDetails body of an answer, checked for shape, status and type."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail"}, body
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"] == (error_type if error_type == "about:blank" else ERRORS + error_type), body
    return body


def test_bad_query_parameters_are_bad_request_data_and_unknown_ones_invalid_request(
    client: TestClient, key_a: str
) -> None:
    entities = "/ngsi-ld/v1/entities"
    bad_q = client.get(entities, headers=hdr(key_a), params={"type": "Device", "q": "x>"})
    assert "not well formed" in problem(bad_q, 400, "BadRequestData")["detail"]
    problem(
        client.get(entities, headers=hdr(key_a), params={"type": "Device", "limit": 0}), 400, "BadRequestData"
    )
    problem(client.get(entities, headers=hdr(key_a)), 400, "BadRequestData")  # type, attrs, q or geo
    problem(client.get(f"{entities}/not-a-urn", headers=hdr(key_a)), 400, "BadRequestData")
    temporal = f"/ngsi-ld/v1/temporal/entities/{CAM}"
    problem(client.get(temporal, headers=hdr(key_a), params={"timerel": "between"}), 400, "BadRequestData")
    unknown = client.get(entities, headers=hdr(key_a), params={"type": "Device", "expand": "all"})
    assert "expand" in problem(unknown, 400, "InvalidRequest")["detail"]


def test_unknown_entity_and_unknown_route_are_resource_not_found(client: TestClient, key_a: str) -> None:
    retired = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:thoai-giang:spk-old", headers=hdr(key_a))
    assert "spk-old" in problem(retired, 404, "ResourceNotFound")["detail"]
    never = client.get(
        "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Device:thoai-giang:spk-9", headers=hdr(key_a)
    )
    problem(never, 404, "ResourceNotFound")
    problem(client.get("/ngsi-ld/v1/csourceRegistrations", headers=hdr(key_a)), 404, "ResourceNotFound")


def test_missing_bad_and_out_of_scope_keys_are_401_and_403_problems(client: TestClient, key_a: str) -> None:
    missing = client.get("/ngsi-ld/v1/entities", params={"type": "Device"})
    problem(missing, 401, "about:blank")
    assert missing.json()["title"] == "Unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    problem(client.get(f"/ngsi-ld/v1/entities/{CAM}", headers=hdr("ioc_not-a-key")), 401, "about:blank")
    other = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:vong-the:spk-vt-1", headers=hdr(key_a))
    assert problem(other, 403, "about:blank")["title"] == "Forbidden"
    other_q = client.get(
        "/ngsi-ld/v1/entities", headers=hdr(key_a), params={"type": "Device", "q": 'commune=="vong-the"'}
    )
    problem(other_q, 403, "about:blank")


def test_an_accept_without_json_or_json_ld_is_406(client: TestClient, key_a: str) -> None:
    for accept in ("application/xml", "text/csv", "application/json;q=0, text/html"):
        r = client.get(f"/ngsi-ld/v1/entities/{CAM}", headers=hdr(key_a, Accept=accept))
        assert problem(r, 406, "about:blank")["title"] == "Not Acceptable"
    # What NGSI-LD clients and browsers send is served.
    for accept in ("application/ld+json", "application/json", "application/*", "text/html, */*;q=0.8", ""):
        r = client.get(f"/ngsi-ld/v1/entities/{CAM}", headers=hdr(key_a, Accept=accept))
        assert r.status_code == 200, (accept, r.text)
    ctx = client.get("/ngsi-ld/v1/jsonldContexts/commune-ioc.jsonld", headers={"Accept": "image/png"})
    problem(ctx, 406, "about:blank")


def test_over_the_rate_is_a_429_problem_with_retry_after(
    client: TestClient, conn: psycopg.Connection
) -> None:
    key = make_key(conn, ["thoai-giang"], rate=1, name="slow")
    assert client.get(f"/ngsi-ld/v1/entities/{CAM}", headers=hdr(key)).status_code == 200
    r = client.get(f"/ngsi-ld/v1/entities/{CAM}", headers=hdr(key))
    assert problem(r, 429, "about:blank")["title"] == "Too Many Requests"
    assert int(r.headers["retry-after"]) >= 1


def test_share_api_errors_keep_their_own_shape(client: TestClient, key_a: str) -> None:
    r = client.get("/api/share/v1/status", headers=hdr(key_a), params={"commune": "vong-the"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden" and "type" not in r.json()
    r = client.get("/api/share/v1/status", params={"bogus": "1"}, headers=hdr(key_a))
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    assert client.get("/api/share/v1/nothing", headers=hdr(key_a)).json()["error"]["code"] == "not_found"
