"""Alerts in the database: rows as the API shows them, the operators' actions (ack, resolve,
assign), lists, history and MTTA/MTTR. Every change is published on the live feed."""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services import feed, paging
from services.errors import Conflict, InvalidInput, NotFound

STATES = ("open", "acked", "resolved")
COLUMNS = (
    "id, rule, device_id, commune_id, village_id, kind, severity, state, message, details, affected,"
    " since, opened_at, acked_at, acked_by, ack_comment, resolved_at, resolved_by, assignee, assigned_at,"
    " notified_at, notify_count, escalation_level"
)


def _utc(v: datetime | None) -> datetime | None:
    return v.astimezone(UTC) if v is not None else None


def to_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """An alert as GET /api/v1/alerts and the live feed show it."""
    return {
        "id": r["id"],
        "rule": r["rule"],
        "device_id": r["device_id"],
        "commune": r["commune_id"],
        "village": r["village_id"],
        "kind": r["kind"],
        "severity": r["severity"],
        "state": r["state"],
        "message": r["message"],
        "details": r["details"],
        "affected": list(r["affected"] or []),
        "since": _utc(r["since"]),
        "opened_at": _utc(r["opened_at"]),
        "acked_at": _utc(r["acked_at"]),
        "acked_by": r["acked_by"],
        "comment": r["ack_comment"],
        "resolved_at": _utc(r["resolved_at"]),
        "resolved_by": r["resolved_by"],
        "assignee": r["assignee"],
        "assigned_at": _utc(r["assigned_at"]),
        "escalation_level": r["escalation_level"],
        "notify_count": r["notify_count"],
    }


def feed_item(r: Mapping[str, Any]) -> dict[str, Any]:
    item = to_row(r)
    for k, v in item.items():
        if isinstance(v, datetime):
            item[k] = v.isoformat()
    return {"type": "alert", **item}


def history(
    conn: psycopg.Connection,
    alert_id: int,
    action: str,
    actor: str | None,
    details: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO alert_history (alert_id, action, actor, details) VALUES (%s, %s, %s, %s)",
        (alert_id, action, actor, Jsonb(dict(details or {}))),
    )


def get(conn: psycopg.Connection, alert_id: int, *, lock: bool = False) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(
            f"SELECT {COLUMNS} FROM alerts WHERE id = %s" + (" FOR UPDATE" if lock else ""),  # noqa: S608
            (alert_id,),
        ).fetchone()
    if r is None:
        raise NotFound(f"no alert {alert_id}")
    return r


def _request_notification(conn: psycopg.Connection, alert_id: int, event: str, actor: str | None) -> None:
    # The evaluator owns routing (channels, quiet hours): it turns this into one row per channel.
    conn.execute(
        "INSERT INTO alert_outbox (alert_id, event, status, data) VALUES (%s, %s, 'route', %s)",
        (alert_id, event, Jsonb({"actor": actor})),
    )


def _changed(conn: psycopg.Connection, r: Mapping[str, Any]) -> dict[str, Any]:
    feed.publish(conn, [feed_item(r)])
    return to_row(r)


def ack(conn: psycopg.Connection, alert_id: int, actor: str, comment: str | None) -> dict[str, Any]:
    """Acknowledge: repeats and escalation stop; who and when are kept."""
    with conn.transaction():
        a = get(conn, alert_id, lock=True)
        if a["state"] != "open":
            raise Conflict(f"alert {alert_id} is {a['state']}; only an open alert can be acknowledged")
        with conn.cursor(row_factory=dict_row) as cur:
            r = cur.execute(
                f"UPDATE alerts SET state = 'acked', acked_at = now(), acked_by = %s, ack_comment = %s,"  # noqa: S608
                f" updated_at = now() WHERE id = %s RETURNING {COLUMNS}",
                (actor, comment, alert_id),
            ).fetchone()
        assert r is not None
        history(conn, alert_id, "acked", actor, {"comment": comment} if comment else None)
        _request_notification(conn, alert_id, "ack", actor)
        return _changed(conn, r)


def resolve(
    conn: psycopg.Connection, alert_id: int, actor: str, comment: str | None = None
) -> dict[str, Any]:
    """Resolve by hand; the alert does not come back until its condition clears and returns."""
    with conn.transaction():
        a = get(conn, alert_id, lock=True)
        if a["state"] == "resolved":
            raise Conflict(f"alert {alert_id} is already resolved")
        with conn.cursor(row_factory=dict_row) as cur:
            r = cur.execute(
                f"UPDATE alerts SET state = 'resolved', resolved_at = now(), resolved_by = %s,"  # noqa: S608
                f" updated_at = now() WHERE id = %s RETURNING {COLUMNS}",
                (actor, alert_id),
            ).fetchone()
        assert r is not None
        history(conn, alert_id, "resolved", actor, {"comment": comment} if comment else None)
        _request_notification(conn, alert_id, "resolve", actor)
        return _changed(conn, r)


def assign(conn: psycopg.Connection, alert_id: int, actor: str, username: str) -> dict[str, Any]:
    """Give the alert to an active user who may act on it: not a viewer, and one who sees its commune."""
    with conn.transaction():
        user = conn.execute(
            "SELECT role, communes FROM users WHERE username = %s AND disabled_at IS NULL", (username,)
        ).fetchone()
        if user is None:
            raise InvalidInput(f"no user {username}")
        a = get(conn, alert_id, lock=True)
        role, communes = user
        if role == "viewer":
            raise InvalidInput(f"{username} is a viewer and cannot acknowledge or resolve alerts")
        if communes and a["commune_id"] is not None and a["commune_id"] not in communes:
            raise InvalidInput(f"{username} does not see commune {a['commune_id']}")
        if a["state"] == "resolved":
            raise Conflict(f"alert {alert_id} is resolved; it cannot be assigned")
        with conn.cursor(row_factory=dict_row) as cur:
            r = cur.execute(
                f"UPDATE alerts SET assignee = %s, assigned_at = now(), updated_at = now()"  # noqa: S608
                f" WHERE id = %s RETURNING {COLUMNS}",
                (username, alert_id),
            ).fetchone()
        assert r is not None
        history(conn, alert_id, "assigned", actor, {"assignee": username})
        _request_notification(conn, alert_id, "assign", actor)
        return _changed(conn, r)


def list_alerts(
    conn: psycopg.Connection,
    *,
    communes: Iterable[str] | None,
    filters: Mapping[str, Any],
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first. `communes` None: every commune; IOC-wide alerts are shown to everyone."""
    where, args = [], []
    if communes is not None:
        where.append("(commune_id = ANY(%s) OR commune_id IS NULL)")
        args.append(list(communes))
    states = filters.get("state")
    if states:
        for s in states:
            if s not in STATES:
                raise InvalidInput(f"state must be one of {', '.join(STATES)}")
        where.append("state = ANY(%s)")
        args.append(list(states))
    for key, col in (
        ("commune", "commune_id"),
        ("village", "village_id"),
        ("kind", "kind"),
        ("rule", "rule"),
        ("device_id", "device_id"),
        ("severity", "severity"),
        ("assignee", "assignee"),
    ):
        if filters.get(key):
            where.append(f"{col} = %s")
            args.append(filters[key])
    if filters.get("since"):
        where.append("opened_at >= %s")
        args.append(filters["since"])
    if cursor:
        (before,) = paging.decode(cursor, [int])
        where.append("id < %s")
        args.append(before)
    sql = f"SELECT {COLUMNS} FROM alerts {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id DESC LIMIT %s"  # noqa: S608
    with conn.cursor(row_factory=dict_row) as cur:
        rows = [to_row(r) for r in cur.execute(sql, [*args, limit + 1])]  # type: ignore[arg-type]
    return paging.page(rows, limit, lambda r: [r["id"]])


def alert_history(conn: psycopg.Connection, alert_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT at, action, actor, details FROM alert_history WHERE alert_id = %s ORDER BY id",
            (alert_id,),
        ).fetchall()
        deliveries = cur.execute(
            "SELECT d.at, o.event, d.channel, d.ok, d.error FROM alert_deliveries d"
            " JOIN alert_outbox o ON o.id = d.outbox_id WHERE o.alert_id = %s ORDER BY d.id",
            (alert_id,),
        ).fetchall()
    out = [{**r, "at": _utc(r["at"])} for r in rows]
    out += [
        {
            "at": _utc(d["at"]),
            "action": "delivered" if d["ok"] else "delivery_failed",
            "actor": None,
            "details": {"event": d["event"], "channel": d["channel"], "error": d["error"]},
        }
        for d in deliveries
    ]
    out.sort(key=lambda x: x["at"])
    return out


def stats(
    conn: psycopg.Connection,
    *,
    communes: Iterable[str] | None,
    start: datetime | None,
    end: datetime | None,
    group_by: str,
) -> list[dict[str, Any]]:
    """Alert counts, mean time to acknowledge and to resolve (seconds) per village, kind or rule."""
    keys = {
        "village": ["commune_id", "village_id"],
        "kind": ["kind"],
        "rule": ["rule"],
        "village,kind": ["commune_id", "village_id", "kind"],
        "commune": ["commune_id"],
    }
    if group_by not in keys:
        raise InvalidInput(f"group_by must be one of {', '.join(keys)}")
    cols = keys[group_by]
    where: list[str] = ["device_id IS NOT NULL"]
    args: list[Any] = []
    if communes is not None:
        where.append("commune_id = ANY(%s)")
        args.append(list(communes))
    if start:
        where.append("opened_at >= %s")
        args.append(start)
    if end:
        where.append("opened_at < %s")
        args.append(end)
    group = ", ".join(cols)
    sql = (
        f"SELECT {group}, count(*) AS alerts, count(acked_at) AS acked, count(resolved_at) AS resolved,"  # noqa: S608
        " avg(extract(epoch FROM acked_at - opened_at)) AS mtta_s,"
        " avg(extract(epoch FROM resolved_at - opened_at)) AS mttr_s"
        f" FROM alerts WHERE {' AND '.join(where)} GROUP BY {group} ORDER BY {group}"
    )
    names = {"commune_id": "commune", "village_id": "village"}
    with conn.cursor(row_factory=dict_row) as cur:
        out = []
        for r in cur.execute(sql, args):  # type: ignore[arg-type]
            row = {names.get(k, k): v for k, v in r.items()}
            for k in ("mtta_s", "mttr_s"):
                row[k] = round(float(row[k]), 1) if row[k] is not None else None
            out.append(row)
    return out
