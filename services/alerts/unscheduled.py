"""`unscheduled_broadcast` (SPEC §9): a speaker that says it is playing while no broadcast of ours
plays on it, from a source the commune does not allow — a hijacked radio is a reported incident.

"Ours" is a delivery the device was sent and has not finished (`sent`, `accepted`, `playing`): a
speaker that took our command plays our audio, whatever its status says of the source. A speaker
that reports no `source` at all (a relay that only says its amplifier is on) is judged as the source
`none`, so a commune whose relays carry the FM station may allow `none`.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

RULE = "unscheduled_broadcast"
NO_SOURCE = "none"


def broadcasting(conn: psycopg.Connection) -> frozenset[str]:
    """The devices one of our broadcasts is on now (deliveries_open serves this)."""
    rows = conn.execute(
        "SELECT DISTINCT device_id FROM deliveries WHERE state IN ('sent', 'accepted', 'playing')"
    ).fetchall()
    return frozenset(r[0] for r in rows)


def parse_sources(text: str) -> list[str]:
    """IOC_BROADCAST_ALLOWED_SOURCES: a comma-separated list of `source` values."""
    return [s.strip() for s in text.split(",") if s.strip()]


def rule_defaults(allowed_sources: str) -> dict[str, dict[str, Any]]:
    """The rule's settings IOC_BROADCAST_ALLOWED_SOURCES gives (under IOC_ALERTS_FILE's and the API's)."""
    sources = parse_sources(allowed_sources)
    return {RULE: {"allowed_sources": sources}} if sources else {}


def source_of(metrics: Mapping[str, Any]) -> str:
    """What the speaker says it plays; `none` when it does not say."""
    source = metrics.get("source")
    return source.strip() if isinstance(source, str) and source.strip() else NO_SOURCE


def allowed(source: str, sources: Iterable[str]) -> bool:
    """Sources compare without case or surrounding spaces: `VOV1` is `vov1`."""
    wanted = source.casefold()
    return any(str(s).strip().casefold() == wanted for s in sources)


def unscheduled(
    metrics: Mapping[str, Any], ours: bool, settings: Mapping[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """Whether the last status shows a speaker playing something nobody sent from the IOC, and
    the alert's details (what it reports as its source)."""
    if metrics.get("playing") is not True or ours:
        return False, {}
    source = source_of(metrics)
    if allowed(source, settings.get("allowed_sources") or ()):
        return False, {}
    return True, {"source": source}
