"""Regression tests of request input: each one a finding (issue #13 item 7, the HTTP fuzzing of #12)
that answered 500 before, on the real gateway and database."""

import base64
from collections.abc import Callable, Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from services import keys
from tests.gateway.conftest import gateway_settings

Headers = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
def client(shared_db: str) -> Iterator[TestClient]:
    # Server errors as answers (not raised in the test): a 500 is what the old code gave.
    with TestClient(create_app(gateway_settings(shared_db)), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def key(shared_db: str) -> dict[str, str]:
    with psycopg.connect(shared_db) as conn:
        _, secret = keys.create(conn, "regressions", None, None, 1_000_000)
    return {"Authorization": f"Bearer {secret}"}


def error_of(r, status: int = 400) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] and err["message"]
    return str(err["message"])


# --- NUL and control characters (#13 item 7) ---

NUL_IN_QUERY = [
    "/api/v1/devices?commune=a%00b",
    "/api/v1/status?village=a%00b",
    "/api/v1/alerts?commune=a%00",
    "/api/v1/audit?actor=a%00",
    "/api/v1/maintenance?commune=a%00",
    "/api/v1/alerts?device_id=%00",
    "/api/v1/alerts?assignee=x%00",
]


@pytest.mark.parametrize("url", NUL_IN_QUERY)
def test_nul_in_an_operator_filter_is_400_naming_the_parameter(
    client: TestClient, ro_user: Headers, url: str
) -> None:
    name = url.split("?")[1].split("=")[0]
    assert name in error_of(client.get(url, headers=ro_user()))


def test_nul_in_a_path_is_400(client: TestClient, ro_user: Headers) -> None:
    assert "path" in error_of(client.get("/api/v1/devices/a%00b", headers=ro_user()))


def test_encoded_newline_in_a_path_is_400(client: TestClient, ro_user: Headers) -> None:
    error_of(client.get("/api/v1/devices/x%0d%0aforged", headers=ro_user()))


def test_control_characters_in_a_query_are_400_keeping_the_connection(
    client: TestClient, ro_user: Headers
) -> None:
    for ch in ("%01", "%09", "%0a", "%1f", "%7f"):
        error_of(client.get(f"/api/v1/devices?village=a{ch}", headers=ro_user()))
    # The same client goes on: nothing was dropped.
    assert client.get("/api/v1/devices", headers=ro_user()).status_code == 200


def test_nul_in_a_share_filter_is_400(client: TestClient, key: dict[str, str]) -> None:
    error_of(client.get("/api/share/v1/devices?commune=a%00", headers=key))


def test_nul_in_the_ngsi_q_is_a_problem_details_400(client: TestClient, key: dict[str, str]) -> None:
    r = client.get('/ngsi-ld/v1/entities?type=Device&q=name=="a%00"', headers=key)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"].endswith("/BadRequestData") and body["status"] == 400 and "'q'" in body["detail"]


def test_plus_and_tab_free_values_still_pass(client: TestClient, ro_user: Headers) -> None:
    r = client.get("/api/v1/devices/spk-xom-1/events?from=2026-01-01T00:00:00+07:00", headers=ro_user())
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('{"comment": "a\\u0000b"}', "comment"),
        ('{"comment": "a\\ud800b"}', "comment"),
        ('{"comment": "\\udc00"}', "comment"),
        ('{"comm\\u0000ent": "x"}', "comm"),
        (b'{"comment": "a\x00b"}', "NUL"),
    ],
)
def test_unstorable_text_in_a_json_body_is_400(
    client: TestClient, ro_user: Headers, body: str | bytes, where: str
) -> None:
    r = client.post(
        "/api/v1/alerts/1/ack", content=body, headers={**ro_user(), "content-type": "application/json"}
    )
    assert where in error_of(r)


def test_a_json_body_too_deep_for_the_parser_is_400(client: TestClient, ro_user: Headers) -> None:
    r = client.put("/api/v1/alert-rules", content="[" * 100_000 + "]" * 100_000, headers=ro_user())
    assert "nested" in error_of(r)


def test_escaped_tab_and_newline_and_a_valid_pair_in_a_body_are_not_refused(
    client: TestClient, ro_user: Headers
) -> None:
    r = client.post(
        "/api/v1/alerts/999999/ack",
        content='{"comment": "line\\none\\ttab \\ud83d\\ude00"}',
        headers={**ro_user(), "content-type": "application/json"},
    )
    assert r.status_code == 404, r.text  # reached the route: no such alert


# --- times near year 1 or 9999 (#13 item 7): OverflowError or PostgreSQL's refusal, a 500 ---

OPERATOR_TIMES = [
    "/api/v1/reports/availability?to=0001-01-01",
    "/api/v1/reports/availability?from=9999-12-31T00:00:00-14:00",
    "/api/v1/devices/spk-xom-1/events?from=0001-01-01T00:00:00%2B05:00",
    "/api/v1/devices/spk-xom-1/events?to=9999-12-31T23:59:59-05:00",
    "/api/v1/devices/spk-xom-1/history?to=0001-01-01",
    "/api/v1/devices/spk-xom-1/history?bucket=999999999d",
    "/api/v1/audit?from=0001-01-01T00:00:00%2B05:00",
    "/api/v1/audit?to=9999-12-31T23:59:59-05:00",
    "/api/v1/alerts?since=9999-12-31T23:59:59-05:00",
    "/api/v1/alerts/stats?from=0001-01-01T00:00:00%2B05:00",
]
SHARE_TIMES = [
    "/api/share/v1/availability?to=0001-01-01T00:00:00",
    "/api/share/v1/history?device=spk-xom-1&bucket=999999999d",
    "/api/share/v1/history?device=spk-xom-1&bucket=1h&to=0001-01-02",
    "/api/share/v1/alerts?since=0001-01-01T00:00:00%2B05:00",
    "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Device:long-thanh:spk-xom-1"
    "?timerel=before&timeAt=0001-01-01T00:00:00%2B05:00",
]


@pytest.mark.parametrize("url", OPERATOR_TIMES)
def test_a_time_out_of_range_on_an_operator_route_is_400_naming_it(
    client: TestClient, ro_user: Headers, url: str
) -> None:
    name = next(n for n in ("from", "to", "since", "bucket") if f"{n}=" in url.split("?")[1])
    message = error_of(client.get(url, headers=ro_user()))
    assert name in message and ("range" in message or "wider" in message)


@pytest.mark.parametrize("url", SHARE_TIMES)
def test_a_time_out_of_range_on_a_share_route_is_400(
    client: TestClient, key: dict[str, str], url: str
) -> None:
    r = client.get(url, headers=key)
    assert r.status_code == 400, r.text


def test_a_maintenance_window_at_year_9999_is_refused(client: TestClient, ro_user: Headers) -> None:
    r = client.post(
        "/api/v1/maintenance",
        json={
            "commune": "thoai-giang",
            "starts_at": "9999-12-31T23:00:00-05:00",
            "ends_at": "9999-12-31T23:59:59-05:00",
        },
        headers=ro_user(),
    )
    assert "starts_at" in error_of(r, 422)


def test_a_cursor_holding_a_time_out_of_range_is_400(client: TestClient, ro_user: Headers) -> None:
    cursor = base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+05:00"]').decode().rstrip("=")
    r = client.get(f"/api/v1/devices/spk-xom-1/history?cursor={cursor}", headers=ro_user())
    assert "cursor" in error_of(r)


def test_times_inside_the_range_still_answer(client: TestClient, ro_user: Headers) -> None:
    r = client.get(
        "/api/v1/devices/spk-xom-1/history?from=1970-01-01T00:00:00Z&to=1971-01-01T00:00:00Z&bucket=1d",
        headers=ro_user(),
    )
    assert r.status_code == 200, r.text


# --- unknown query parameters (#13 item 9): ignored by operator routes, refused by share routes ---

UNKNOWN = [
    "/api/v1/devices?comune=thoai-giang",
    "/api/v1/status?_=1",
    "/api/v1/devices/spk-xom-1?x=1",
    "/api/v1/devices/spk-xom-1/history?buckets=1h",
    "/api/v1/alerts?sate=open",
    "/api/v1/alerts/stats?groupby=kind",
    "/api/v1/alert-rules?x=1",
    "/api/v1/audit?actor_knd=user",
    "/api/v1/maintenance?village=trung-binh",
    "/api/v1/reports/availability?groupby=kind",
    "/api/v1/users?role=admin",
    "/api/v1/auth/me?x=1",
]


@pytest.mark.parametrize("url", UNKNOWN)
def test_an_unknown_parameter_on_an_operator_route_is_400_naming_it(
    client: TestClient, ro_user: Headers, url: str
) -> None:
    name = url.split("?")[1].split("=")[0]
    assert f"{name}: Extra inputs are not permitted" in error_of(client.get(url, headers=ro_user()))


def test_declared_parameters_and_aliases_are_accepted(client: TestClient, ro_user: Headers) -> None:
    for url in (
        "/api/v1/devices?commune=thoai-giang&village=trung-binh&kind=camera&state=online&limit=5",
        "/api/v1/alerts/stats?from=2026-01-01&to=2026-02-01&group_by=kind",
        "/api/v1/reports/availability?from=2026-01-01&to=2026-01-02&group_by=kind",
        "/api/v1/audit?actor_kind=user&from=2026-01-01",
    ):
        r = client.get(url, headers=ro_user())
        assert r.status_code == 200, (url, r.text)


def test_a_nul_in_a_sign_in_is_400_and_no_failed_attempt(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "admin\u0000", "password": "x"})
    assert "username" in error_of(r)
