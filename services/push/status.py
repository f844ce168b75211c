"""Where each push target stands, for `GET /api/v1/upstreams` and `/metrics` (read by the gateway).

`backlog` counts the items not delivered yet: those in pending outbox rows, plus, for an upstream,
the changes and alert changes its producers have not queued yet (they wait in their source
tables while the receiver is down, see services/push/producers.py).
"""

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from services.status import utc

_TARGETS = """
SELECT t.target, t.configured, t.communes, t.last_success_at, t.last_error, t.last_error_at,
       t.delivered_total, t.failures_total, t.dead_total,
       coalesce(o.pending_items, 0) AS pending_items, coalesce(o.pending_rows, 0) AS pending_rows,
       coalesce(o.dead_rows, 0) AS dead_rows, o.oldest_pending_at
FROM push_targets t
LEFT JOIN (
    SELECT target, sum(items) FILTER (WHERE status = 'pending') AS pending_items,
           count(*) FILTER (WHERE status = 'pending') AS pending_rows,
           count(*) FILTER (WHERE status = 'dead') AS dead_rows,
           min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending_at
    FROM push_outbox WHERE status <> 'delivered' GROUP BY target
) o ON o.target = t.target
ORDER BY t.target
"""

_UNQUEUED_CHANGES = """
SELECT count(*) FROM state_changes c JOIN devices d ON d.id = c.device_id
WHERE c.seq > %(pos)s AND d.retired_at IS NULL AND (%(communes)s::text[] IS NULL OR c.commune_id = ANY(%(communes)s))
"""
_UNQUEUED_ALERTS = """
SELECT count(*) FROM alert_changes l JOIN alerts a ON a.id = l.alert_id
WHERE (l.xid, l.id) > (%(xid)s::xid8, %(pos)s) AND (%(communes)s::text[] IS NULL OR a.commune_id = ANY(%(communes)s))
"""


def _has_ngsi(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('ngsi_subscriptions')").fetchone()
    return row is not None and row[0] is not None


def targets(conn: psycopg.Connection, communes: list[str] | None = None) -> list[dict[str, Any]]:
    """Every upstream and NGSI-LD subscription target, with its backlog and its last error.

    `communes` (an admin limited to some): only upstreams that carry one of them; an upstream of
    every commune and NGSI-LD subscriptions are deployment-wide, for admins of every commune."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_TARGETS).fetchall()
        cursors = {
            (r["upstream"], r["stream"]): r
            for r in cur.execute("SELECT upstream, stream, pos, pos_xid::text FROM push_cursors").fetchall()
        }
    out = []
    for r in rows:
        kind, _, name = r["target"].partition(":")
        if communes is not None and (kind != "upstream" or not set(r["communes"] or ()) & set(communes)):
            continue
        backlog = int(r["pending_items"])
        if kind == "upstream" and r["configured"]:
            ch = cursors.get((name, "changes"))
            if ch is not None:
                got = conn.execute(
                    _UNQUEUED_CHANGES, {"pos": ch["pos"], "communes": r["communes"]}
                ).fetchone()
                backlog += int(got[0]) if got else 0
            al = cursors.get((name, "alerts"))
            if al is not None:
                got = conn.execute(
                    _UNQUEUED_ALERTS, {"xid": al["pos_xid"], "pos": al["pos"], "communes": r["communes"]}
                ).fetchone()
                backlog += int(got[0]) if got else 0
        out.append(
            {
                "id": r["target"],
                "kind": "ngsi" if kind == "ngsi" else "upstream",
                "configured": bool(r["configured"]),
                "backlog": backlog,
                "pending_pushes": int(r["pending_rows"]),
                "oldest_pending_at": utc(r["oldest_pending_at"]),
                "dead": int(r["dead_rows"]),
                "delivered_total": int(r["delivered_total"]),
                "failures_total": int(r["failures_total"]),
                "last_success_at": utc(r["last_success_at"]),
                "last_error": r["last_error"],
                "last_error_kind": error_kind(r["last_error"]),
                "last_error_at": utc(r["last_error_at"]),
                "failing": r["last_error_at"] is not None
                and (r["last_success_at"] is None or r["last_error_at"] > r["last_success_at"]),
            }
        )
    if _has_ngsi(conn) and communes is None:
        known = {t["id"] for t in out}
        for (sub_id,) in conn.execute("SELECT id FROM ngsi_subscriptions ORDER BY id"):
            target = f"ngsi:{sub_id}"
            if target not in known:
                out.append(_empty(target))
    out.sort(key=lambda t: (t["kind"] != "upstream", t["id"]))
    return out


def _empty(target: str) -> dict[str, Any]:
    return {
        "id": target,
        "kind": "ngsi",
        "configured": True,
        "backlog": 0,
        "pending_pushes": 0,
        "oldest_pending_at": None,
        "dead": 0,
        "delivered_total": 0,
        "failures_total": 0,
        "last_success_at": None,
        "last_error": None,
        "last_error_kind": None,
        "last_error_at": None,
        "failing": False,
    }


def error_kind(error: str | None) -> str | None:
    """What kind of trouble a last_error is, for words a person reads (the dashboard's catalogue):
    token (the token endpoint), auth (401 with a new token), refused (another 4xx), server (5xx or a
    redirect), tls (the certificate is not trusted), timeout, network, gone (an NGSI-LD subscription that ended) or other."""
    if not error:
        return None
    if "CERTIFICATE" in error or "[SSL" in error:
        return "tls"
    if error.startswith("token endpoint"):
        return "token"
    if error.startswith("HTTP 401"):
        return "auth"
    if error.startswith("HTTP 4") and error[5:8].isdigit() and int(error[5:8]) not in (408, 409, 425, 429):
        return "refused"
    if error.startswith("HTTP "):
        return "server"
    if error == "timed out" or "Timeout" in error:
        return "timeout"
    if error.startswith(("ConnectError", "ReadError", "WriteError", "RemoteProtocolError", "NetworkError")):
        return "network"
    if error.startswith("subscription "):
        return "gone"
    return "other"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_lines(conn: psycopg.Connection) -> list[str]:
    """Prometheus lines: backlog, dead rows, deliveries and failed attempts per target."""
    ts = targets(conn)
    series: list[tuple[str, str, str, str]] = [
        ("ioc_push_backlog_items", "gauge", "Items not yet delivered, per push target", "backlog"),
        ("ioc_push_dead_rows", "gauge", "Outbox rows refused by the receiver and set aside", "dead"),
        ("ioc_push_delivered_total", "counter", "Pushes delivered, per target", "delivered_total"),
        ("ioc_push_failures_total", "counter", "Failed push attempts, per target", "failures_total"),
    ]
    lines = []
    for name, kind, text, field in series:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f'{name}{{target="{_label(t["id"])}"}} {t[field]}' for t in ts]
    lines += [
        "# HELP ioc_push_last_success_timestamp_seconds When each target last took a push (Unix time)",
        "# TYPE ioc_push_last_success_timestamp_seconds gauge",
    ]
    lines += [
        f'ioc_push_last_success_timestamp_seconds{{target="{_label(t["id"])}"}} {_ts(t["last_success_at"])}'
        for t in ts
        if t["last_success_at"] is not None
    ]
    return lines


def _ts(at: datetime) -> float:
    return round(at.timestamp(), 3)
