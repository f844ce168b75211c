"""What the delivery worker does each round, in the database: make the deliveries of occurrences
that began, expire what got no answer, and pick the commands to publish (play, show, stop, clear)
with the deliveries marked `sent` — committed before publishing, so a crash resends, never loses.

Priority (Thông tư 39): a delivery of a higher priority stops a lower one playing on the device;
a lower one waits while a higher or equal one is open there.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import psycopg
from psycopg.rows import class_row

from services import media, topics
from services.broadcasts import alerting, store, texts
from services.broadcasts.model import NO_RESULT_IN_MAINTENANCE, RANK, Broadcast
from services.maintenance import _parse_rrule

_OPEN = ("sent", "accepted", "playing")
# A command the device never answered (not even `accepted`) is sent again after this long, then
# after twice that, up to every 8 minutes, until it expires: QoS 1 covers a lost packet, not a
# broker killed before it saved the message, nor a worker that died between its commit and its
# publish. A device takes the same delivery id twice as one (its results name the delivery).
RESEND_AFTER_S = 30.0


@dataclass(frozen=True)
class Command:
    """One message for a device: its `cmd` topic and JSON payload."""

    topic: str
    payload: bytes


def occurrence(b: Broadcast, now: datetime, tz: str) -> datetime | None:
    """The start of the occurrence that covers `now` (each lasts expires_at - starts_at), or None."""
    length = b.expires_at - b.starts_at
    if not b.rrule:
        return b.starts_at if b.starts_at <= now < b.expires_at else None
    if now < b.starts_at:
        return None
    start = _parse_rrule(b.rrule, b.starts_at, tz).before(now.astimezone(ZoneInfo(tz)), inc=True)
    if start is None or now >= start + length:
        return None
    return start.astimezone(b.starts_at.tzinfo)


def _more_to_come(b: Broadcast, now: datetime, tz: str) -> bool:
    if not b.rrule:
        return now < b.starts_at
    return _parse_rrule(b.rrule, b.starts_at, tz).after(now.astimezone(ZoneInfo(tz))) is not None


def activate(conn: psycopg.Connection, now: datetime, tz: str) -> list[Broadcast]:
    """Make the deliveries of every occurrence that has begun; finish what is over."""
    with conn.cursor(row_factory=class_row(Broadcast)) as cur:
        open_ = cur.execute(
            "SELECT * FROM broadcasts WHERE state IN ('scheduled', 'active') FOR UPDATE"
        ).fetchall()
    started = []
    for b in open_:
        occ = occurrence(b, now, tz)
        if occ is not None and occ != b.occurrence_at:
            devices = store.recipients(conn, b)
            expires = occ + (b.expires_at - b.starts_at)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO deliveries (broadcast_id, device_id, commune_id, village_id, kind, occurrence_at,"
                    " expires_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(b.id, d[0], d[1], d[2], d[3], occ, expires, now) for d in devices],
                )
            conn.execute(
                "UPDATE broadcasts SET state = 'active', occurrence_at = %s WHERE id = %s", (occ, b.id)
            )
            started.append(replace(b, state="active", occurrence_at=occ))
        elif occ is None and not _more_to_come(b, now, tz) and (b.state == "active" or now >= b.expires_at):
            conn.execute("UPDATE broadcasts SET state = 'finished' WHERE id = %s", (b.id,))
        elif occ is not None and not b.rrule and b.state == "active" and _all_over(conn, b):
            conn.execute("UPDATE broadcasts SET state = 'finished' WHERE id = %s", (b.id,))
    return started


def _all_over(conn: psycopg.Connection, b: Broadcast) -> bool:
    """Every delivery of the broadcast has its outcome (and owes no stop)."""
    row = conn.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM deliveries WHERE broadcast_id = %s"
        " AND (state IN ('scheduled', 'sent', 'accepted', 'playing') OR stop_owed))",
        (b.id,),
    ).fetchone()
    return bool(row and row[0])


def expire(conn: psycopg.Connection, now: datetime) -> int:
    """Deliveries with no final result by their expiry: `expired` (a playing one gets its length).
    An e-board that took its text shows it until the expiry, which is its whole job: it ends
    `done` (its village stays reached). Texts not sent by then are given up."""
    texts.expire(conn, now)
    cur = conn.execute(
        "UPDATE deliveries d SET updated_at = %(now)s,"
        " state = CASE WHEN d.kind = 'eboard' AND d.state IN ('accepted', 'playing') THEN 'done'"
        "  ELSE 'expired' END,"
        " reason = CASE WHEN d.kind = 'eboard' AND d.state IN ('accepted', 'playing') THEN NULL"
        "  WHEN d.state = 'scheduled'"
        "  THEN coalesce(d.reason, 'never sent: the device was offline')"
        "  WHEN EXISTS (SELECT 1 FROM device_state s WHERE s.device_id = d.device_id"
        "   AND s.state = 'maintenance') THEN %(in_maintenance)s"
        "  ELSE 'no result from the device before expiry' END"
        " FROM broadcasts b LEFT JOIN media m ON m.id = b.media_id"
        " WHERE b.id = d.broadcast_id AND d.state IN ('scheduled', 'sent', 'accepted', 'playing')"
        " AND d.expires_at + CASE WHEN d.state = 'playing' AND d.kind = 'speaker'"
        "  THEN make_interval(secs => coalesce(m.duration_s, 0) + 60) ELSE interval '0' END <= %(now)s",
        {"now": now, "in_maintenance": NO_RESULT_IN_MAINTENANCE},
    )
    return cur.rowcount


def _cmd(row: dict[str, Any], public_url: str, secret: str) -> Command:
    speaker = row["kind"] == "speaker"
    payload: dict[str, Any] = {
        "id": str(row["id"]),
        "type": "play" if speaker else "show",
        "broadcast": str(row["broadcast_id"]),
        "priority": row["priority"],
        "expires_at": row["expires_at"].isoformat(),
    }
    if speaker:
        payload["media_url"] = public_url.rstrip("/") + media.signed_path(
            secret, row["media_id"], row["expires_at"]
        )
        payload["sha256"] = row["sha256"]
        payload["duration_s"] = row["duration_s"]
        if row["volume"] is not None:
            payload["volume"] = row["volume"]
    else:
        payload["text"] = row["text"] or row["title"]
        if row["duration_s"] is not None:
            payload["duration_s"] = row["duration_s"]
    return Command(
        topics.device_topic(row["commune_id"], row["kind"], row["device_id"], "cmd"), orjson.dumps(payload)
    )


def _stop(row: dict[str, Any]) -> Command:
    payload = {
        "id": str(row["id"]),
        "type": "stop" if row["kind"] == "speaker" else "clear",
        "broadcast": str(row["broadcast_id"]),
    }
    return Command(
        topics.device_topic(row["commune_id"], row["kind"], row["device_id"], "cmd"), orjson.dumps(payload)
    )


_CANDIDATES = (
    "SELECT d.id, d.broadcast_id, d.device_id, d.commune_id, d.village_id, d.kind, d.state, d.expires_at,"
    " d.stop_owed, b.priority, b.title, b.text, b.volume, b.media_id, m.sha256, m.duration_s,"
    " coalesce(s.state, 'unknown') AS device_state, s.since AS device_since, d.sent_at, d.attempts"
    " FROM deliveries d JOIN broadcasts b ON b.id = d.broadcast_id LEFT JOIN media m ON m.id = b.media_id"
    " LEFT JOIN device_state s ON s.device_id = d.device_id"
    " WHERE (d.state IN ('scheduled', 'sent', 'accepted', 'playing') OR d.stop_owed)"
    " ORDER BY d.device_id, d.id FOR UPDATE OF d"
)


SENDABLE = ("online", "maintenance")


def _came_back(r: dict[str, Any]) -> bool:
    return r["device_since"] is not None and r["device_since"] > r["sent_at"]


def _unanswered(r: dict[str, Any], now: datetime) -> bool:
    wait = RESEND_AFTER_S * 2 ** min(max(r["attempts"] - 1, 0), 4)
    return r["state"] == "sent" and (now - r["sent_at"]).total_seconds() >= wait


def due(conn: psycopg.Connection, now: datetime, public_url: str, secret: str) -> list[Command]:
    """The commands to publish now, with the deliveries marked (sent, stop given, waiting)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(_CANDIDATES).fetchall()
    by_device: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_device.setdefault(r["device_id"], []).append(r)
    out: list[Command] = []
    sent: list[int] = []
    notes: list[tuple[str, int]] = []
    preempted: list[tuple[str, int]] = []
    stops_given: list[int] = []
    for device_rows in by_device.values():
        for r in device_rows:
            if r["stop_owed"]:
                out.append(_stop(r))
                stops_given.append(r["id"])
        live = [r for r in device_rows if r["state"] in _OPEN]
        waiting = sorted(
            (r for r in device_rows if r["state"] == "scheduled"),
            key=lambda r: (-RANK[r["priority"]], r["id"]),
        )
        # Maintenance silences a device's alerts, it does not switch a loudspeaker off: a device
        # being serviced still gets the broadcast (a village whose only speaker is in the window
        # must still hear a flood warning if it plays); one that does not answer ends expired.
        online = device_rows[0]["device_state"] in SENDABLE
        # A device that came back since it was sent something lost it, and one that never
        # answered may never have had it: send it again.
        for r in live:
            if online and r["sent_at"] is not None and (_came_back(r) or _unanswered(r, now)):
                out.append(_cmd(r, public_url, secret))
                sent.append(r["id"])
        if not waiting:
            continue
        if not online:
            notes += [("offline", r["id"]) for r in waiting]
            continue
        top = waiting[0]
        higher = [r for r in live if RANK[r["priority"]] >= RANK[top["priority"]]]
        if higher:
            notes += [
                (
                    f"waiting: the device plays broadcast {higher[0]['broadcast_id']} ({higher[0]['priority']})",
                    r["id"],
                )
                for r in waiting
            ]
            continue
        for r in live:
            out.append(_stop(r))
            preempted.append((f"preempted by broadcast {top['broadcast_id']} ({top['priority']})", r["id"]))
        out.append(_cmd(top, public_url, secret))
        sent.append(top["id"])
        notes += [(f"waiting: broadcast {top['broadcast_id']} goes first", r["id"]) for r in waiting[1:]]
    with conn.cursor() as cur:
        if sent:
            cur.execute(
                "UPDATE deliveries SET state = CASE WHEN state = 'scheduled' THEN 'sent' ELSE state END,"
                " reason = NULL, sent_at = %s, attempts = attempts + 1, updated_at = %s WHERE id = ANY(%s)",
                (now, now, sent),
            )
        if stops_given:
            cur.execute("UPDATE deliveries SET stop_owed = false WHERE id = ANY(%s)", (stops_given,))
        if preempted:
            cur.executemany(
                "UPDATE deliveries SET state = 'cancelled', reason = %s, updated_at = %s WHERE id = %s",
                [(reason, now, i) for reason, i in preempted],
            )
        if notes:
            cur.executemany(
                "UPDATE deliveries SET reason = %s, updated_at = %s WHERE id = %s AND reason IS DISTINCT FROM %s",
                [(reason, now, i, reason) for reason, i in notes],
            )
    return out


def tick(
    conn: psycopg.Connection, now: datetime, tz: str, public_url: str, secret: str, lang: str = "vi"
) -> list[Command]:
    """One round of the worker, in one transaction: the commands to publish after it commits."""
    with conn.transaction():
        for b in activate(conn, now, tz):
            assert b.occurrence_at is not None
            texts.enqueue(conn, b, b.occurrence_at, now, lang, tz)
        expire(conn, now)
        commands = due(conn, now, public_url, secret)
        alerting.resolve_settled(conn, now)
        alerting.raise_not_reached(conn, now, lang)
        return commands
