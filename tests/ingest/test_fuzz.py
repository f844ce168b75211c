"""Property-based test of ingest on the real stack: generated traffic (tests/ingest/fuzzing.py)
through a real Mosquitto into a real ingest and PostgreSQL. Seeded and bounded here; the long
run is bench/fuzz_ingest.py (`make fuzz`)."""

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from ingest.service import IngestService
from services.registry_cache import RegistryCache
from tests.ingest.conftest import Publisher
from tests.ingest.fuzzing import Checker, Message, traffic

EXAMPLES = 40


@pytest.fixture
def checker(ingest: IngestService, pub: Publisher, db_url: str) -> Checker:
    cache = RegistryCache()
    with psycopg.connect(db_url) as conn:
        cache.refresh_if_due(conn, force=True)
    writer = ingest.mqtt._writer  # noqa: SLF001 - the test watches the thread itself
    return Checker(db_url, cache.devices, pub.publish_many, lambda: writer is not None and writer.is_alive())


@pytest.mark.timeout(300)
def test_generated_traffic_never_stops_ingest_and_every_message_lands_once(checker: Checker) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(traffic())
    def run(msgs: list[Message]) -> None:
        checker.run(msgs)

    run()
    assert checker.examples >= EXAMPLES
