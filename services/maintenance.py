"""Maintenance windows: a device, a village or a kind of a commune, once or repeated by an
RFC 5545 rrule. Devices inside a window are in the `maintenance` state and raise no alerts."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from dateutil.rrule import rrule, rrulestr
from psycopg.rows import dict_row

from services import feed, paging
from services.errors import InvalidInput, NotFound
from services.models import KINDS

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
_COLUMNS = (
    "id, commune_id, device_id, village_id, kind, starts_at, ends_at, rrule, reason, created_by, created_at"
)


@dataclass(frozen=True)
class Window:
    id: int
    commune_id: str
    device_id: str | None
    village_id: str | None
    kind: str | None
    starts_at: datetime
    ends_at: datetime
    rrule: str | None
    reason: str
    created_by: str | None = None
    created_at: datetime | None = None


@lru_cache(maxsize=256)
def _parse_rrule(text: str, starts_at: datetime, tz: str) -> rrule:
    # Expanded in local time so that BYHOUR and friends mean what the operator read on a clock.
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    rule = rrulestr(body, dtstart=starts_at.astimezone(ZoneInfo(tz)))
    if not isinstance(rule, rrule):
        raise ValueError("give one RRULE")
    return rule


def check_rrule(text: str, starts_at: datetime, tz: str = DEFAULT_TZ) -> None:
    """Raise InvalidInput unless `text` is one RFC 5545 RRULE usable from starts_at."""
    try:
        rule = _parse_rrule(text, starts_at, tz)
        rule.after(starts_at, inc=True)
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"rrule {text!r} is not a valid RFC 5545 RRULE: {err}") from err


def occurrence_at(w: Window, now: datetime, tz: str = DEFAULT_TZ) -> tuple[datetime, datetime] | None:
    """The occurrence of the window that covers `now` (start, end), or None."""
    if not w.rrule:
        return (w.starts_at, w.ends_at) if w.starts_at <= now < w.ends_at else None
    if now < w.starts_at:
        return None
    start = _parse_rrule(w.rrule, w.starts_at, tz).before(now.astimezone(ZoneInfo(tz)), inc=True)
    if start is None:
        return None
    end = start + (w.ends_at - w.starts_at)
    return (start.astimezone(UTC), end.astimezone(UTC)) if now < end else None


def _window(r: dict[str, Any]) -> Window:
    return Window(**r)


_INSERT = (
    "INSERT INTO maintenance (commune_id, device_id, village_id, kind, starts_at, ends_at, rrule,"  # noqa: S608
    f" reason, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}"
)
_CANDIDATES = (
    f"SELECT {_COLUMNS} FROM maintenance WHERE deleted_at IS NULL"  # noqa: S608
    " AND (rrule IS NOT NULL OR (starts_at <= %(now)s AND ends_at > %(now)s))"
)

_EXPAND = (
    "SELECT d.id FROM devices d"
    " JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS w(commune_id, device_id, village_id, kind)"
    "  ON d.commune_id = w.commune_id"
    "  AND (w.device_id IS NULL OR d.id = w.device_id)"
    "  AND (w.village_id IS NULL OR d.village_id = w.village_id)"
    "  AND (w.kind IS NULL OR d.kind = w.kind)"
    " WHERE d.retired_at IS NULL"
)


def active_windows(windows: Iterable[Window], now: datetime, tz: str = DEFAULT_TZ) -> list[Window]:
    return [w for w in windows if occurrence_at(w, now, tz) is not None]


def _expand_args(active: list[Window]) -> tuple[list[Any], ...]:
    return (
        [w.commune_id for w in active],
        [w.device_id for w in active],
        [w.village_id for w in active],
        [w.kind for w in active],
    )


def devices_in_maintenance(conn: psycopg.Connection, now: datetime, tz: str = DEFAULT_TZ) -> set[str]:
    """Ids of the active devices inside a maintenance window at `now`."""
    with conn.cursor(row_factory=dict_row) as cur:
        windows = [_window(r) for r in cur.execute(_CANDIDATES, {"now": now})]
    active = active_windows(windows, now, tz)
    if not active:
        return set()
    return {r[0] for r in conn.execute(_EXPAND, _expand_args(active))}


def row(w: Window, now: datetime, tz: str = DEFAULT_TZ) -> dict[str, Any]:
    """A window as the API shows it."""
    return {
        "id": w.id,
        "commune": w.commune_id,
        "device_id": w.device_id,
        "village": w.village_id,
        "kind": w.kind,
        "starts_at": w.starts_at,
        "ends_at": w.ends_at,
        "rrule": w.rrule,
        "reason": w.reason,
        "created_by": w.created_by,
        "created_at": w.created_at,
        "active": occurrence_at(w, now, tz) is not None,
    }


def feed_item(op: str, w: Window, now: datetime, tz: str = DEFAULT_TZ) -> dict[str, Any]:
    """The live-feed message of a window created or deleted (`op`); `commune` scopes who gets it."""
    window = row(w, now, tz)
    if op == "deleted":
        window["active"] = False
    for k, v in window.items():
        if isinstance(v, datetime):
            window[k] = v.isoformat()
    return {"type": "maintenance", "op": op, "commune": w.commune_id, "window": window}


def create(
    conn: psycopg.Connection,
    *,
    commune_id: str | None,
    device_id: str | None,
    village_id: str | None,
    kind: str | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    rrule_text: str | None,
    actor: str | None,
    tz: str = DEFAULT_TZ,
) -> Window:
    """Validate and store a window, announced on the live feed; the caller commits."""
    if starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=UTC)
    if ends_at.tzinfo is None:
        ends_at = ends_at.replace(tzinfo=UTC)
    if ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at")
    if device_id:
        found = conn.execute(
            "SELECT commune_id, village_id, kind FROM devices WHERE id = %s AND retired_at IS NULL",
            (device_id,),
        ).fetchone()
        if found is None:
            raise InvalidInput(f"no device {device_id}")
        if commune_id and commune_id != found[0]:
            raise InvalidInput(f"device {device_id} is in commune {found[0]}, not {commune_id}")
        if village_id or kind:
            raise InvalidInput("give device_id, or village and/or kind with commune, not both")
        commune_id = found[0]
    else:
        if not commune_id:
            raise InvalidInput("give device_id, or commune (with village and/or kind)")
        if conn.execute("SELECT 1 FROM communes WHERE id = %s", (commune_id,)).fetchone() is None:
            raise InvalidInput(f"no commune {commune_id}")
        if (
            village_id
            and conn.execute(
                "SELECT 1 FROM villages WHERE commune_id = %s AND id = %s", (commune_id, village_id)
            ).fetchone()
            is None
        ):
            raise InvalidInput(f"no village {village_id} in commune {commune_id}")
        if kind and kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
    if rrule_text is not None:
        rrule_text = rrule_text.strip() or None
    if rrule_text:
        check_rrule(rrule_text, starts_at, tz)
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            _INSERT,
            (commune_id, device_id, village_id, kind, starts_at, ends_at, rrule_text, reason, actor),
        ).fetchone()
    assert r is not None
    w = _window(r)
    feed.publish(conn, [feed_item("created", w, datetime.now(UTC), tz)])
    return w


def get(conn: psycopg.Connection, window_id: int) -> Window:
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            f"SELECT {_COLUMNS} FROM maintenance WHERE id = %s AND deleted_at IS NULL",  # noqa: S608
            (window_id,),
        ).fetchone()
    if r is None:
        raise NotFound(f"no maintenance window {window_id}")
    return _window(r)


def delete(conn: psycopg.Connection, window_id: int, actor: str | None, tz: str = DEFAULT_TZ) -> Window:
    """End a window now, announced on the live feed; it stays in the table for the record."""
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            "UPDATE maintenance SET deleted_at = now(), deleted_by = %s"  # noqa: S608
            f" WHERE id = %s AND deleted_at IS NULL RETURNING {_COLUMNS}",
            (actor, window_id),
        ).fetchone()
    if r is None:
        raise NotFound(f"no maintenance window {window_id}")
    w = _window(r)
    feed.publish(conn, [feed_item("deleted", w, datetime.now(UTC), tz)])
    return w


def list_windows(
    conn: psycopg.Connection,
    *,
    communes: Iterable[str] | None,
    commune_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Window], str | None]:
    """Windows not deleted, by id; `communes` None means every commune."""
    where: list[str] = ["deleted_at IS NULL"]
    args: list[Any] = []
    if communes is not None:
        where.append("commune_id = ANY(%s)")
        args.append(list(communes))
    if commune_id:
        where.append("commune_id = %s")
        args.append(commune_id)
    if cursor:
        (after,) = paging.decode(cursor, [int])
        where.append("id > %s")
        args.append(after)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = [
            _window(r)
            for r in cur.execute(
                f"SELECT {_COLUMNS} FROM maintenance WHERE {' AND '.join(where)} ORDER BY id LIMIT %s",  # noqa: S608
                [*args, limit + 1],
            )
        ]
    return paging.page(rows, limit, lambda w: [w.id])
