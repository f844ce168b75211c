"""/openapi.json tells what the gateway really answers: error statuses with their bodies, and security.

Before, operator routes listed only 200 and FastAPI's own 422 (a shape the gateway never sends) and
no security scheme was declared, so generated clients broke on the first 400 or 401.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.gateway.conftest import gateway_settings

OPEN = {"/healthz", "/readyz", "/metrics"}
METHODS = {"get", "post", "put", "delete", "patch"}


@pytest.fixture(scope="module")
def doc(shared_db: str) -> Iterator[dict[str, Any]]:
    with TestClient(create_app(gateway_settings(shared_db))) as c:
        r = c.get("/openapi.json")
        assert r.status_code == 200
        yield r.json()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method.upper(), path, op


def resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def test_security_schemes_are_declared(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["operatorToken"] == schemes["operatorToken"] | {"type": "http", "scheme": "bearer"}
    assert schemes["sessionCookie"] == schemes["sessionCookie"] | {
        "type": "apiKey",
        "in": "cookie",
        "name": "ioc_session",
    }
    assert schemes["apiKey"] == schemes["apiKey"] | {"type": "http", "scheme": "bearer"}


def test_each_route_declares_who_may_call_it(doc: dict[str, Any]) -> None:
    seen = set()
    for method, path, op in operations(doc):
        security = op.get("security")
        if path in OPEN or path == "/api/v1/auth/login" or path.startswith("/media/"):
            assert not security, (method, path)  # /media/{id} is signed instead
        elif path.startswith(("/api/share/", "/ngsi-ld/")):
            assert security == [{"apiKey": []}], (method, path)
        else:
            assert path.startswith("/api/v1/"), path
            assert security == [{"operatorToken": []}, {"sessionCookie": []}], (method, path)
        seen.add(path)
    assert OPEN <= seen and "/api/v1/devices" in seen and "/ngsi-ld/v1/entities" in seen


def test_operator_routes_document_their_error_answers_in_the_error_shape(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        if not path.startswith("/api/v1/"):
            continue
        responses = op["responses"]
        expected = {"400"} | ({"401"} if path != "/api/v1/auth/login" else {"401", "429"})
        if "{" in path:
            expected.add("404")
        if "requestBody" in op:
            expected.add("422")
        else:
            assert "422" not in responses, (method, path)  # query/path mistakes are 400
        if method != "GET" and path != "/api/v1/auth/login":
            expected.add("403")
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            schema = responses[status]["content"]["application/json"]["schema"]
            body = resolve(doc, schema["$ref"])
            assert body["required"] == ["error"], (method, path, status)
            detail = resolve(doc, body["properties"]["error"]["$ref"])
            assert {"code", "message"} <= set(detail["required"])


def test_role_commune_and_state_refusals_are_documented_where_they_happen(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert "403" in paths["/api/v1/audit"]["get"]["responses"]  # admins only
    assert "403" in paths["/api/v1/devices"]["get"]["responses"]  # commune= outside the user's
    assert "403" in paths["/api/v1/reports/availability"]["get"]["responses"]
    assert "403" not in paths["/api/v1/auth/me"]["get"]["responses"]
    for action in ("ack", "resolve", "assign"):
        assert "409" in paths[f"/api/v1/alerts/{{alert_id}}/{action}"]["post"]["responses"]
    login = paths["/api/v1/auth/login"]["post"]["responses"]
    assert "Retry-After" in login["429"]["headers"]
    # `commune=` naming no commune (schemathesis found the undocumented 404)
    assert "404" in paths["/api/v1/reports/criteria"]["get"]["responses"]


def test_share_and_ngsi_errors_keep_their_shapes_and_fastapis_422_is_gone(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        responses = op["responses"]
        if path.startswith("/ngsi-ld/"):
            assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ProblemDetails"
            ), path
        if path.startswith("/api/share/"):
            assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
        if path.startswith(("/api/share/", "/ngsi-ld/")):
            assert "422" not in responses and "503" in responses, (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_open_routes_document_what_they_answer(doc: dict[str, Any]) -> None:
    ready = doc["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(ready)
    assert "status" in ready["503"]["content"]["application/json"]["schema"]["properties"]
    assert "401" not in doc["paths"]["/healthz"]["get"]["responses"]
