"""Devices and their current state, as operators list them: filters, commune scope, keyset pages."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from services import paging, sources
from services.errors import InvalidInput, NotFound
from services.models import KINDS, State

STATES = tuple(s.value for s in State)


@dataclass(frozen=True)
class DeviceFilter:
    """What a list asks for; `scope` is the communes the caller may see (None: every commune)."""

    commune: str | None = None
    village: str | None = None
    kind: str | None = None
    state: str | None = None
    scope: Sequence[str] | None = None
    # the commune a village belonged to before the 2025 reform (villages.former_commune), by name
    former_commune: str | None = None

    def check(self) -> None:
        """400 on a kind or state that does not exist (a typo must not look like an empty commune)."""
        if self.kind is not None and self.kind not in KINDS:
            raise InvalidInput(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.state is not None and self.state not in STATES:
            raise InvalidInput(f"state {self.state!r} is not one of {', '.join(STATES)}")

    def where(self) -> tuple[list[str], dict[str, Any]]:
        clauses = ["d.retired_at IS NULL"]
        params: dict[str, Any] = {}
        for column, name in (("d.commune_id", "commune"), ("d.village_id", "village"), ("d.kind", "kind")):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{column} = %({name})s")
                params[name] = value
        if self.state is not None:
            clauses.append("COALESCE(s.state, 'unknown') = %(state)s")
            params["state"] = self.state
        if self.scope is not None:
            clauses.append("d.commune_id = ANY(%(scope)s)")
            params["scope"] = list(self.scope)
        if self.former_commune is not None:
            clauses.append("v.former_commune = %(former_commune)s")
            params["former_commune"] = self.former_commune
        return clauses, params


def utc(value: datetime | None) -> datetime | None:
    """The API speaks UTC whatever the session time zone of the database is."""
    return value.astimezone(UTC) if value is not None else None


_DEVICE_SQL = """
SELECT d.id, d.commune_id, d.village_id, d.kind, d.name, d.lat, d.lon, d.parent_id, d.heartbeat_s,
       d.onvif, d.source, COALESCE(s.state, 'unknown') AS state, s.since, s.last_seen, v.former_commune
FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
LEFT JOIN villages v ON v.commune_id = d.commune_id AND v.id = d.village_id
"""

_STATUS_SQL = """
SELECT d.id, d.commune_id, d.village_id, d.kind, COALESCE(s.state, 'unknown') AS state, s.since,
       s.last_seen, COALESCE(s.metrics, '{}'::jsonb) AS metrics, s.reason, v.former_commune
FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
LEFT JOIN villages v ON v.commune_id = d.commune_id AND v.id = d.village_id
"""


def _onvif(o: dict[str, Any] | None) -> dict[str, Any] | None:
    # Named keys only: whatever else the column may hold later, a secret never leaves here.
    if not o:
        return None
    return {k: o.get(k) for k in ("host", "port", "username", "path", "poll_s")}


def _device_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "commune": r["commune_id"],
        "village": r["village_id"],
        "former_commune": r["former_commune"],
        "kind": r["kind"],
        "name": r["name"],
        "lat": r["lat"],
        "lon": r["lon"],
        "parent": r["parent_id"],
        "heartbeat_s": r["heartbeat_s"],
        "onvif": _onvif(r["onvif"]),
        # how it is heard, never a secret (devices.source holds none; public() names what is shown)
        "source": sources.public(sources.from_json(r["source"])) if r.get("source") else None,
        "state": r["state"],
        "since": utc(r["since"]),
        "last_seen": utc(r["last_seen"]),
    }


def status_row(r: dict[str, Any]) -> dict[str, Any]:
    """A device's current-state row as every status list shows it (device columns + state columns)."""
    return {
        "device_id": r["id"],
        "commune": r["commune_id"],
        "village": r["village_id"],
        "kind": r["kind"],
        "state": r["state"],
        "since": utc(r["since"]),
        "last_seen": utc(r["last_seen"]),
        "metrics": r["metrics"],
        "reason": r["reason"],
        "former_commune": r.get("former_commune"),
    }


def _page(
    conn: psycopg.Connection, select: str, f: DeviceFilter, limit: int | None, cursor: str | None
) -> list[dict[str, Any]]:
    f.check()
    n = paging.check_limit(limit)
    clauses, params = f.where()
    if cursor:
        (after,) = paging.decode(cursor, [str])
        clauses.append("d.id > %(after)s")
        params["after"] = after
    params["n"] = n + 1
    sql = f"{select} WHERE {' AND '.join(clauses)} ORDER BY d.id LIMIT %(n)s"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()  # type: ignore[arg-type]


def list_devices(
    conn: psycopg.Connection, f: DeviceFilter, *, limit: int | None = None, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of active devices in id order, and the cursor of the next page (None when last)."""
    rows = _page(conn, _DEVICE_SQL, f, limit, cursor)
    items, nxt = paging.page(rows, paging.check_limit(limit), lambda r: [r["id"]])
    return [_device_row(r) for r in items], nxt


def list_status(
    conn: psycopg.Connection, f: DeviceFilter, *, limit: int | None = None, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of current states, one row per active device, in device id order."""
    rows = _page(conn, _STATUS_SQL, f, limit, cursor)
    items, nxt = paging.page(rows, paging.check_limit(limit), lambda r: [r["id"]])
    return [status_row(r) for r in items], nxt


def get_device(
    conn: psycopg.Connection,
    device_id: str,
    scope: Sequence[str] | None = None,
    *,
    include_retired: bool = False,
) -> dict[str, Any]:
    """One device; NotFound when unknown, retired (unless asked for) or outside the caller's communes."""
    clauses = ["d.id = %(id)s"]
    params: dict[str, Any] = {"id": device_id}
    if not include_retired:
        clauses.append("d.retired_at IS NULL")
    if scope is not None:
        clauses.append("d.commune_id = ANY(%(scope)s)")
        params["scope"] = list(scope)
    sql = f"{_DEVICE_SQL} WHERE {' AND '.join(clauses)}"
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql, params).fetchone()  # type: ignore[arg-type]
    if row is None:
        raise NotFound(f"no device {device_id}")
    return _device_row(row)
