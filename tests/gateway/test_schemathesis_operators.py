"""The operator routes under schemathesis, from the gateway's own /openapi.json, with an admin's token.

Bounded and derandomized (the same examples every run, a few per operation and mode); the long run
is bench/fuzz_http.py. Every answer must be documented (status, content type, body, headers) and no
input may cause a server error.
"""

from collections.abc import Iterator

import pytest

from tests.gateway import fuzz_http


@pytest.fixture
def world(db_url: str) -> Iterator[fuzz_http.World]:
    with fuzz_http.world(db_url) as w:
        yield w


@pytest.mark.timeout(300)
def test_operator_routes_follow_their_openapi_document(world: fuzz_http.World) -> None:
    assert fuzz_http.run(world, fuzz_http.OPERATOR, max_examples=6) >= 20
