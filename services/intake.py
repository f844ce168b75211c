"""Turning a batch of raw device messages into rows: pure, no I/O.

Each message becomes a status sample, an event, an availability report or a dead letter.
Nothing here raises for bad input: bad input is data (a dead letter with its reason).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from services import topics
from services.models import Device
from services.payloads import (
    MAX_PAYLOAD,
    BadPayload,
    Event,
    Status,
    parse_availability,
    parse_event,
    parse_status,
)

log = logging.getLogger(__name__)

MAX_DEAD_PAYLOAD = 256 * 1024
# Every reason a message is dead-lettered for (the labels of ioc_ingest_dead_letters_total).
REASONS = (
    "not_json",
    "not_object",
    "wrong_type",
    "unknown_device",
    "topic_mismatch",
    "too_large",
    "too_deep",
    "too_many_keys",
    "ts_future",
    "bad_ts",
    "bad_availability",
    "bad_topic",
    "unknown_channel",
    # broadcast results (services.broadcasts.results): not the contract's payload, no such
    # delivery of the device, or a result for a delivery already over
    "bad_result",
    "unknown_delivery",
    "late_result",
    # checked, but refused when written (PostgreSQL's message in the detail): services.storage
    "unstorable",
    # a check of ours raised: a bug, logged; the message is kept so nothing is lost
    "internal_error",
)


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
    """Rows to write in one transaction, each with the message it came from.

    Every source (the IOC's broker, a vendor broker, a poller) fills one with `add_*`, giving
    the message as received (`Raw`), and hands it to `services.storage.write_batch`: a row
    PostgreSQL refuses then becomes a dead letter of that message, and the rest is stored.
    """

    statuses: list[tuple[Device, Status, datetime]] = field(default_factory=list)
    events: list[tuple[Device, Event, datetime]] = field(default_factory=list)
    # in arrival order; later reports of the same device win
    availability: list[tuple[Device, str, datetime]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # the message of each row above, index for index
    status_raws: list[Raw] = field(default_factory=list)
    event_raws: list[Raw] = field(default_factory=list)
    availability_raws: list[Raw] = field(default_factory=list)
    # devices' `cmd_result`s, applied by services.broadcasts.results (not rows of this batch)
    cmd_results: list[tuple[Device, Raw]] = field(default_factory=list)

    def add_status(self, device: Device, st: Status, raw: Raw) -> None:
        self.statuses.append((device, st, raw.received_at))
        self.status_raws.append(raw)

    def add_event(self, device: Device, ev: Event, raw: Raw) -> None:
        self.events.append((device, ev, raw.received_at))
        self.event_raws.append(raw)

    def add_availability(self, device: Device, value: str, raw: Raw) -> None:
        self.availability.append((device, value, raw.received_at))
        self.availability_raws.append(raw)

    @property
    def counts(self) -> dict[str, int]:
        """Rows by channel (the labels of ioc_ingest_messages_total)."""
        n = {"status": len(self.statuses), "event": len(self.events), "availability": len(self.availability)}
        return {ch: k for ch, k in n.items() if k}

    def size(self) -> int:
        """Rows to write (dead letters not counted)."""
        return len(self.statuses) + len(self.events) + len(self.availability)

    def split(self) -> tuple["Batch", "Batch"]:
        """Two halves of the rows, each channel in its order; dead letters stay with neither."""
        cut = self.size() // 2
        a, b = Batch(), Batch()
        s = min(cut, len(self.statuses))
        a.statuses, b.statuses = self.statuses[:s], self.statuses[s:]
        a.status_raws, b.status_raws = self.status_raws[:s], self.status_raws[s:]
        e = min(cut - s, len(self.events))
        a.events, b.events = self.events[:e], self.events[e:]
        a.event_raws, b.event_raws = self.event_raws[:e], self.event_raws[e:]
        v = cut - s - e
        a.availability, b.availability = self.availability[:v], self.availability[v:]
        a.availability_raws, b.availability_raws = self.availability_raws[:v], self.availability_raws[v:]
        return a, b

    def refuse(self, detail: str) -> list[DeadLetter]:
        """Every row's message as an `unstorable` dead letter."""
        rows: list[tuple[Device, Raw]] = [
            *((d, r) for (d, _, _), r in zip(self.statuses, self.status_raws, strict=True)),
            *((d, r) for (d, _, _), r in zip(self.events, self.event_raws, strict=True)),
            *((d, r) for (d, _, _), r in zip(self.availability, self.availability_raws, strict=True)),
        ]
        return [_dead(raw, "unstorable", detail, device.id) for device, raw in rows]


def join(batches: Sequence[Batch]) -> Batch:
    """One batch of the rows of several, in their order (dead letters included)."""
    out = Batch()
    for b in batches:
        out.statuses += b.statuses
        out.status_raws += b.status_raws
        out.events += b.events
        out.event_raws += b.event_raws
        out.availability += b.availability
        out.availability_raws += b.availability_raws
        out.dead += b.dead
    return out


def _dead(raw: Raw, reason: str, detail: str, device_id: str | None) -> DeadLetter:
    payload = raw.payload
    if len(payload) > MAX_DEAD_PAYLOAD:
        detail += f" (payload truncated from {len(payload)} bytes)"
        payload = payload[:MAX_DEAD_PAYLOAD]
    return DeadLetter(raw.received_at, raw.topic, reason, detail, device_id, payload)


dead_letter = _dead


def classify(messages: list[Raw], devices: dict[str, Device]) -> Batch:
    """Validate every message against the registry and the payload rules of SPEC §4.

    A message without `ts` is placed at its receive time; `ts` is judged against it too.
    """
    batch = Batch()
    # bound once: this loop runs for every message ingest reads
    statuses, status_raws = batch.statuses, batch.status_raws
    for raw in messages:
        try:
            t = topics.parse(raw.topic)
            device = devices.get(t.device_id) if t is not None else None
            if (
                t is not None
                and t.channel == "status"
                and device is not None
                and device.commune_id == t.commune_id
                and device.kind == t.kind
            ):
                # the common case, inline; everything else below
                try:
                    st = parse_status(device.kind, raw.payload, raw.received_at)
                except BadPayload as err:
                    batch.dead.append(_dead(raw, err.reason, err.detail, device.id))
                    continue
                statuses.append((device, st, raw.received_at))
                status_raws.append(raw)
                continue
            _classify_one(batch, raw, devices)
        except Exception as err:
            # One message must not stop the others: keep it, and say loudly that a check failed.
            log.exception("checking a message on %r failed", raw.topic)
            batch.dead.append(_dead(raw, "internal_error", f"{type(err).__name__}: {err}"[:500], None))
    return batch


def _classify_one(batch: Batch, raw: Raw, devices: dict[str, Device]) -> None:
    t = topics.parse(raw.topic)
    if t is None:
        channel = topics.channel_of(raw.topic)
        if channel == topics.RESULTS:
            _add_result(batch, raw, devices)
            return
        if channel in topics.IGNORED:
            return  # the IOC's own publications under ioc/v1 (commands to devices)
        if channel in topics.UNHANDLED:
            batch.dead.append(
                _dead(raw, "unknown_channel", f"channel {channel!r} is not consumed by ingest yet", None)
            )
            return
        batch.dead.append(
            _dead(
                raw,
                "bad_topic",
                f"topic {raw.topic!r} is not ioc/v1/{{commune}}/{{kind}}/"
                "{device}/{status|availability|event}",
                None,
            )
        )
        return
    device = devices.get(t.device_id)
    if device is None:
        batch.dead.append(
            _dead(raw, "unknown_device", f"device {t.device_id!r} is not in the registry", t.device_id)
        )
        return
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
        return
    try:
        if t.channel == "status":
            batch.add_status(device, parse_status(device.kind, raw.payload, raw.received_at), raw)
        elif t.channel == "event":
            batch.add_event(device, parse_event(raw.payload, raw.received_at), raw)
        else:
            batch.add_availability(device, parse_availability(raw.payload), raw)
    except BadPayload as err:
        batch.dead.append(_dead(raw, err.reason, err.detail, device.id))


def _add_result(batch: Batch, raw: Raw, devices: dict[str, Device]) -> None:
    _, _, commune_id, kind, device_id, _ = raw.topic.split("/")
    device = devices.get(device_id)
    if device is None:
        batch.dead.append(
            _dead(raw, "unknown_device", f"device {device_id!r} is not in the registry", device_id)
        )
    elif device.commune_id != commune_id or device.kind != kind:
        batch.dead.append(
            _dead(raw, "topic_mismatch", f"a cmd_result of {device.id} on another device's topic", device.id)
        )
    elif len(raw.payload) > MAX_PAYLOAD:
        # refused here like a status, so the oversized result never reaches the broadcasts' transaction
        batch.dead.append(
            _dead(raw, "too_large", f"payload of {len(raw.payload)} bytes exceeds {MAX_PAYLOAD}", device.id)
        )
    else:
        batch.cmd_results.append((device, raw))


def _status_ts(item: tuple[Status, datetime]) -> datetime:
    return item[0].ts


# Bytes of a device's merged status fields past which the merge starts again from its newest status
# (unknown fields are kept, so a device naming new fields in every status would grow without end;
# one status is at most 64 KiB). Below _FEW_FIELDS fields a merge is never measured.
MERGED_METRICS_MAX = 64 * 1024
_FEW_FIELDS = 64


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
        # as the stored row does (services.storage): a merge past the bound starts from the newest
        if len(merged) > _FEW_FIELDS and len(orjson.dumps(merged)) > MERGED_METRICS_MAX:
            merged = dict(newest.metrics)
        out[device_id]["status"] = (Status(newest.ts, newest.has_ts, merged), max(r for _, r in sts))
    for device, value, received_at in batch.availability:
        cur = out.setdefault(device.id, {"device": device})
        cur["availability"] = (value, received_at)
    return out
