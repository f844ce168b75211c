"""Devices' `cmd_result`s (SPEC §9): applied to their deliveries, idempotently.

A duplicate or a step back (results may arrive out of order, QoS 1 redelivers) changes nothing;
a result for a delivery that is not the device's, that the IOC closed (expired, cancelled), or
that contradicts the device's own outcome (`failed` after `done`) is a dead letter with its
reason, as is a payload that does not follow the contract. Nothing a device sends can raise here.
"""

import re
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg

from services.broadcasts.model import DEVICE_OUTCOMES, FINAL_STATES, RESULT_STATES, next_state
from services.intake import DeadLetter, Raw, dead_letter
from services.models import Device
from services.payloads import MAX_PAYLOAD, BadPayload, parse_ts

MAX_REASON = 500
# ASCII digits only: str.isdigit() also takes "²" (which int() refuses) and "١٢" (which it reads
# as 12), so a device could crash the batch or answer for another delivery.
_DELIVERY_ID = re.compile(r"[0-9]{1,18}", re.ASCII)
# A device clock a little behind ours may date its `accepted` just before we sent the command.
CLOCK_SKEW = timedelta(seconds=30)


def _reason(value: object) -> str | None:
    """A device's `reason` as text: firmwares send error codes and objects too, and a `failed`
    must not be lost over the type of its explanation."""
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    # PostgreSQL text cannot hold NUL (orjson refuses lone surrogates already).
    return text.replace("\x00", "")[:MAX_REASON] or None


def when(ts: object, sent_at: datetime | None, received_at: datetime) -> datetime:
    """When the device says the result happened (`ts`, SPEC §9), where that is plausible: not after
    it reached us, not before the command was sent (less a little clock skew). Otherwise, and
    without `ts`, when it reached us: a device's wrong clock must not reorder a delivery's history,
    and a result is never refused over its time."""
    if ts is None:
        return received_at
    try:
        t = parse_ts(ts, received_at)
    except BadPayload:
        return received_at
    if t > received_at or (sent_at is not None and t < sent_at - CLOCK_SKEW):
        return received_at
    return t


def _parse(payload: bytes) -> tuple[int, str, str | None, object] | tuple[str, str]:
    """(delivery id, status, reason, ts as sent), or (dead-letter reason, what is wrong with it)."""
    if len(payload) > MAX_PAYLOAD:
        return "too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}"
    try:
        body: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "bad_result", "not JSON"
    if not isinstance(body, dict):
        return "bad_result", "not a JSON object"
    rid, status = body.get("id"), body.get("status")
    if isinstance(rid, bool) or not isinstance(rid, str | int) or not _DELIVERY_ID.fullmatch(str(rid)):
        return "bad_result", f"id {str(rid)[:40]!r} is not a delivery id"
    if not isinstance(status, str) or status not in RESULT_STATES:
        return "bad_result", f"status {str(status)[:40]!r} is not one of {', '.join(RESULT_STATES)}"
    return int(rid), status, _reason(body.get("reason")), body.get("ts")


def apply(conn: psycopg.Connection, results: list[tuple[Device, Raw]], now: datetime) -> list[DeadLetter]:
    """Apply results in arrival order, in one transaction; the dead letters of those refused."""
    dead: list[DeadLetter] = []
    parsed: list[tuple[Device, Raw, int, str, str | None, object]] = []
    for device, raw in results:
        p = _parse(raw.payload)
        if len(p) == 2:
            dead.append(dead_letter(raw, p[0], p[1], device.id))
        else:
            parsed.append((device, raw, *p))
    if not parsed:
        return dead
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, device_id, state, sent_at FROM deliveries WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (sorted({p[2] for p in parsed}),),
        ).fetchall()
        current = {r[0]: (r[1], r[2]) for r in rows}
        sent_at = {r[0]: r[3] for r in rows}
        changes: dict[int, tuple[str, str | None, datetime]] = {}
        for device, raw, rid, status, reason, ts in parsed:
            found = current.get(rid)
            if found is None or found[0] != device.id:
                dead.append(
                    dead_letter(
                        raw, "unknown_delivery", f"no delivery {rid} to device {device.id}", device.id
                    )
                )
                continue
            state = found[1]
            if state in DEVICE_OUTCOMES and status not in DEVICE_OUTCOMES:
                continue  # `accepted` or `playing` redelivered after the device's outcome
            if state in FINAL_STATES and state != status:
                dead.append(
                    dead_letter(
                        raw,
                        "late_result",
                        f"delivery {rid} is {state} already; {status} came too late",
                        device.id,
                    )
                )
                continue
            new = next_state(state, status)
            if new is None:
                continue
            current[rid] = (device.id, new)
            changes[rid] = (new, reason, when(ts, sent_at[rid], raw.received_at))
        if changes:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE deliveries SET state = %s, reason = %s, updated_at = %s WHERE id = %s",
                    [(state, reason, at, rid) for rid, (state, reason, at) in changes.items()],
                )
    return dead
