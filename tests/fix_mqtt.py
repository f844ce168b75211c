"""Mosquitto for tests: a private broker per test on a free loopback port, with the same
configuration (persistence, deep queues) that `ioc up` uses."""

from collections.abc import Iterator

import pytest

from cli.embedded import Mosquitto
from tests.fix_pg import private_dir


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    m = Mosquitto(private_dir("ioc-mqtt-"))
    m.start()
    yield m
    m.stop()


@pytest.fixture
def mqtt_url(broker: Mosquitto) -> str:
    return broker.url()
