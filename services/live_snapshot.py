"""What a live-feed client starts from: device states with their names and places, open alerts,
communes and villages, and the last hour's state changes and events, with the feed seq they are
current to (messages after it follow on the feed)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from services import feed, sources, status, village_terms
from services.alerts import store as alert_store

RECENT = timedelta(hours=1)


def read(conn: psycopg.Connection, scope: list[str] | None) -> dict[str, Any]:
    """The snapshot message of the communes in `scope` (None: all).

    The feed counter and the rows are read in one REPEATABLE READ snapshot of their own, so a
    client that takes the messages after `seq` misses nothing and sees nothing twice; a transaction
    open on `conn` is rolled back first."""
    conn.rollback()
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    body = _read(conn, scope)
    conn.rollback()
    return body


def _heard(r: dict[str, Any]) -> dict[str, Any]:
    """How the device is heard (`heard`: mqtt, profile, snmp, ping, tcp, http, onvif) and its
    source as an API may show it (never a secret)."""
    src = r["source"]
    if src:
        shown = sources.public(sources.from_json(src)) or {}
        kind = shown.get("kind")
        return {"heard": "profile" if kind == "mqtt" else kind, "source": shown}
    return {"heard": "onvif" if r["has_onvif"] else "mqtt", "source": None}


def _read(conn: psycopg.Connection, scope: list[str] | None) -> dict[str, Any]:
    seq = feed.head(conn)
    params = {"scope": scope, "recent": datetime.now(UTC) - RECENT}
    with conn.cursor(row_factory=dict_row) as cur:
        devices = [
            {
                **status.status_row(r),
                "name": r["name"],
                "lat": r["lat"],
                "lon": r["lon"],
                "parent": r["parent_id"],
                "attrs": r["attrs"],
                **_heard(r),
            }
            for r in cur.execute(
                "SELECT d.id, d.commune_id, d.village_id, d.kind, d.name, d.lat, d.lon, d.parent_id, d.attrs,"
                " d.onvif IS NOT NULL AS has_onvif, d.source,"
                " COALESCE(s.state, 'unknown') AS state, s.since, s.last_seen,"
                " COALESCE(s.metrics, '{}'::jsonb) AS metrics, s.reason, v.former_commune"
                " FROM devices d LEFT JOIN device_state s ON s.device_id = d.id"
                " LEFT JOIN villages v ON v.commune_id = d.commune_id AND v.id = d.village_id"
                " WHERE d.retired_at IS NULL AND (%(scope)s::text[] IS NULL OR d.commune_id = ANY(%(scope)s))"
                " ORDER BY d.id",
                params,
            )
        ]
        # each with its own word for its villages (ấp, xóm, thôn…), for views of one commune
        words = village_terms.commune_terms(conn)
        communes = [
            c | {"village_term": words.get(c["id"])}
            for c in cur.execute(
                "SELECT id, name, district, province FROM communes d"
                " WHERE (%(scope)s::text[] IS NULL OR d.id = ANY(%(scope)s)) ORDER BY id",
                params,
            ).fetchall()
        ]
        villages = [
            {
                "commune": r["commune_id"],
                "id": r["id"],
                "name": r["name"],
                "former_commune": r["former_commune"],
            }
            for r in cur.execute(
                "SELECT commune_id, id, name, former_commune FROM villages d"
                " WHERE (%(scope)s::text[] IS NULL OR d.commune_id = ANY(%(scope)s)) ORDER BY commune_id, id",
                params,
            )
        ]
        changes = [
            {
                "seq": r["seq"],
                "device_id": r["device_id"],
                "commune": r["commune_id"],
                "village": r["village_id"],
                "kind": r["kind"],
                "state": r["state"],
                "prev_state": r["prev_state"],
                "at": status.utc(r["at"]),
                "reason": r["reason"],
            }
            for r in cur.execute(
                "SELECT seq, device_id, commune_id, village_id, kind, state, prev_state, at, reason"
                " FROM state_changes d WHERE at >= %(recent)s"
                " AND (%(scope)s::text[] IS NULL OR d.commune_id = ANY(%(scope)s))"
                " ORDER BY seq DESC LIMIT 500",
                params,
            )
        ]
        events = [
            {
                "device_id": r["device_id"],
                "commune": r["commune_id"],
                "village": r["village_id"],
                "kind": r["kind"],
                "ts": status.utc(r["ts"]),
                "event_type": r["type"],
                "severity": r["severity"],
                "message": r["message"],
                "fields": r["fields"],
                "seq": r["seq"],
            }
            for r in cur.execute(
                "SELECT e.device_id, d.commune_id, d.village_id, d.kind, e.ts, e.type, e.severity, e.message,"
                " e.fields, e.seq FROM device_events e JOIN devices d ON d.id = e.device_id"
                " WHERE e.ts >= %(recent)s AND (%(scope)s::text[] IS NULL OR d.commune_id = ANY(%(scope)s))"
                " ORDER BY e.ts DESC LIMIT 200",
                params,
            )
        ]
    return {
        "type": "snapshot",
        "seq": seq,
        "devices": devices,
        "alerts": open_alerts(conn, scope),
        "communes": communes,
        "villages": villages,
        "changes": changes,
        "events": events,
    }


def open_alerts(conn: psycopg.Connection, scope: list[str] | None) -> list[dict[str, Any]]:
    """Unresolved (open or acknowledged) alerts as GET /api/v1/alerts shows them, newest first.

    IOC-wide alerts (no commune) are shown to everyone; [] before the alerts schema exists.
    """
    row = conn.execute("SELECT to_regclass('alerts') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return []
    query = sql.SQL(
        "SELECT {} FROM alerts WHERE state <> 'resolved'"
        " AND (%(scope)s::text[] IS NULL OR commune_id = ANY(%(scope)s) OR commune_id IS NULL)"
        " ORDER BY id DESC LIMIT 1000"
    ).format(sql.SQL(alert_store.COLUMNS))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, {"scope": scope}).fetchall()
    return [{k: v for k, v in alert_store.feed_item(r).items() if k != "type"} for r in rows]
