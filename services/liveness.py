"""The periodic part of device state: silence turning into offline, maintenance windows.

Status messages change state as they arrive (services.storage); this sweep catches what no
message announces. Updates are optimistic (the row must still be as read), so several ingest
processes may sweep at once without recording a transition twice.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from services import feed
from services.models import Device, Liveness
from services.sources.store import listening as sources_listening
from services.state import derive


def sweep(
    conn: psycopg.Connection,
    devices: dict[str, Device],
    now: datetime,
    listening_since: datetime,
    in_maintenance: Iterable[str],
) -> int:
    """Apply due transitions; returns how many devices changed state."""
    maint = set(in_maintenance)
    with conn.transaction():
        # Candidates only: devices whose silence deadline has passed, and devices entering or
        # leaving a maintenance window. Reading every device every second would cost more than
        # the sweep itself; derive() still decides.
        rows = conn.execute(
            "SELECT device_id, state, last_seen, availability, metrics->'reachable', metrics->'auth_failed'"
            " FROM device_state WHERE (state IN ('online', 'auth_failed') AND deadline < %s)"
            " OR (state = 'maintenance') <> (device_id = ANY(%s))",
            (now, list(maint)),
        ).fetchall()
        due: list[tuple[Device, str, str, str, Any, Any]] = []
        sources: dict[str, datetime | None] | None = None
        for device_id, state, last_seen, avail, reachable, auth_failed in rows:
            device = devices.get(device_id)
            if device is None:
                continue
            heard_since: datetime | None = listening_since
            if device.source_broker is not None:
                # Heard through a vendor broker: silence counts only while a bridge hears it; a
                # lost broker freezes its devices (one source_lost alert, not N outages).
                if sources is None:
                    sources = sources_listening(conn, now)
                broker_since = sources.get(device.source_broker)
                heard_since = None if broker_since is None else max(listening_since, broker_since)
            flags = {
                k: v for k, v in (("reachable", reachable), ("auth_failed", auth_failed)) if v is not None
            }
            new_state, reason = derive(
                Liveness(
                    device.kind,
                    device.liveness_window_s,
                    last_seen,
                    avail,
                    flags,
                    in_maintenance=device_id in maint,
                ),
                now,
                heard_since,
            )
            if new_state != state:
                due.append((device, state, str(new_state), reason, last_seen, avail))
        changes, items = [], []
        for device, old, new, reason, last_seen, avail in due:
            row = conn.execute(
                "UPDATE device_state SET state = %s, since = %s, reason = %s, updated_at = now()"
                " WHERE device_id = %s AND state = %s AND last_seen IS NOT DISTINCT FROM %s"
                " AND availability IS NOT DISTINCT FROM %s RETURNING metrics",
                (new, now, reason, device.id, old, last_seen, avail),
            ).fetchone()
            if row is None:
                continue  # changed under us by a message or another sweeper: theirs is newer
            changes.append(
                (device.id, device.commune_id, device.village_id, device.kind, new, old, now, reason)
            )
            items.append(
                {
                    "type": "status",
                    "device_id": device.id,
                    "commune": device.commune_id,
                    "village": device.village_id,
                    "kind": device.kind,
                    "state": new,
                    "since": now.isoformat(),
                    "last_seen": last_seen.isoformat() if last_seen else None,
                    "reason": reason,
                    "metrics": row[0],
                }
            )
        feed.record_changes(conn, changes)
        feed.publish(conn, items)
    return len(changes)


def report_health(conn: psycopg.Connection, name: str, listening_since: datetime) -> None:
    """This ingest hears its broker (read by the alert engine and by operators)."""
    conn.execute(
        "INSERT INTO process_health (name, kind, seen_at, info) VALUES (%s, 'ingest', now(), %s)"
        " ON CONFLICT (name) DO UPDATE SET seen_at = now(), info = EXCLUDED.info",
        (name, Jsonb({"listening_since": listening_since.isoformat()})),
    )
    conn.commit()
