"""Devices that do not speak the IOC's MQTT (SPEC §8): the `source` models (`model`), reading them
from the registry (`spec`), profiles (`profiles`) and their storage (`store`)."""

from services.sources.model import (
    IOC_BROKER,
    SOURCE_KINDS,
    Broker,
    HttpSource,
    MqttSource,
    PingSource,
    SnmpSource,
    Source,
    TcpSource,
    from_json,
    public,
    to_json,
)

__all__ = [
    "IOC_BROKER",
    "SOURCE_KINDS",
    "Broker",
    "HttpSource",
    "MqttSource",
    "PingSource",
    "SnmpSource",
    "Source",
    "TcpSource",
    "from_json",
    "public",
    "to_json",
]
