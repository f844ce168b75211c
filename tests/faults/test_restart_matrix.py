"""The restart and kill matrix at a small size (bench/restart_matrix.py runs it at 30,000):
PostgreSQL, Mosquitto, ingest, the gateway and the alerts service are each killed, restarted
or frozen while a device streams QoS 1 statuses; every acknowledged message is stored, once.

One PostgreSQL, Mosquitto, ingest, gateway and alerts service of the module's own serve every
case in turn (each case has its own block of messages and device session): the matrix fits in
a couple of minutes, and each case starts from the state the previous fault left.
"""

from collections.abc import Iterator

import pytest

from tests.faults.matrix import CASES, Case, Matrix
from tests.fix_pg import private_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    with Matrix(private_dir("ioc-matrix-")) as m:
        yield m


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_acknowledged_message_is_stored_once(case: Case, matrix: Matrix) -> None:
    r = matrix.run(case, n=2000, rate=1000, stop_s=2.0)
    print(r.json())
    assert r.acknowledged == r.published, r
    assert r.lost == 0 and r.duplicates == 0, r
    assert r.stored == r.published, r
