"""Broadcasts in the database: create, approve, cancel, read, list, and their coverage."""

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from services import maintenance, paging
from services.broadcasts import texts
from services.broadcasts.model import (
    KINDS,
    NO_RESULT_IN_MAINTENANCE,
    PRIORITIES,
    Broadcast,
    Delivery,
    village_reached,
    why_not,
)
from services.errors import Conflict, Forbidden, InvalidInput, NotFound

# Told to the delivery worker so an emergency goes out at once instead of at its next poll.
CHANNEL = "ioc_broadcasts"
DEFAULT_EXPIRY = timedelta(hours=1)
_DELIVERY_COLUMNS = (
    "id, broadcast_id, device_id, commune_id, village_id, kind, occurrence_at, expires_at, state, reason,"
    " sent_at, attempts, stop_owed, updated_at"
)


def _split_village(v: str) -> tuple[str | None, str]:
    commune, sep, village = v.partition("/")
    return (commune, village) if sep else (None, v)


def resolve_targets(
    conn: psycopg.Connection, targets: dict[str, Any], scope: Sequence[str] | None, *, strict: bool = True
) -> tuple[list[tuple[str, str, str | None, str]], list[tuple[str, str]]]:
    """The devices a broadcast reaches — (device_id, commune, village, kind), a union of the listed
    communes, villages (`village` or `commune/village`) and devices of the listed kinds — and the
    villages it targets (commune, village). InvalidInput names every unknown commune, village or
    device, and every listed device that is no speaker or e-board; Forbidden one outside `scope`
    (None: every commune). Not `strict` (a broadcast made earlier, at its start): what the
    registry lost since (a retired device) is left out, never an error that would stop delivery."""
    communes = list(dict.fromkeys(targets.get("communes") or []))
    villages = [_split_village(v) for v in dict.fromkeys(targets.get("villages") or [])]
    devices = list(dict.fromkeys(targets.get("devices") or []))
    kinds = list(dict.fromkeys(targets.get("kinds") or KINDS))
    bad_kinds = [k for k in kinds if k not in KINDS]
    if bad_kinds:
        raise InvalidInput(f"targets.kinds: {bad_kinds} are not speaker or eboard")
    if not (communes or villages or devices):
        raise InvalidInput("targets: name at least one commune, village or device")
    known_communes = {r[0] for r in conn.execute("SELECT id FROM communes WHERE id = ANY(%s)", (communes,))}
    village_rows = conn.execute(
        "SELECT commune_id, id FROM villages WHERE id = ANY(%s)", ([v for _, v in villages],)
    ).fetchall()
    device_rows = conn.execute(
        "SELECT id, commune_id, village_id, kind FROM devices WHERE id = ANY(%s) AND retired_at IS NULL",
        (devices,),
    ).fetchall()
    unknown: list[str] = [f"commune {c!r}" for c in communes if c not in known_communes]
    picked_villages: list[tuple[str, str]] = []
    for c, v in villages:
        found = [(rc, rv) for rc, rv in village_rows if rv == v and (c is None or rc == c)]
        if scope is not None and c is None:
            found = [f for f in found if f[0] in scope] or found
        if not found:
            unknown.append(f"village {v!r}" + (f" of commune {c!r}" if c else ""))
        picked_villages += found
    known_devices = {r[0] for r in device_rows}
    unknown += [f"device {d!r}" for d in devices if d not in known_devices]
    if unknown and strict:
        raise InvalidInput(f"targets: unknown {', '.join(unknown)}", detail={"unknown": unknown})
    silent = sorted(r[0] for r in device_rows if r[3] not in KINDS)
    if silent and strict:
        raise InvalidInput(
            f"targets.devices: {', '.join(silent)} cannot play or show a broadcast (only speakers and e-boards)",
            detail={"not_speaker_or_eboard": silent},
        )
    if scope is not None:
        outside = sorted(
            {c for c in communes if c not in scope}
            | {c for c, _ in picked_villages if c not in scope}
            | {r[1] for r in device_rows if r[1] not in scope}
        )
        if outside:
            raise Forbidden(f"you have no access to commune {', '.join(outside)}")
    rows = conn.execute(
        "SELECT d.id, d.commune_id, d.village_id, d.kind FROM devices d"
        " WHERE d.retired_at IS NULL AND d.kind = ANY(%s) AND (d.commune_id = ANY(%s) OR d.id = ANY(%s)"
        "  OR (d.commune_id, d.village_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])))"
        " ORDER BY d.commune_id, d.village_id, d.id",
        (kinds, communes, devices, [c for c, _ in picked_villages], [v for _, v in picked_villages]),
    ).fetchall()
    targeted = {(c, v) for c, v in picked_villages}
    targeted |= {
        (c, v)
        for c, v in conn.execute(
            "SELECT commune_id, id FROM villages WHERE commune_id = ANY(%s)", (communes,)
        )
    }
    targeted |= {(r[1], r[2]) for r in rows if r[2] is not None}
    return [(r[0], r[1], r[2], r[3]) for r in rows], sorted(targeted)


def recipients(conn: psycopg.Connection, b: Broadcast) -> list[tuple[str, str, str | None, str]]:
    """The devices an occurrence of the broadcast goes to as the registry is now: its targets,
    without speakers when it has no audio (e-boards show its text or title)."""
    devices, _ = resolve_targets(conn, b.targets, None, strict=False)
    return devices if b.media_id is not None else [d for d in devices if d[3] == "eboard"]


def create(
    conn: psycopg.Connection,
    *,
    title: str,
    priority: str,
    media_id: str | None,
    text: str | None,
    targets: dict[str, Any],
    starts_at: datetime | None,
    rrule: str | None,
    expires_at: datetime | None,
    risk_level: int | None,
    volume: int | None,
    actor: str,
    role: str,
    scope: Sequence[str] | None,
    now: datetime,
    tz: str,
    channels: Sequence[str] = (),
    known_channels: Collection[str] = (),
) -> Broadcast:
    """A new broadcast: `awaiting_approval` when an operator sends a normal or priority one,
    else `scheduled` (the worker makes it `active` at `starts_at`). `channels`: alert channels
    (of `known_channels`) it also goes out to as text."""
    if priority not in PRIORITIES:
        raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}")
    if media_id is None and not text:
        raise InvalidInput("give media_id (audio) or text (e-boards)")
    if (
        media_id is not None
        and conn.execute("SELECT 1 FROM media WHERE id = %s", (media_id,)).fetchone() is None
    ):
        raise InvalidInput(f"unknown media_id {media_id!r}: upload it with POST /api/v1/media first")
    start = starts_at or now
    expiry = expires_at or start + DEFAULT_EXPIRY
    if expiry <= start:
        raise InvalidInput("expires_at must be after starts_at")
    if rrule:
        maintenance.check_rrule(rrule, start, tz)
    elif expiry <= now:
        raise InvalidInput(f"the broadcast expired already (expires_at {expiry.isoformat()} is past)")
    picked_channels = texts.check(channels, known_channels)
    devices, villages = resolve_targets(conn, targets, scope)
    communes = sorted({d[1] for d in devices} | {c for c, _ in villages})
    state = "awaiting_approval" if role != "admin" and priority != "emergency" else "scheduled"
    stored_targets = {k: v for k, v in targets.items() if v} | {
        "villages_resolved": [f"{c}/{v}" for c, v in villages]
    }
    with conn.cursor(row_factory=class_row(Broadcast)) as cur:
        b = cur.execute(
            "INSERT INTO broadcasts (title, priority, risk_level, media_id, text, volume, targets, communes,"
            " starts_at, rrule, expires_at, state, created_by, approved_by, approved_at, channels)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
            (
                title,
                priority,
                risk_level,
                media_id,
                text,
                volume,
                Jsonb(stored_targets),
                communes,
                start,
                rrule,
                expiry,
                state,
                actor,
                actor if state == "scheduled" and role == "admin" else None,
                now if state == "scheduled" and role == "admin" else None,
                picked_channels,
            ),
        ).fetchone()
    assert b is not None
    conn.execute(f"NOTIFY {CHANNEL}")
    return b


def get(conn: psycopg.Connection, broadcast_id: int, scope: Sequence[str] | None = None) -> Broadcast:
    with conn.cursor(row_factory=class_row(Broadcast)) as cur:
        b = cur.execute("SELECT * FROM broadcasts WHERE id = %s", (broadcast_id,)).fetchone()
    if b is None or (scope is not None and not set(b.communes) & set(scope)):
        raise NotFound(f"no broadcast {broadcast_id}")
    return b


def approve(
    conn: psycopg.Connection, broadcast_id: int, actor: str, scope: Sequence[str] | None, now: datetime
) -> Broadcast:
    """An admin lets a broadcast awaiting approval go (scheduled)."""
    b = get(conn, broadcast_id, scope)
    if b.state != "awaiting_approval":
        raise Conflict(f"broadcast {broadcast_id} is {b.state}, not awaiting_approval")
    with conn.cursor(row_factory=class_row(Broadcast)) as cur:
        out = cur.execute(
            "UPDATE broadcasts SET state = 'scheduled', approved_by = %s, approved_at = %s WHERE id = %s"
            " AND state = 'awaiting_approval' RETURNING *",
            (actor, now, broadcast_id),
        ).fetchone()
    if out is None:
        raise Conflict(f"broadcast {broadcast_id} changed meanwhile")
    conn.execute(f"NOTIFY {CHANNEL}")
    return out


def cancel(
    conn: psycopg.Connection,
    broadcast_id: int,
    actor: str,
    role: str,
    scope: Sequence[str] | None,
    now: datetime,
) -> Broadcast:
    """The creator or an admin ends a broadcast: its open deliveries are `cancelled`, and those a
    device may be playing owe it a `stop` (sent by the worker)."""
    b = get(conn, broadcast_id, scope)
    if role != "admin" and b.created_by != actor:
        raise Forbidden("only the broadcast's creator or an admin may cancel it")
    if b.state in ("finished", "cancelled"):
        raise Conflict(f"broadcast {broadcast_id} is {b.state} already")
    with conn.cursor(row_factory=class_row(Broadcast)) as cur:
        out = cur.execute(
            "UPDATE broadcasts SET state = 'cancelled', cancelled_by = %s, cancelled_at = %s WHERE id = %s"
            " RETURNING *",
            (actor, now, broadcast_id),
        ).fetchone()
    conn.execute(
        "UPDATE deliveries SET state = 'cancelled', reason = 'cancelled by ' || %s, updated_at = %s,"
        " stop_owed = state IN ('sent', 'accepted', 'playing')"
        " WHERE broadcast_id = %s AND state IN ('scheduled', 'sent', 'accepted', 'playing')",
        (actor, now, broadcast_id),
    )
    texts.cancel(conn, broadcast_id)
    conn.execute(f"NOTIFY {CHANNEL}")
    assert out is not None
    return out


def deliveries(conn: psycopg.Connection, b: Broadcast) -> list[Delivery]:
    """The deliveries of the broadcast's latest occurrence."""
    if b.occurrence_at is None:
        return []
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        return cur.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE broadcast_id = %s AND occurrence_at = %s"  # noqa: S608
            " ORDER BY commune_id, village_id, device_id",
            (b.id, b.occurrence_at),
        ).fetchall()


def coverage(
    conn: psycopg.Connection, b: Broadcast, ds: list[Delivery] | None = None
) -> list[dict[str, Any]]:
    """Per targeted village: reached or not, and why not."""
    ds = deliveries(conn, b) if ds is None else ds
    state_of: dict[str, str] = dict(
        conn.execute(
            "SELECT device_id, state FROM device_state WHERE device_id = ANY(%s)",
            ([d.device_id for d in ds],),
        ).fetchall()
    )

    def where(d: Delivery) -> str:
        # A delivery that expired unanswered in a window says so: the window may be over by now.
        state = state_of.get(d.device_id)
        if state == "maintenance" or d.reason == NO_RESULT_IN_MAINTENANCE:
            return "maintenance"
        return "online" if state == "online" else "offline"

    by_village: dict[tuple[str, str], list[Delivery]] = {}
    for v in b.targets.get("villages_resolved", []):
        c, _, vid = v.partition("/")
        by_village[(c, vid)] = []
    for d in ds:
        if d.village_id is not None:
            by_village.setdefault((d.commune_id, d.village_id), []).append(d)
    out = []
    for (c, v), vds in sorted(by_village.items()):
        reached = village_reached([(d.kind, d.state) for d in vds])
        reason = None if reached else why_not([(d.kind, d.state, where(d)) for d in vds])
        if b.occurrence_at is None and not reached:
            reason = "not_started"
        out.append({"commune": c, "village": v, "reached": reached, "reason": reason})
    return out


def _planned(conn: psycopg.Connection, b: Broadcast) -> list[dict[str, Any]]:
    """Before its first occurrence, the deliveries it will make (no id yet): `scheduled` (its
    coverage says why it waits), or how it ended without starting."""
    state, reason = {
        "cancelled": ("cancelled", f"cancelled by {b.cancelled_by}"),
        "finished": ("expired", None),
    }.get(b.state, ("scheduled", None))
    at = b.cancelled_at or b.approved_at or b.created_at
    return [
        {
            "id": None,
            "device_id": device_id,
            "commune": commune,
            "village": village,
            "kind": kind,
            "state": state,
            "reason": reason,
            "updated_at": at,
        }
        for device_id, commune, village, kind in recipients(conn, b)
    ]


def delivery_row(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "device_id": d.device_id,
        "commune": d.commune_id,
        "village": d.village_id,
        "kind": d.kind,
        "state": d.state,
        "reason": d.reason,
        "updated_at": d.updated_at,
    }


def row(b: Broadcast) -> dict[str, Any]:
    """A broadcast as lists show it."""
    targets = {k: v for k, v in b.targets.items() if k != "villages_resolved"}
    return {
        "id": b.id,
        "title": b.title,
        "priority": b.priority,
        "risk_level": b.risk_level,
        "media_id": b.media_id,
        "text": b.text,
        "volume": b.volume,
        "targets": targets,
        "communes": b.communes,
        "starts_at": b.starts_at,
        "rrule": b.rrule,
        "expires_at": b.expires_at,
        "state": b.state,
        "created_by": b.created_by,
        "created_at": b.created_at,
        "approved_by": b.approved_by,
        "approved_at": b.approved_at,
        "cancelled_by": b.cancelled_by,
        "cancelled_at": b.cancelled_at,
        "channels": b.channels,
    }


def detail(conn: psycopg.Connection, b: Broadcast) -> dict[str, Any]:
    """A broadcast with its deliveries and coverage."""
    ds = deliveries(conn, b)
    cov = coverage(conn, b, ds)
    return row(b) | {
        "deliveries": [delivery_row(d) for d in ds] if b.occurrence_at is not None else _planned(conn, b),
        "texts": texts.rows(conn, b),
        "coverage": cov,
        "villages_not_reached": [f"{c['commune']}/{c['village']}" for c in cov if not c["reached"]],
    }


def list_page(
    conn: psycopg.Connection,
    *,
    scope: Sequence[str] | None,
    limit: int,
    cursor: str | None,
    state: str | None = None,
    priority: str | None = None,
    commune: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[Broadcast], str | None]:
    """A page of broadcasts, oldest first (created_at, id)."""
    where, args = ["true"], []  # type: ignore[var-annotated]
    if cursor:
        at, last_id = paging.decode(cursor, [datetime, int])
        where.append("(created_at, id) > (%s, %s)")
        args += [at, last_id]
    if scope is not None:
        where.append("communes && %s::text[]")
        args.append(list(scope))
    for column, value in (("state", state), ("priority", priority)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if commune is not None:
        where.append("%s = ANY(communes)")
        args.append(commune)
    if since is not None:
        where.append("created_at >= %s")
        args.append(since)
    if until is not None:
        where.append("created_at < %s")
        args.append(until)
    args.append(limit + 1)
    with conn.cursor(row_factory=class_row(Broadcast)) as cur:
        sql = f"SELECT * FROM broadcasts WHERE {' AND '.join(where)} ORDER BY created_at, id LIMIT %s"  # noqa: S608
        rows = cur.execute(sql, args).fetchall()  # type: ignore[call-overload]
    return paging.page(rows, limit, lambda b: [b.created_at, b.id])


_COUNTS = (
    # Each broadcast's latest occurrence: its targeted villages (as asked, and those of its devices)
    # reached as model.village_reached says, its deliveries, its texts — one query for a page.
    # Only the communes in `scope` (NULL: all) are counted: a key of one commune does not learn how
    # many villages or devices of another commune a shared broadcast had.
    "WITH b AS (SELECT id, occurrence_at, targets FROM broadcasts WHERE id = ANY(%(ids)s)),"
    " d AS (SELECT d.broadcast_id, d.commune_id, d.village_id, d.kind, d.state FROM deliveries d"
    "  JOIN b ON d.broadcast_id = b.id AND d.occurrence_at = b.occurrence_at"
    "  WHERE %(scope)s::text[] IS NULL OR d.commune_id = ANY(%(scope)s::text[])),"
    " v AS (SELECT * FROM (SELECT b.id AS bid, split_part(t, '/', 1) AS c, split_part(t, '/', 2) AS v"
    "  FROM b, jsonb_array_elements_text(coalesce(b.targets->'villages_resolved', '[]')) AS t) AS asked"
    "  WHERE %(scope)s::text[] IS NULL OR asked.c = ANY(%(scope)s::text[])"
    "  UNION SELECT broadcast_id, commune_id, village_id FROM d WHERE village_id IS NOT NULL),"
    " r AS (SELECT v.bid, CASE WHEN bool_or(d.kind = 'speaker') THEN bool_or(d.kind = 'speaker'"
    "  AND d.state = 'done') ELSE coalesce(bool_or(d.state IN ('accepted', 'playing', 'done')), false)"
    "  END AS reached FROM v LEFT JOIN d ON d.broadcast_id = v.bid AND d.commune_id = v.c"
    "  AND d.village_id = v.v GROUP BY v.bid, v.c, v.v)"
    " SELECT b.id,"
    " (SELECT count(*) FROM r WHERE r.bid = b.id),"
    " (SELECT count(*) FROM r WHERE r.bid = b.id AND r.reached),"
    " (SELECT count(*) FROM d WHERE d.broadcast_id = b.id),"
    " (SELECT count(*) FROM d WHERE d.broadcast_id = b.id AND d.state = 'done'),"
    " (SELECT count(*) FROM alert_outbox o WHERE o.broadcast_id = b.id AND o.occurrence_at = b.occurrence_at"
    "  AND o.status = 'sent')"
    " FROM b"
)


def share_rows(
    conn: psycopg.Connection, bs: list[Broadcast], scope: list[str] | None = None
) -> list[dict[str, Any]]:
    """The broadcast log's rows (SPEC §9), with the text channels asked and sent; the villages and
    devices counted are those of the communes in `scope` (None: all)."""
    counts = {r[0]: r[1:] for r in conn.execute(_COUNTS, {"ids": [b.id for b in bs], "scope": scope})}
    out = []
    for b in bs:
        villages, reached, devices, done, texts_sent = counts.get(b.id, (0, 0, 0, 0, 0))
        out.append(
            {
                "id": b.id,
                "title": b.title,
                "priority": b.priority,
                "risk_level": b.risk_level,
                "created_at": b.created_at,
                "created_by": b.created_by,
                "approved_by": b.approved_by,
                "starts_at": b.starts_at,
                "state": b.state,
                "villages_targeted": villages,
                "villages_reached": reached,
                "devices_targeted": devices,
                "devices_done": done,
                "channels_targeted": len(b.channels),
                "channels_sent": texts_sent,
            }
        )
    return out


def utcnow() -> datetime:
    return datetime.now(UTC)
