"""`broadcast_not_reached` (SPEC §9): an emergency that has not reached every targeted village
within 2 minutes of its start raises one alert naming those villages, routed like every other
alert (the alert evaluator sends it to the channels its routes name)."""

from datetime import datetime, timedelta

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from services import feed
from services.alerts import messages
from services.alerts import store as alert_store
from services.broadcasts import store
from services.broadcasts.model import NOT_REACHED_AFTER_S, Broadcast

RULE = "broadcast_not_reached"
_INSERT = (
    "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, details,"  # noqa: S608
    " affected, since, opened_at, notified_at, notify_count)"
    " VALUES (%s, NULL, %s, NULL, NULL, 'critical', %s, %s, %s, %s, %s, %s, 1)"
    " ON CONFLICT (rule, coalesce(device_id, '')) WHERE state <> 'resolved' DO NOTHING"
    f" RETURNING {alert_store.COLUMNS}"
)


def _village_names(conn: psycopg.Connection, pairs: list[tuple[str, str]]) -> list[str]:
    rows = conn.execute(
        "SELECT v.commune_id, v.id, v.name FROM villages v"
        " JOIN unnest(%s::text[], %s::text[]) AS p(c, v) ON v.commune_id = p.c AND v.id = p.v",
        ([c for c, _ in pairs], [v for _, v in pairs]),
    ).fetchall()
    names = {(c, v): n for c, v, n in rows}
    return [names.get(p, p[1]) for p in pairs]


def raise_not_reached(conn: psycopg.Connection, now: datetime, lang: str = "vi") -> list[int]:
    """Alert on every emergency occurrence past 2 minutes with villages not reached (once per
    occurrence); the ids of the alerts opened."""
    with conn.cursor(row_factory=class_row(Broadcast)) as cur:
        due = cur.execute(
            "SELECT * FROM broadcasts WHERE state = 'active' AND priority = 'emergency'"
            " AND occurrence_at <= %s AND alerted_for IS DISTINCT FROM occurrence_at FOR UPDATE",
            (now - timedelta(seconds=NOT_REACHED_AFTER_S),),
        ).fetchall()
    opened = []
    for b in due:
        conn.execute("UPDATE broadcasts SET alerted_for = occurrence_at WHERE id = %s", (b.id,))
        ds = store.deliveries(conn, b)
        missed = [
            (c["commune"], c["village"], c["reason"]) for c in store.coverage(conn, b, ds) if not c["reached"]
        ]
        if not missed:
            continue
        names = _village_names(conn, [(c, v) for c, v, _ in missed])
        details = {
            "broadcast": b.id,
            "title": b.title,
            "villages": ", ".join(names),
            "missed": len(missed),
            "targeted": len(store.coverage(conn, b, ds)),
            "why": {f"{c}/{v}": r for c, v, r in missed},
        }
        affected = sorted(
            {d.device_id for d in ds if (d.commune_id, d.village_id) in {(c, v) for c, v, _ in missed}}
        )
        headline = messages.headline(RULE, None, messages.Place(), details, lang)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                _INSERT,
                (
                    RULE,
                    b.communes[0] if len(b.communes) == 1 else None,
                    headline,
                    Jsonb(details),
                    affected,
                    b.occurrence_at,
                    now,
                    now,
                ),
            ).fetchone()
        if row is None:
            continue  # one is open already (one open alert per rule without a device)
        alert_store.history(conn, row["id"], "opened", None, details)
        # Routed and sent by the alert evaluator, as the gateway's requests are.
        conn.execute(
            "INSERT INTO alert_outbox (alert_id, event, status, data) VALUES (%s, 'open', 'route', %s)",
            (row["id"], Jsonb({"actor": None})),
        )
        feed.publish(conn, [alert_store.feed_item(row)])
        opened.append(row["id"])
    return opened
