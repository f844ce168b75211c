"""What one poll of a device found, and the one interface every poller implements (SPEC §8).

The poll scheduler (`ingest.sources.poll`) owns timing, partitioning, `fail_after` and publishing;
a prober only asks the device once and says what it heard, as a `Reading`: it never raises for
anything the device or the network did (a timeout, a refusal, a malformed answer is a Reading with
`ok=False` and its `error_code`). One exception: a device that answered with data that does not
fit its mapping (HTTP `fields`) is up — `ok=True` with `error_code="malformed"`; the scheduler
dead-letters the data (a prober may leave the raw answer in `state["payload"]`).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from services.models import Device
from services.sources.model import Source


@dataclass(frozen=True)
class Reading:
    """One probe's result: metrics to publish (the kind's fields and more), events, and how it went."""

    ok: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # (type, severity, fields)
    # the device answers but refuses our credentials (SNMP v3, HTTP 401/403): `auth_failed`
    auth_failed: bool = False
    error: str | None = None  # short English detail (log, device page)
    # timeout | refused | unreachable | auth | malformed | http_status | text_missing | tls | dns ...
    error_code: str | None = None
    rtt_ms: float | None = None
    # the vendor server listing the device is lost or refuses us: nothing is said of the device
    # (its state freezes; the server is one source_lost alert)
    source_down: bool = False


class Prober(Protocol):
    """Asks one device once. `state` is the scheduler's per-device dict, kept between polls of that
    device in this process (counters for rates, the last sysUpTime); it starts empty after a
    takeover. `secrets` are the source's decrypted secrets (SNMP community or keys, HTTP password)."""

    kind: ClassVar[str]

    async def probe(
        self, device: Device, source: Source, secrets: Mapping[str, str], state: dict[str, Any]
    ) -> Reading: ...
