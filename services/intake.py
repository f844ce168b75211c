"""Turning a batch of raw device messages into rows: pure, no I/O.

Each message becomes a status sample, an event, an availability report or a dead letter.
Nothing here raises for bad input: bad input is data (a dead letter with its reason).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services import topics
from services.models import Device
from services.payloads import BadPayload, Event, Status, parse_availability, parse_event, parse_status

MAX_DEAD_PAYLOAD = 256 * 1024


@dataclass(frozen=True, slots=True)
class Raw:
    """One message as received: topic, payload, receive time (UTC)."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: datetime
    topic: str
    reason: str
    detail: str
    device_id: str | None
    payload: bytes


@dataclass
class Batch:
    statuses: list[tuple[Device, Status, datetime]] = field(default_factory=list)
    events: list[tuple[Device, Event, datetime]] = field(default_factory=list)
    # in arrival order; later reports of the same device win
    availability: list[tuple[Device, str, datetime]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, channel: str) -> None:
        self.counts[channel] = self.counts.get(channel, 0) + 1


def _dead(raw: Raw, reason: str, detail: str, device_id: str | None) -> DeadLetter:
    payload = raw.payload
    if len(payload) > MAX_DEAD_PAYLOAD:
        detail += f" (payload truncated from {len(payload)} bytes)"
        payload = payload[:MAX_DEAD_PAYLOAD]
    return DeadLetter(raw.received_at, raw.topic, reason, detail, device_id, payload)


def classify(messages: list[Raw], devices: dict[str, Device]) -> Batch:
    """Validate every message against the registry and the payload rules of SPEC §4.

    A message without `ts` is placed at its receive time; `ts` is judged against it too.
    """
    batch = Batch()
    for raw in messages:
        t = topics.parse(raw.topic)
        if t is None:
            batch.dead.append(
                _dead(
                    raw,
                    "bad_topic",
                    f"topic {raw.topic!r} is not ioc/v1/{{commune}}/{{kind}}/"
                    "{device}/{status|availability|event}",
                    None,
                )
            )
            continue
        device = devices.get(t.device_id)
        if device is None:
            batch.dead.append(
                _dead(raw, "unknown_device", f"device {t.device_id!r} is not in the registry", t.device_id)
            )
            continue
        if device.commune_id != t.commune_id or device.kind != t.kind:
            batch.dead.append(
                _dead(
                    raw,
                    "topic_mismatch",
                    f"topic says {t.commune_id}/{t.kind} but the registry has {device.id} as "
                    f"{device.commune_id}/{device.kind}",
                    device.id,
                )
            )
            continue
        try:
            if t.channel == "status":
                batch.statuses.append(
                    (device, parse_status(device.kind, raw.payload, raw.received_at), raw.received_at)
                )
            elif t.channel == "event":
                batch.events.append((device, parse_event(raw.payload, raw.received_at), raw.received_at))
            else:
                batch.availability.append((device, parse_availability(raw.payload), raw.received_at))
        except BadPayload as err:
            batch.dead.append(_dead(raw, err.reason, err.detail, device.id))
            continue
        batch.count(t.channel)
    return batch


def _status_ts(item: tuple[Status, datetime]) -> datetime:
    return item[0].ts


def latest_per_device(batch: Batch) -> dict[str, dict[str, Any]]:
    """What the batch says about each device's present.

    `status`: (a Status whose metrics merge the batch's statuses of the device in `ts` order,
    so each field keeps its newest value, with the newest `ts`; the latest receive time).
    `availability`: the last report received.
    """
    per_device: dict[str, list[tuple[Status, datetime]]] = {}
    out: dict[str, dict[str, Any]] = {}
    for device, st, received_at in batch.statuses:
        sts = per_device.get(device.id)
        if sts is None:
            per_device[device.id] = [(st, received_at)]
            out[device.id] = {"device": device}
        else:
            sts.append((st, received_at))
    for device_id, sts in per_device.items():
        if len(sts) == 1:
            out[device_id]["status"] = sts[0]
            continue
        sts.sort(key=_status_ts)
        merged: dict[str, Any] = {}
        for st, _ in sts:
            merged.update(st.metrics)
        newest = sts[-1][0]
        out[device_id]["status"] = (Status(newest.ts, newest.has_ts, merged), max(r for _, r in sts))
    for device, value, received_at in batch.availability:
        cur = out.setdefault(device.id, {"device": device})
        cur["availability"] = (value, received_at)
    return out
