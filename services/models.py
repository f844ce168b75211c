"""Domain models: plain frozen dataclasses, no I/O."""

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.sources.model import Broker, Source

KINDS = ("camera", "speaker", "eboard", "wifi", "gateway")
ROLES = ("admin", "operator", "technician", "viewer")
DEFAULT_HEARTBEAT_S = 60
DEFAULT_POLL_S = 30
# A device is online while its last status is younger than this many heartbeats.
LIVENESS_FACTOR = 3
# Sources the IOC polls (ingest.sources.poll); a survivor takes a dead poller's devices over within
# this long (SPEC §8), so silence shorter than a poll period plus this is no outage.
POLLED_SOURCES = ("snmp", "ping", "tcp", "http")
TAKEOVER_S = 60


class State(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"
    MAINTENANCE = "maintenance"
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True)
class Commune:
    id: str
    name: str
    district: str | None = None
    province: str | None = None
    village_term: str | None = None  # what it calls its villages (ấp, xóm…); None: read from their names


@dataclass(frozen=True)
class Village:
    commune_id: str
    id: str
    name: str
    # the commune it belonged to before the 2025 reform merged communes (its name), if any
    former_commune: str | None = None


@dataclass(frozen=True)
class Onvif:
    """How to reach a camera; the password is kept apart, encrypted."""

    host: str
    port: int = 80
    username: str | None = None
    path: str = "/onvif/device_service"
    poll_s: int = DEFAULT_POLL_S


@dataclass(frozen=True)
class Device:
    id: str
    commune_id: str
    kind: str
    village_id: str | None = None
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    parent_id: str | None = None
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    onvif: Onvif | None = None
    retired_at: datetime | None = None
    # how the IOC hears it when it does not speak SPEC §4 (services.sources); secrets kept apart
    source: Source | None = None

    @property
    def liveness_window_s(self) -> int:
        """How long a device stays online without news: 3 heartbeats (3 polls for cameras; for
        polled sources 3 polls, or a poll and a poller's takeover with its probe if that is longer)."""
        period = self.onvif.poll_s if self.kind == "camera" and self.onvif else self.heartbeat_s
        if self.polled:
            src = self.source
            poll_s = int(getattr(src, "poll_s", DEFAULT_POLL_S))
            timeout_s = math.ceil(float(getattr(src, "timeout_s", 0)))
            return max(LIVENESS_FACTOR * poll_s, poll_s + TAKEOVER_S + timeout_s)
        return LIVENESS_FACTOR * period

    @property
    def polled(self) -> bool:
        """Heard by polling it (SNMP, ping, TCP, HTTP): its statuses carry `reachable`/`auth_failed`."""
        return self.source is not None and self.source.kind in POLLED_SOURCES

    @property
    def source_broker(self) -> str | None:
        """The broker id a vendor MQTT device is heard through (None: not one)."""
        return getattr(self.source, "broker_id", None)


@dataclass(frozen=True)
class Registry:
    """A parsed registry file, validated, ready to upsert."""

    communes: tuple[Commune, ...]
    villages: tuple[Village, ...]
    devices: tuple[Device, ...]
    # device id -> plaintext camera password (encrypted before it is stored)
    passwords: dict[str, str] = field(default_factory=dict)
    # MQTT brokers other than the IOC's own, and their passwords (encrypted before they are stored)
    brokers: tuple[Broker, ...] = ()
    broker_passwords: dict[str, str] = field(default_factory=dict)
    # profiles the file defines (services.sources.profiles.Profile), by name
    profiles: dict[str, Any] = field(default_factory=dict)
    # device id -> the secrets of its source (SNMP community or v3 keys, HTTP password)
    source_secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    # where each device is in the file, for errors found when the import checks the database
    where: str = "registry"
    lines: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Liveness:
    """What the state machine knows of one device."""

    kind: str
    window_s: int
    last_seen: datetime | None
    availability: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    in_maintenance: bool = False
    # heard by polling (Device.polled): `reachable` and `auth_failed` count, as for cameras
    polled: bool = False
    # heard through a vendor broker that refuses the IOC's credentials (SPEC §8)
    source_refused: bool = False
