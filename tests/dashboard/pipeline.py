"""Device state changes, events and alerts written the way ingest and the alert evaluator write them
(the rows, then the live feed as the last statement of the transaction), for live-feed and browser tests."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services import feed
from services.alerts import store


def set_state(db_url: str, *changes: tuple[str, str], metrics: dict[str, Any] | None = None) -> int:
    """Write (device_id, state) transitions in one transaction; returns the first feed seq."""
    now = datetime.now(UTC)
    m = metrics if metrics is not None else {"volume": 40}
    with psycopg.connect(db_url) as conn:
        items, rows = [], []
        for device_id, state in changes:
            d = conn.execute(
                "SELECT d.commune_id, d.village_id, d.kind, s.state FROM devices d"
                " JOIN device_state s ON s.device_id = d.id WHERE d.id = %s",
                (device_id,),
            ).fetchone()
            assert d is not None, device_id
            conn.execute(
                "UPDATE device_state SET state = %s, since = %s, last_seen = %s, metrics = %s, reason = 'test'"
                " WHERE device_id = %s",
                (state, now, now, Jsonb(m), device_id),
            )
            rows.append((device_id, d[0], d[1], d[2], state, d[3], now, "test"))
            items.append(
                {
                    "type": "status",
                    "device_id": device_id,
                    "commune": d[0],
                    "village": d[1],
                    "kind": d[2],
                    "state": state,
                    "since": now.isoformat(),
                    "last_seen": now.isoformat(),
                    "reason": "test",
                    "metrics": m,
                }
            )
        feed.record_changes(conn, rows)
        return feed.publish(conn, items)


def events(db_url: str, device_id: str, commune: str, n: int, size: int = 0) -> None:
    """n feed events of one device in one transaction (each its own message)."""
    with psycopg.connect(db_url) as conn:
        feed.publish(
            conn,
            [
                {
                    "type": "event",
                    "device_id": device_id,
                    "commune": commune,
                    "event_type": "test",
                    "severity": "info",
                    "message": "x" * size,
                    "i": i,
                }
                for i in range(n)
            ],
        )


def open_alert(
    db_url: str,
    rule: str,
    device_id: str,
    *,
    severity: str = "critical",
    message: str = "",
    affected: Sequence[str] = (),
) -> int:
    """An alert opened as the evaluator opens one; returns its id."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, affected,"  # noqa: S608
                " since, opened_at) SELECT %s, id, commune_id, village_id, kind, %s, %s, %s, %s, %s"
                f" FROM devices WHERE id = %s RETURNING {store.COLUMNS}",
                (rule, severity, message, list(affected), now, now, device_id),
            ).fetchone()
        assert row is not None, device_id
        feed.publish(conn, [store.feed_item(row)])
        return int(row["id"])
