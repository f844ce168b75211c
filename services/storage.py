"""Writing a classified batch in one transaction: samples, events, state, dead letters, feed.

Order inside the transaction matters: bulk writes first, then the rows other writers also
touch (device state, counters), and the feed/change counters last, so their row locks are
held only until commit and numbers are handed out in commit order.
"""

from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from services import feed
from services.intake import Batch, latest_per_device
from services.models import Liveness, State
from services.state import derive

_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_samples "
    "(device_id text, ts timestamptz, received_at timestamptz, metrics jsonb) ON COMMIT DELETE ROWS"
)


def _jsonb(obj: Any) -> Jsonb:
    return Jsonb(obj, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def prepare(conn: psycopg.Connection) -> None:
    """Per-connection setup (the staging table lives as long as the session)."""
    conn.execute(_STAGE)
    conn.commit()


def _write_samples(conn: psycopg.Connection, batch: Batch) -> None:
    if not batch.statuses:
        return
    # COPY has no ON CONFLICT: copy into a staging table, then insert what is new, so a
    # redelivered message with the same (device, ts) is stored once.
    with conn.cursor() as cur:
        with cur.copy(
            "COPY stage_samples (device_id, ts, received_at, metrics) FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.set_types(["text", "timestamptz", "timestamptz", "jsonb"])
            for device, st, received_at in batch.statuses:
                cp.write_row((device.id, st.ts, received_at, _jsonb(st.metrics)))
        cur.execute("INSERT INTO status_samples SELECT * FROM stage_samples ON CONFLICT DO NOTHING")


def _write_events(conn: psycopg.Connection, batch: Batch) -> list[dict[str, Any]]:
    """Insert events (seq filled in later, under the feed lock); returns feed items of new ones."""
    if not batch.events:
        return []
    items = []
    with conn.cursor() as cur:
        for device, ev, received_at in batch.events:
            cur.execute(
                "INSERT INTO device_events (device_id, ts, received_at, type, severity, message, fields, seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 0) ON CONFLICT DO NOTHING",
                (device.id, ev.ts, received_at, ev.type, ev.severity, ev.message, _jsonb(ev.fields)),
            )
            if cur.rowcount:
                items.append(
                    {
                        "type": "event",
                        "device_id": device.id,
                        "commune": device.commune_id,
                        "village": device.village_id,
                        "kind": device.kind,
                        "ts": ev.ts.isoformat(),
                        "event_type": ev.type,
                        "severity": ev.severity,
                        "message": ev.message,
                        "fields": ev.fields,
                    }
                )
    return items


def _write_dead(conn: psycopg.Connection, batch: Batch) -> None:
    if not batch.dead:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (received_at, topic, reason, detail, device_id, payload)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(d.received_at, d.topic, d.reason, d.detail, d.device_id, d.payload) for d in batch.dead],
        )


def _status_item(device: Any, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "status",
        "device_id": device.id,
        "commune": device.commune_id,
        "village": device.village_id,
        "kind": device.kind,
        "state": row["state"],
        "since": row["since"].isoformat(),
        "last_seen": row["last_seen"].isoformat() if row["last_seen"] else None,
        "reason": row["reason"],
        "metrics": row["metrics"],
    }


def _update_state(
    conn: psycopg.Connection, batch: Batch, now: datetime, listening_since: datetime | None
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    latest = latest_per_device(batch)
    if not latest:
        return [], []
    ids = sorted(latest)
    # Lock in id order so two ingest processes touching the same devices cannot deadlock.
    rows = conn.execute(
        "SELECT device_id, state, since, last_seen, availability, availability_at, metrics, metrics_ts, reason"
        " FROM device_state WHERE device_id = ANY(%s) ORDER BY device_id FOR UPDATE",
        (ids,),
    ).fetchall()
    current = {r[0]: r for r in rows}
    missing = [i for i in ids if i not in current]
    if missing:
        conn.execute(
            "INSERT INTO device_state (device_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (missing,),
        )
        for r in conn.execute(
            "SELECT device_id, state, since, last_seen, availability, availability_at, metrics, metrics_ts, reason"
            " FROM device_state WHERE device_id = ANY(%s) ORDER BY device_id FOR UPDATE",
            (missing,),
        ):
            current[r[0]] = r
    updates, items, changes = [], [], []
    for device_id in ids:
        info = latest[device_id]
        device = info["device"]
        _, state, since, last_seen, avail, avail_at, metrics, metrics_ts, reason = current[device_id]
        changed = False
        if "status" in info:
            st, received_at = info["status"]
            if last_seen is None or received_at > last_seen:
                last_seen = received_at
            # A replay of old history proves the device is alive but does not replace newer readings.
            if metrics_ts is None or st.ts >= metrics_ts:
                metrics, metrics_ts = st.metrics, st.ts
            changed = True
        if "availability" in info:
            value, received_at = info["availability"]
            if value != avail:
                avail, avail_at = value, received_at
                changed = True
        if not changed:
            continue
        new_state, new_reason = derive(
            Liveness(
                device.kind,
                device.liveness_window_s,
                last_seen,
                avail,
                metrics,
                in_maintenance=state == State.MAINTENANCE,
            ),
            now,
            listening_since,
        )
        if new_state != state:
            changes.append(
                (
                    device_id,
                    device.commune_id,
                    device.village_id,
                    device.kind,
                    str(new_state),
                    state,
                    now,
                    new_reason,
                )
            )
            since = now
        row = {
            "state": str(new_state),
            "since": since,
            "last_seen": last_seen,
            "reason": new_reason,
            "metrics": metrics,
        }
        updates.append(
            (
                device_id,
                str(new_state),
                since,
                last_seen,
                avail,
                avail_at,
                _jsonb(metrics),
                metrics_ts,
                new_reason,
            )
        )
        items.append(_status_item(device, row))
    if updates:
        cols = list(zip(*updates, strict=True))
        conn.execute(
            "UPDATE device_state d SET state = u.state, since = u.since, last_seen = u.last_seen,"
            " availability = u.availability, availability_at = u.availability_at, metrics = u.metrics,"
            " metrics_ts = u.metrics_ts, reason = u.reason, updated_at = now()"
            " FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[],"
            "  %s::timestamptz[], %s::jsonb[], %s::timestamptz[], %s::text[])"
            "  AS u(device_id, state, since, last_seen, availability, availability_at, metrics, metrics_ts, reason)"
            " WHERE d.device_id = u.device_id",
            [list(c) for c in cols],
        )
    return items, changes


def bump_counters(conn: psycopg.Connection, counts: dict[tuple[str, str], int]) -> None:
    """Add to the exact counters shown on /metrics (in the transaction being counted)."""
    if not counts:
        return
    keys = sorted(counts)
    conn.execute(
        "INSERT INTO metric_counters (name, label, value)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])"
        " ON CONFLICT (name, label) DO UPDATE SET value = metric_counters.value + EXCLUDED.value",
        ([k[0] for k in keys], [k[1] for k in keys], [counts[k] for k in keys]),
    )


def write_batch(
    conn: psycopg.Connection, batch: Batch, now: datetime, listening_since: datetime | None
) -> int:
    """Store a batch in one transaction; returns the number of feed items published."""
    with conn.transaction():
        _write_samples(conn, batch)
        _write_dead(conn, batch)
        event_items = _write_events(conn, batch)
        status_items, changes = _update_state(conn, batch, now, listening_since)
        counts = {("ioc_ingest_messages_total", ch): n for ch, n in batch.counts.items()}
        for d in batch.dead:
            key = ("ioc_ingest_dead_letters_total", d.reason)
            counts[key] = counts.get(key, 0) + 1
        bump_counters(conn, counts)
        feed.record_changes(conn, changes)
        items = status_items + event_items
        feed.publish(conn, items)
        if event_items:
            # Events get the seq the feed gave them, so event pages follow commit order.
            conn.execute(
                "UPDATE device_events e SET seq = u.seq FROM unnest(%s::text[], %s::timestamptz[], %s::text[],"
                " %s::bigint[]) AS u(device_id, ts, type, seq)"
                " WHERE e.device_id = u.device_id AND e.ts = u.ts AND e.type = u.type",
                (
                    [i["device_id"] for i in event_items],
                    [i["ts"] for i in event_items],
                    [i["event_type"] for i in event_items],
                    [i["seq"] for i in event_items],
                ),
            )
    return len(items)
