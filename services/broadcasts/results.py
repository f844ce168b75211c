"""Devices' `cmd_result`s (SPEC §9): applied to their deliveries, idempotently.

A duplicate or a step back (results may arrive out of order) changes nothing; a result for a
delivery that is not the device's, or that is over (expired, cancelled) with another outcome,
is a dead letter with its reason, as is a payload that does not follow the contract.
"""

from datetime import datetime
from typing import Any

import orjson
import psycopg

from services.broadcasts.model import FINAL_STATES, RESULT_STATES, next_state
from services.intake import DeadLetter, Raw, dead_letter
from services.models import Device

MAX_REASON = 500


def _parse(payload: bytes) -> tuple[int, str, str | None] | str:
    """(delivery id, status, reason), or what is wrong with the payload."""
    try:
        body: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(body, dict):
        return "not a JSON object"
    rid, status, reason = body.get("id"), body.get("status"), body.get("reason")
    if (
        not isinstance(rid, str | int)
        or isinstance(rid, bool)
        or not str(rid).isdigit()
        or len(str(rid)) > 18
    ):
        return f"id {rid!r} is not a delivery id"
    if status not in RESULT_STATES:
        return f"status {status!r} is not one of {', '.join(RESULT_STATES)}"
    if reason is not None and not isinstance(reason, str):
        return "reason must be text"
    return int(rid), status, (reason or None) and reason[:MAX_REASON].replace("\x00", "")


def apply(conn: psycopg.Connection, results: list[tuple[Device, Raw]], now: datetime) -> list[DeadLetter]:
    """Apply results in arrival order, in one transaction; the dead letters of those refused."""
    dead: list[DeadLetter] = []
    parsed: list[tuple[Device, Raw, int, str, str | None]] = []
    for device, raw in results:
        p = _parse(raw.payload)
        if isinstance(p, str):
            dead.append(dead_letter(raw, "bad_result", p, device.id))
        else:
            parsed.append((device, raw, *p))
    if not parsed:
        return dead
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, device_id, state FROM deliveries WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (sorted({p[2] for p in parsed}),),
        ).fetchall()
        current = {r[0]: (r[1], r[2]) for r in rows}
        changes: dict[int, tuple[str, str | None]] = {}
        for device, raw, rid, status, reason in parsed:
            found = current.get(rid)
            if found is None or found[0] != device.id:
                dead.append(
                    dead_letter(
                        raw, "unknown_delivery", f"no delivery {rid} to device {device.id}", device.id
                    )
                )
                continue
            state = found[1]
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
            changes[rid] = (new, reason)
        if changes:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE deliveries SET state = %s, reason = %s, updated_at = %s WHERE id = %s",
                    [(state, reason, now, rid) for rid, (state, reason) in changes.items()],
                )
    return dead
