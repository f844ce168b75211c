"""`broadcast_not_reached` (SPEC §9): an emergency that has not reached every targeted village
within 2 minutes of its start raises one alert naming those villages, routed like every other
alert (the alert evaluator sends it to the channels its routes name).

It resolves by itself, with its reason in `details.outcome` and the history: `reached` when every
targeted village is reached later (a device came back and got the redelivery), `cancelled` when
someone cancels the broadcast, `expired` when the occurrence ends with villages still not reached —
nothing can reach them any more, and the alert must not stand in the way of the next emergency's;
`details.not_reached` then names the villages that never heard it.
"""

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from services import feed, village_terms
from services.alerts import messages
from services.alerts import store as alert_store
from services.broadcasts import store
from services.broadcasts.model import NOT_REACHED_AFTER_S, Broadcast

RULE = "broadcast_not_reached"
_INSERT = (
    "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, details,"  # noqa: S608
    " affected, since, opened_at, notified_at, notify_count)"
    " VALUES (%s, NULL, %s, NULL, NULL, 'critical', %s, %s, %s, %s, %s, %s, 1)"
    " ON CONFLICT (rule, coalesce(device_id, ''), coalesce(details->>'broadcast', ''))"
    " WHERE state <> 'resolved' DO NOTHING"
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
        ds = store.deliveries(conn, b)
        missed = [
            (c["commune"], c["village"], c["reason"]) for c in store.coverage(conn, b, ds) if not c["reached"]
        ]
        if not missed:
            conn.execute("UPDATE broadcasts SET alerted_for = occurrence_at WHERE id = %s", (b.id,))
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
        # The communes' own word for their villages (ấp, xóm, thôn), when the missed ones share one.
        word = village_terms.commune_terms(conn)
        terms = {word.get(c) for c, _, _ in missed}
        place = messages.Place(village_term=terms.pop() if len(terms) == 1 else None)
        headline = messages.headline(RULE, None, place, details, lang)
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
            continue  # this broadcast's alert is open already (one open alert per broadcast)
        conn.execute("UPDATE broadcasts SET alerted_for = occurrence_at WHERE id = %s", (b.id,))
        alert_store.history(conn, row["id"], "opened", None, details)
        # Routed and sent by the alert evaluator, as the gateway's requests are.
        conn.execute(
            "INSERT INTO alert_outbox (alert_id, event, status, data) VALUES (%s, 'open', 'route', %s)",
            (row["id"], Jsonb({"actor": None})),
        )
        feed.publish(conn, [alert_store.feed_item(row)])
        opened.append(row["id"])
    return opened


def _outcome(conn: psycopg.Connection, alert: dict[str, Any], now: datetime) -> tuple[str, list[str]] | None:
    """Why an open alert resolves now — (`reached` | `cancelled` | `expired`, the villages never
    reached) — or None while its broadcast may still reach them."""
    bid = (alert["details"] or {}).get("broadcast")
    with conn.cursor(row_factory=class_row(Broadcast)) as cur:
        b = cur.execute("SELECT * FROM broadcasts WHERE id = %s", (bid,)).fetchone()
    if b is None:
        return "cancelled", []
    if b.state == "cancelled":
        return "cancelled", []
    cov = store.coverage(conn, b, store.deliveries(conn, b))
    missed = [(c["commune"], c["village"]) for c in cov if not c["reached"]]
    if b.occurrence_at == alert["since"] and not missed:
        return "reached", []
    length = b.expires_at - b.starts_at
    over = b.occurrence_at != alert["since"] or b.state == "finished" or now >= alert["since"] + length
    if over:
        return "expired", _village_names(conn, missed) if b.occurrence_at == alert["since"] else []
    return None


def resolve_settled(conn: psycopg.Connection, now: datetime) -> list[int]:
    """Resolve the open alerts whose broadcast reached every village, was cancelled or expired;
    the evaluator tells the channels that heard of the alert. The ids resolved."""
    with conn.cursor(row_factory=dict_row) as cur:
        open_ = cur.execute(
            # An alert the evaluator is changing now (a repeat) is left for the next round: the two
            # never wait for each other.
            f"SELECT {alert_store.COLUMNS} FROM alerts WHERE rule = %s AND state <> 'resolved'"  # noqa: S608
            " FOR UPDATE SKIP LOCKED",
            (RULE,),
        ).fetchall()
    resolved = []
    for alert in open_:
        found = _outcome(conn, alert, now)
        if found is None:
            continue
        outcome, never = found
        extra: dict[str, Any] = {"outcome": outcome} | ({"not_reached": ", ".join(never)} if never else {})
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = %s, updated_at = now(),"  # noqa: S608
                f" details = details || %s WHERE id = %s RETURNING {alert_store.COLUMNS}",
                (now, Jsonb(extra), alert["id"]),
            ).fetchone()
        assert row is not None
        alert_store.history(conn, row["id"], "resolved", None, {"auto": True, "reason": outcome, **extra})
        # An open notification not routed yet has nobody to tell; the evaluator sends the resolve
        # to the channels told of the alert, as for the gateway's requests.
        conn.execute(
            "DELETE FROM alert_outbox WHERE id IN (SELECT id FROM alert_outbox WHERE alert_id = %s"
            " AND status = 'route' FOR UPDATE SKIP LOCKED)",
            (row["id"],),
        )
        conn.execute(
            "INSERT INTO alert_outbox (alert_id, event, status, data) VALUES (%s, 'resolve', 'route', %s)",
            (row["id"], Jsonb({"actor": None})),
        )
        feed.publish(conn, [alert_store.feed_item(row)])
        resolved.append(row["id"])
    return resolved
