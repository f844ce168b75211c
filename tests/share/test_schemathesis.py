"""Property-based tests of the share and NGSI-LD routes from /openapi.json (schemathesis), with a valid key.

Bounded and derandomized: a few examples per operation, schema-following (positive) and
schema-breaking (negative), no example database; the long run is bench/fuzz_http.py. Every answer
must be documented (status, content type, body schema, headers) and no input may cause a server error.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from schemathesis.generation.modes import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import keys
from tests.gateway import fuzz_http
from tests.share import world


@pytest.fixture
def share_world(db_url: str) -> Iterator[fuzz_http.World]:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with psycopg.connect(db_url) as conn:
        world.seed(conn)
        world.change(conn, "spk-trung-binh-1", "online", an_hour_ago)
        world.sample(conn, "spk-trung-binh-1", an_hour_ago, {"volume": 10})
        _, secret = keys.create(conn, "schemathesis", ["thoai-giang"], None, 1_000_000)
        conn.commit()
    app = create_app(GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None))  # type: ignore[call-arg]
    try:
        with app.state.pool:
            yield fuzz_http.World(app, db_url, admin={}, key={"Authorization": f"Bearer {secret}"})
    finally:
        shutdown_lifespans()  # see tests.gateway.fuzz_http.world


@pytest.mark.timeout(300)
def test_share_routes_follow_their_openapi_schema(share_world: fuzz_http.World) -> None:
    positive = fuzz_http.run(share_world, fuzz_http.SHARE, max_examples=12, modes=(GenerationMode.POSITIVE,))
    assert positive >= 9
    fuzz_http.run(share_world, fuzz_http.SHARE, max_examples=4, modes=(GenerationMode.NEGATIVE,))
