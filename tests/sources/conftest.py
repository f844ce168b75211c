"""Fixtures of the source tests: a client publishing on the IOC's broker (the vendor broker and its
devices are tests/fix_vendor.py)."""

from collections.abc import Iterator

import pytest

from tests.ingest.conftest import Publisher


@pytest.fixture
def pub(mqtt_url: str) -> Iterator[Publisher]:
    p = Publisher(mqtt_url, client_id="test-sources-pub")
    yield p
    p.close()
