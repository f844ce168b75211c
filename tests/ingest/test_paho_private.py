"""The fence around paho's internals: checked at import, one clear line when they moved."""

import paho.mqtt.client as paho
import pytest

from ingest import paho_private
from ingest.mqtt import BrokerHealth, IngestConfig, MqttIngest
from ingest.paho_fast import FastClient
from services.registry_cache import RegistryCache


def test_the_installed_paho_has_what_the_fast_path_uses() -> None:
    paho_private._check_methods()
    paho_private.check_client(paho.Client(paho.CallbackAPIVersion.VERSION2))


def test_a_changed_private_method_is_one_line_naming_the_paho_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def _sock_recv(self: paho.Client, size: int, flags: int = 0) -> bytes:
        return b""

    monkeypatch.setattr(paho.Client, "_sock_recv", _sock_recv)
    with pytest.raises(paho_private.PahoMismatch) as exc:
        paho_private._check_methods()
    message = str(exc.value)
    assert "\n" not in message
    assert paho_private.PAHO_VERSION in message and "_sock_recv" in message and "IOC_INGEST_FAST" in message


def test_a_missing_attribute_is_found_when_a_client_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    del c._in_packet  # noqa: SLF001 - as a paho release without it
    with pytest.raises(paho_private.PahoMismatch, match="_in_packet"):
        paho_private.check_client(c)


@pytest.mark.parametrize("fast", [True, False])
def test_the_setting_chooses_the_client(fast: bool) -> None:
    ingest = MqttIngest(
        "postgresql://unused",
        "mqtt://127.0.0.1:1",
        IngestConfig("t", fast=fast),
        RegistryCache(),
        BrokerHealth("t"),
    )
    assert isinstance(ingest.client, FastClient) is fast
    assert isinstance(ingest.client, paho.Client)
