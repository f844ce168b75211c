"""The words of broadcasts and deliveries: priorities, states, and how states follow each other."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

PRIORITIES = ("normal", "priority", "emergency")
RANK = {p: i for i, p in enumerate(PRIORITIES)}
KINDS = ("speaker", "eboard")
BROADCAST_STATES = ("awaiting_approval", "scheduled", "active", "finished", "cancelled")
OPEN_STATES = ("scheduled", "sent", "accepted", "playing")
FINAL_STATES = ("done", "failed", "rejected", "cancelled", "expired")
# The outcomes a device gives (the others, `cancelled` and `expired`, are the IOC's).
DEVICE_OUTCOMES = ("done", "failed", "rejected")
# What a device may report, and how far along each puts a delivery: a result never moves one back.
RESULT_STATES = ("accepted", "playing", "done", "failed", "rejected")
STEP = {"scheduled": 0, "sent": 1, "accepted": 2, "playing": 3, "done": 4, "failed": 4, "rejected": 4}
NOT_REACHED_AFTER_S = 120


@dataclass(frozen=True)
class Broadcast:
    id: int
    title: str
    priority: str
    risk_level: int | None
    media_id: str | None
    text: str | None
    volume: int | None
    targets: dict[str, Any]
    communes: list[str]
    starts_at: datetime
    rrule: str | None
    expires_at: datetime
    state: str
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    cancelled_by: str | None
    cancelled_at: datetime | None
    occurrence_at: datetime | None
    alerted_for: datetime | None
    # alert channels (IOC_ALERTS_FILE) the broadcast also goes out to as text
    channels: list[str]


@dataclass(frozen=True)
class Delivery:
    id: int
    broadcast_id: int
    device_id: str
    commune_id: str
    village_id: str | None
    kind: str
    occurrence_at: datetime
    expires_at: datetime
    state: str
    reason: str | None
    sent_at: datetime | None
    attempts: int
    stop_owed: bool
    updated_at: datetime


# The reason of a delivery to a device in a maintenance window that expired without an answer
# (services/broadcasts/delivery.py): its village's coverage says `maintenance`, not `expired`.
NO_RESULT_IN_MAINTENANCE = "no result from the device before expiry: it is under maintenance"


def next_state(current: str, status: str) -> str | None:
    """The state a device's result moves a delivery to, or None when it changes nothing
    (a duplicate, or a step back: results may arrive out of order)."""
    if current in FINAL_STATES:
        return None
    if STEP[status] <= STEP[current]:
        return None
    return status


def village_reached(kinds_states: list[tuple[str, str]]) -> bool:
    """A village is reached when one of its targeted speakers is done, or, where only e-boards are
    targeted in it, one has accepted (or gone further)."""
    speakers = [s for k, s in kinds_states if k == "speaker"]
    if speakers:
        return "done" in speakers
    return any(s in ("accepted", "playing", "done") for _, s in kinds_states)


def why_not(rows: list[tuple[str, str, str]]) -> str:
    """Why a village was not reached (yet), from its deliveries (kind, state, where the device is:
    `online`, `offline` or `maintenance`): `no_speaker`, `offline`, `maintenance` (sent to a device
    being serviced, which has not answered or never did), `rejected`, `failed`, `expired`,
    `cancelled` or `in_progress`."""
    if not rows:
        return "no_speaker"
    states = [s for _, s, _ in rows]
    waiting_on = [where for _, s, where in rows if s in OPEN_STATES]
    if waiting_on and "online" not in waiting_on:
        return "maintenance" if "maintenance" in waiting_on else "offline"
    for s in ("rejected", "failed", "expired", "cancelled"):
        if s in states:
            if s == "expired" and any(st == s and where == "maintenance" for _, st, where in rows):
                return "maintenance"
            return s
    return "in_progress"
