"""What one probe of a polled source (SNMP, ping, TCP, HTTP) found, and the prober contract the
poll scheduler drives (ingest/sources/poll.py)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from services.models import Device
from services.sources.model import Source


@dataclass(frozen=True)
class Reading:
    """One probe's result; a refusal of credentials is ok=False, auth_failed=True."""

    ok: bool
    # SPEC §4 field names of the kind, plus `extra` names
    metrics: dict[str, Any] = field(default_factory=dict)
    # (type, severity, fields), e.g. ("rebooted", "warning", {...})
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    auth_failed: bool = False
    # short English detail for the log and the device page
    error: str | None = None
    # timeout | refused | unreachable | auth | malformed | http_status | text_missing | tls | dns ...
    # (the page translates codes)
    error_code: str | None = None
    rtt_ms: float | None = None


class Prober(Protocol):
    """Probes one device of its kind; never raises for the device's own faults."""

    kind: ClassVar[str]

    # `state` is a per-device dict the scheduler keeps between polls (previous counters, uptime).
    async def probe(
        self, device: Device, source: Source, secrets: Mapping[str, str], state: dict[str, Any]
    ) -> Reading: ...
