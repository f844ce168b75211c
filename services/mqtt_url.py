"""Parsing IOC_MQTT_URL (`mqtt://[user:pass@]host:port`, `mqtts://` for TLS)."""

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from services.errors import ConfigError


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse(url: str) -> MqttTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError("IOC_MQTT_URL must look like mqtt://[user:pass@]host:port")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as err:
        raise ConfigError("IOC_MQTT_URL has a bad port") from err
    return MqttTarget(
        parts.hostname,
        port,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        tls,
    )
