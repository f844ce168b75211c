"""Property-based tests of the share routes from /openapi.json (schemathesis), with a valid key.

Bounded: a few examples per operation, no example database. Every answer must be documented
(status, content type, body schema) and no input may cause a server error.
"""

from collections.abc import Iterator

import psycopg
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import keys
from tests.share import world


@pytest.fixture
def share_api(db_url: str) -> Iterator[tuple[FastAPI, str]]:
    with psycopg.connect(db_url) as conn:
        world.seed(conn)
        world.change(conn, "spk-trung-binh-1", "online", world_time())
        world.sample(conn, "spk-trung-binh-1", world_time(), {"volume": 10})
        _, secret = keys.create(conn, "schemathesis", ["thoai-giang"], None, 1_000_000)
        conn.commit()
    app = create_app(GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None))  # type: ignore[call-arg]
    with app.state.pool:
        yield app, secret


def world_time():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
def api_schema(share_api: tuple[FastAPI, str]) -> schemathesis.BaseSchema:
    app, _ = share_api
    return schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=r"^/(api/share/|ngsi-ld/)")


def test_share_routes_follow_their_openapi_schema(
    api_schema: schemathesis.BaseSchema, share_api: tuple[FastAPI, str]
) -> None:
    _, secret = share_api
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            # Opaque cursors and the q grammar cannot be told in a schema: a schema-valid but
            # meaningless value gets a documented 400, which this check would call a failure.
            case.call_and_validate(
                headers={"Authorization": f"Bearer {secret}"}, excluded_checks=[positive_data_acceptance]
            )

        check()
