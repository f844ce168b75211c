"""Broadcasts as text through the alert channels (Zalo OA, Apprise URLs of IOC_ALERTS_FILE), for
people out of earshot of a speaker (issue 16 item 5).

When an occurrence begins, the delivery worker queues one row per channel the broadcast names in
the notification outbox (`alert_outbox.broadcast_id`); `ioc alerts` sends it, retries it with
backoff and logs every attempt (`alert_deliveries`), as it does alerts' notifications. A text not
sent by the broadcast's expiry is given up; a cancelled broadcast's unsent texts are cancelled.
"""

import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services import words
from services.alerts import config as alert_config
from services.broadcasts.model import Broadcast
from services.errors import InvalidInput

log = logging.getLogger(__name__)
# How an Apprise channel marks it (Telegram's icon, ntfy's priority...).
SEVERITY = {"emergency": "critical", "priority": "warning", "normal": "info"}
_WHEN = "%H:%M %d/%m/%Y"


def known_channels(alerts_file: Path | None) -> list[str]:
    """The channel names of IOC_ALERTS_FILE (a broadcast may name these); none when it cannot be
    read — logged, and a broadcast still goes to its speakers."""
    try:
        channels = alert_config.load_file(alerts_file).get("channels") or {}
    except InvalidInput as err:
        log.warning("broadcast text channels unknown: %s", err.message)
        return []
    return sorted(str(c) for c in channels) if isinstance(channels, dict) else []


def check(channels: Sequence[str], known: Collection[str]) -> list[str]:
    """The channels, each once; InvalidInput names those IOC_ALERTS_FILE does not have."""
    picked = list(dict.fromkeys(channels))
    unknown = [c for c in picked if c not in known]
    if unknown:
        have = ", ".join(sorted(known)) or "none"
        raise InvalidInput(
            f"channels: unknown {', '.join(repr(c) for c in unknown)} (the channels of IOC_ALERTS_FILE: {have})",
            detail={"unknown": unknown},
        )
    return picked


def _villages(conn: psycopg.Connection, b: Broadcast) -> list[str]:
    pairs = [v.partition("/") for v in b.targets.get("villages_resolved", [])]
    rows = conn.execute(
        "SELECT v.commune_id, v.id, v.name FROM villages v"
        " JOIN unnest(%s::text[], %s::text[]) AS p(c, v) ON v.commune_id = p.c AND v.id = p.v",
        ([c for c, _, _ in pairs], [v for _, _, v in pairs]),
    ).fetchall()
    names = {(c, v): n for c, v, n in rows}
    return [names.get((c, v), v) for c, _, v in pairs]


def message(
    conn: psycopg.Connection, b: Broadcast, occurrence: datetime, lang: str, tz: str
) -> tuple[str, str, dict[str, Any]]:
    """(title, body, data) of the broadcast as text: its title, priority, risk level, villages,
    text, when; `data` fills a Zalo ZNS template."""
    zone = ZoneInfo(tz)
    communes = [
        r[0] for r in conn.execute("SELECT name FROM communes WHERE id = ANY(%s) ORDER BY id", (b.communes,))
    ]
    villages = _villages(conn, b)
    priority = words.text(f"bc.prio_{b.priority}", lang)
    at = occurrence.astimezone(zone).strftime(_WHEN)
    until = (occurrence + (b.expires_at - b.starts_at)).astimezone(zone).strftime(_WHEN)
    title = words.text("bc.msg_title", lang, priority=priority.upper(), title=b.title)
    lines = [words.text("bc.msg_from", lang, communes=", ".join(communes))] if communes else []
    lines.append(words.text("bc.msg_priority", lang, priority=priority))
    risk = None
    if b.risk_level is not None:
        risk = words.text(f"bc.risk_{b.risk_level}", lang)
        lines.append(words.text("bc.msg_risk", lang, n=b.risk_level, words=risk))
    if villages:
        lines.append(words.text("bc.msg_villages", lang, villages=", ".join(villages)))
    if b.text:
        lines.append(b.text)
    lines.append(words.text("bc.msg_when", lang, at=at, until=until))
    data = {
        "title": b.title,
        "priority": priority,
        "risk_level": f"{b.risk_level} ({risk})" if risk else None,
        "villages": ", ".join(villages) or None,
        "communes": ", ".join(communes) or None,
        "starts_at": at,
        "expires_at": until,
        "tracking_id": f"bc-{b.id}-{int(occurrence.timestamp())}",
    }
    return title, "\n".join(lines), data


def enqueue(
    conn: psycopg.Connection, b: Broadcast, occurrence: datetime, now: datetime, lang: str, tz: str
) -> int:
    """Queue the texts of an occurrence that began (once per channel); how many were queued."""
    if not b.channels:
        return 0
    title, body, data = message(conn, b, occurrence, lang, tz)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO alert_outbox (event, channel, title, body, data, severity, not_before,"
            " broadcast_id, occurrence_at) VALUES ('broadcast', %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (broadcast_id, occurrence_at, channel) WHERE broadcast_id IS NOT NULL DO NOTHING",
            [
                (ch, title, body, Jsonb(data), SEVERITY[b.priority], now, b.id, occurrence)
                for ch in b.channels
            ],
        )
        return cur.rowcount


def cancel(conn: psycopg.Connection, broadcast_id: int) -> None:
    """A cancelled broadcast's texts not sent yet are not sent (one being sent now goes)."""
    conn.execute(
        "UPDATE alert_outbox SET status = 'cancelled' WHERE id IN (SELECT id FROM alert_outbox"
        " WHERE broadcast_id = %s AND status = 'pending' FOR UPDATE SKIP LOCKED)",
        (broadcast_id,),
    )


def expire(conn: psycopg.Connection, now: datetime) -> int:
    """Texts still unsent when their occurrence expires are given up (`failed`, and why)."""
    cur = conn.execute(
        "UPDATE alert_outbox SET status = 'failed',"
        " last_error = 'expired before it was sent' || coalesce('; last error: ' || last_error, '')"
        " WHERE id IN (SELECT o.id FROM alert_outbox o JOIN broadcasts b ON b.id = o.broadcast_id"
        "  WHERE o.broadcast_id IS NOT NULL AND o.status = 'pending'"
        "  AND o.occurrence_at + (b.expires_at - b.starts_at) <= %s FOR UPDATE OF o SKIP LOCKED)",
        (now,),
    )
    return cur.rowcount


def _state(status: str, attempts: int) -> str:
    if status == "pending":
        return "retrying" if attempts else "scheduled"
    return status  # sent, failed, cancelled


def rows(conn: psycopg.Connection, b: Broadcast) -> list[dict[str, Any]]:
    """The texts of the broadcast's latest occurrence, as deliveries read: channel, state
    (`scheduled`, `retrying`, `sent`, `failed`, `cancelled`), error, attempts, updated_at."""
    if b.occurrence_at is None or not b.channels:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(
            "SELECT o.channel, o.status, o.attempts, o.last_error, coalesce(o.sent_at,"
            " (SELECT max(a.at) FROM alert_deliveries a WHERE a.outbox_id = o.id), o.created_at) AS at"
            " FROM alert_outbox o WHERE o.broadcast_id = %s AND o.occurrence_at = %s ORDER BY o.channel",
            (b.id, b.occurrence_at),
        ).fetchall()
    return [
        {
            "channel": r["channel"],
            "state": _state(r["status"], r["attempts"]),
            "error": r["last_error"],
            "attempts": r["attempts"],
            "updated_at": r["at"],
        }
        for r in found
    ]
