"""What the province and neighbouring communes may read: devices, state, history, availability, alerts and
the change log, always within an API key's communes and kinds, never a retired device."""

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from services import csvcells, paging
from services.errors import Forbidden, InvalidInput, NotFound
from services.keys import ApiKey
from services.models import KINDS
from services.reports import ReportDevice
from services.status import utc


@dataclass(frozen=True)
class Scope:
    """An API key's reach narrowed by the list filters of one call."""

    communes: tuple[str, ...] | None
    kinds: tuple[str, ...] | None
    commune: str | None = None
    village: str | None = None
    kind: str | None = None
    # villages of the commune of this name before the 2025 reform (villages.former_commune)
    former_commune: str | None = None

    @classmethod
    def of(
        cls,
        key: ApiKey,
        commune: str | None = None,
        village: str | None = None,
        kind: str | None = None,
        former_commune: str | None = None,
    ) -> "Scope":
        """403 when a filter asks for a commune or kind outside the key; 400 for a kind that does not exist."""
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        key.check_commune(commune)
        key.check_kind(kind)
        return cls(key.communes, key.kinds, commune, village, kind, former_commune)

    def where(self, d: str = "d") -> tuple[str, dict[str, Any]]:
        clauses = [f"{d}.retired_at IS NULL"]
        params: dict[str, Any] = {}
        if self.communes is not None:
            clauses.append(f"{d}.commune_id = ANY(%(s_communes)s)")
            params["s_communes"] = list(self.communes)
        if self.kinds is not None:
            clauses.append(f"{d}.kind = ANY(%(s_kinds)s)")
            params["s_kinds"] = list(self.kinds)
        for column, name in (("commune_id", "commune"), ("village_id", "village"), ("kind", "kind")):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{d}.{column} = %(f_{name})s")
                params[f"f_{name}"] = value
        if self.former_commune is not None:
            clauses.append(
                f"EXISTS (SELECT 1 FROM villages fv WHERE fv.commune_id = {d}.commune_id"  # noqa: S608 - an alias
                f" AND fv.id = {d}.village_id AND fv.former_commune = %(f_former_commune)s)"
            )
            params["f_former_commune"] = self.former_commune
        return " AND ".join(clauses), params

    def allows(self, commune_id: str, kind: str) -> bool:
        return (self.communes is None or commune_id in self.communes) and (
            self.kinds is None or kind in self.kinds
        )


# former_commune last: a field added to what partners already pull (its CSV gains a last column)
_DEVICES = (
    "SELECT d.id AS device_id, d.commune_id AS commune, d.village_id AS village, d.kind,"
    " d.name, d.lat, d.lon, d.parent_id AS parent, v.former_commune FROM devices d"
    " LEFT JOIN villages v ON v.commune_id = d.commune_id AND v.id = d.village_id"
)
_STATUS = (
    "SELECT d.id AS device_id, d.commune_id AS commune, d.village_id AS village, d.kind,"
    " coalesce(s.state, 'unknown') AS state, s.since, s.last_seen, coalesce(s.metrics, '{}'::jsonb) AS metrics,"
    " v.former_commune FROM devices d LEFT JOIN device_state s ON s.device_id = d.id"
    " LEFT JOIN villages v ON v.commune_id = d.commune_id AND v.id = d.village_id"
)
_CHANGES = (
    "SELECT c.seq, c.device_id, c.commune_id AS commune, c.village_id AS village, c.kind,"
    " c.state, c.prev_state, c.at, c.reason FROM state_changes c JOIN devices d ON d.id = c.device_id"
)
_ALERTS = (
    "SELECT a.id, a.rule, a.device_id, a.commune_id AS commune, a.village_id AS village,"
    " a.kind, a.severity, a.state, a.message, a.affected, a.since, a.opened_at, a.acked_at,"
    " a.resolved_at, a.updated_at FROM alerts a JOIN devices d ON d.id = a.device_id"
)


def _fetch(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()  # type: ignore[arg-type]


def device_in_scope(conn: psycopg.Connection, scope: Scope, device_id: str) -> None:
    """404 for an unknown or retired device, 403 for one outside the key's communes or kinds."""
    row = conn.execute(
        "SELECT commune_id, kind FROM devices WHERE id = %s AND retired_at IS NULL", (device_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no device {device_id}")
    if not scope.allows(row[0], row[1]):
        raise Forbidden(f"this key has no access to device {device_id}")


def _device_page(
    conn: psycopg.Connection, select: str, scope: Scope, limit: int, cursor: str | None
) -> list[dict[str, Any]]:
    """Up to limit+1 rows of `select` in device id order, after the cursor's device."""
    where, params = scope.where()
    if cursor:
        where += " AND d.id > %(after)s"
        (params["after"],) = paging.decode(cursor, [str])
    params["n"] = limit + 1
    return _fetch(conn, f"{select} WHERE {where} ORDER BY d.id LIMIT %(n)s", params)  # noqa: S608


def devices(
    conn: psycopg.Connection, scope: Scope, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    rows = _device_page(conn, _DEVICES, scope, limit, cursor)
    return paging.page(rows, limit, lambda r: [r["device_id"]])


def status(
    conn: psycopg.Connection, scope: Scope, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    rows = _device_page(conn, _STATUS, scope, limit, cursor)
    for r in rows:
        r["since"], r["last_seen"] = utc(r["since"]), utc(r["last_seen"])
    return paging.page(rows, limit, lambda r: [r["device_id"]])


def report_devices(conn: psycopg.Connection, scope: Scope) -> list[ReportDevice]:
    where, params = scope.where()
    sql = (
        "SELECT d.id, d.commune_id, d.village_id, d.kind, coalesce(s.state, 'unknown'), v.former_commune"  # noqa: S608
        " FROM devices d LEFT JOIN device_state s ON s.device_id = d.id"
        " LEFT JOIN villages v ON v.commune_id = d.commune_id AND v.id = d.village_id"
        f" WHERE {where} ORDER BY d.id"
    )
    return [ReportDevice(*r) for r in conn.execute(sql, params)]  # type: ignore[arg-type]


CHANGE_COLUMNS = ("seq", "device_id", "commune", "village", "kind", "state", "prev_state", "at", "reason")


def changes(
    conn: psycopg.Connection, scope: Scope, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str]:
    """State changes after the cursor in `seq` order; the next cursor is always where to resume.

    `seq` is handed out in commit order, so once the counter reads N every change up to N is
    visible: a page that is not full resumes from N, never skipping a change committed late.
    """
    after = paging.decode(cursor, [int])[0] if cursor else 0
    if after < 0:
        raise InvalidInput("cursor is malformed; use next_cursor from a previous page")
    head = conn.execute("SELECT value FROM counters WHERE name = 'changes'").fetchone()
    top = int(head[0]) if head else 0
    where, params = scope.where()
    params.update(after=after, top=top, n=limit)
    sql = f"{_CHANGES} WHERE c.seq > %(after)s AND c.seq <= %(top)s AND {where} ORDER BY c.seq LIMIT %(n)s"  # noqa: S608
    rows = _fetch(conn, sql, params)
    for r in rows:
        r["at"] = utc(r["at"])
    if len(rows) == limit:
        return rows, paging.encode([rows[-1]["seq"]])
    return rows, paging.encode([max(top, after)])


SAMPLE_COLUMNS = ("device_id", "ts", "received_at", "metrics")
_SAMPLES_SQL = """
SELECT s.device_id, {ts}, {received_at}, s.metrics::text
FROM status_samples s JOIN devices d ON d.id = s.device_id
WHERE {where} AND s.ts >= %(t0)s AND s.ts < %(t1)s AND (s.ts, s.device_id) > (%(ct)s, %(cd)s)
ORDER BY s.ts, s.device_id LIMIT %(n)s
"""
_ISO = "to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"


def _samples_query(
    conn: psycopg.Connection,
    scope: Scope,
    device_id: str | None,
    t0: datetime,
    t1: datetime,
    limit: int,
    cursor: str | None,
) -> tuple[str, dict[str, Any]]:
    """The page query. Time order: chunks are by time, so a page is one short ordered index scan;
    the scope is a join on devices (a list of thousands of ids would cost more to plan than to run)."""
    where, params = scope.where()
    if device_id is not None:
        device_in_scope(conn, scope, device_id)
        where += " AND s.device_id = %(device)s"
        params["device"] = device_id
    ct, cd = paging.decode(cursor, [datetime, str]) if cursor else (datetime(1, 1, 1, tzinfo=UTC), "")
    params.update(t0=t0, t1=t1, ct=ct, cd=cd, n=limit + 1)
    iso = {"ts": _ISO.format(c="s.ts"), "received_at": _ISO.format(c="s.received_at")}
    return _SAMPLES_SQL.format(where=where, **iso), params


def samples_json(
    conn: psycopg.Connection,
    scope: Scope,
    device_id: str | None,
    t0: datetime,
    t1: datetime,
    limit: int,
    cursor: str | None,
) -> tuple[bytes, int]:
    """Raw status samples as the JSON page body (built without parsing the stored metrics)."""
    sql, params = _samples_query(conn, scope, device_id, t0, t1, limit, cursor)
    rows = conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = paging.encode([rows[-1][1], rows[-1][0]])
    items = [
        {"device_id": r[0], "ts": r[1], "received_at": r[2], "metrics": orjson.Fragment(r[3])} for r in rows
    ]
    return orjson.dumps({"items": items, "next_cursor": nxt}), len(items)


def samples_csv(
    conn: psycopg.Connection,
    scope: Scope,
    device_id: str | None,
    t0: datetime,
    t1: datetime,
    limit: int,
    cursor: str | None,
) -> tuple[bytes, int, str | None]:
    """Raw status samples as CSV straight from PostgreSQL's COPY: (body, rows, next cursor)."""
    sql, params = _samples_query(conn, scope, device_id, t0, t1, limit, cursor)
    buf = io.BytesIO()
    buf.write(b"device_id,ts,received_at,metrics\r\n")
    with conn.cursor() as cur:
        # COPY takes no server-side parameters; psycopg binds these on the client.
        with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:  # type: ignore[arg-type]
            for chunk in copy:
                buf.write(chunk)
    body = buf.getvalue()
    lines = body.count(b"\n") - 1
    nxt = None
    if lines > limit:
        # Device ids and times never need CSV quoting, so the last row's key is its first two fields.
        cut = body.rstrip(b"\n").rfind(b"\n")
        body = body[: cut + 1]
        prev = body.rstrip(b"\n").rsplit(b"\n", 1)[-1].split(b",", 2)
        nxt = paging.encode([prev[1].decode(), prev[0].decode()])
        lines = limit
    return body, lines, nxt


ALERT_COLUMNS = (
    "id",
    "rule",
    "device_id",
    "commune",
    "village",
    "kind",
    "severity",
    "state",
    "message",
    "affected",
    "since",
    "opened_at",
    "acked_at",
    "resolved_at",
    "updated_at",
)


def alerts_select(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The SELECT of alerts as shared (`FROM alerts a JOIN devices d`) and its parameters: `affected`
    lists only the devices under an alert that the scope's key may see (a parent may serve other
    communes)."""
    reach, params = Scope(scope.communes, scope.kinds).where("ad")
    affected = (
        "ARRAY(SELECT x FROM unnest(a.affected) WITH ORDINALITY u(x, i) JOIN devices ad ON ad.id = x"  # noqa: S608
        f" WHERE {reach} ORDER BY i) AS affected"
    )
    return _ALERTS.replace("a.affected,", f"{affected},"), params


def alerts(
    conn: psycopg.Connection, scope: Scope, since: datetime | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Device alerts in scope opened, acknowledged or resolved at or after `since`, by id."""
    if conn.execute("SELECT to_regclass('alerts')").fetchone() == (None,):
        return [], None
    where, params = scope.where()
    select, reach_params = alerts_select(scope)
    params.update(reach_params)
    if since is not None:
        where += " AND (a.opened_at >= %(since)s OR a.acked_at >= %(since)s OR a.resolved_at >= %(since)s)"
        params["since"] = since
    if cursor:
        where += " AND a.id > %(after)s"
        (params["after"],) = paging.decode(cursor, [int])
    params["n"] = limit + 1
    rows = _fetch(conn, f"{select} WHERE {where} ORDER BY a.id LIMIT %(n)s", params)  # noqa: S608
    for r in rows:
        for c in ("since", "opened_at", "acked_at", "resolved_at", "updated_at"):
            r[c] = utc(r[c])
        r["affected"] = list(r["affected"] or [])
    return paging.page(rows, limit, lambda r: [r["id"]])


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    """Rows as CSV with a header; nested values as JSON, times as ISO 8601, formulas neutralised
    (services.csvcells; the raw-history COPY needs none: its cells are ids, times and JSON objects)."""
    out = io.StringIO()
    w = csvcells.writer(out)
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue().encode()


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return orjson.dumps(v).decode()
    return v


_ENTITY = (
    "SELECT d.id AS device_id, d.commune_id AS commune, d.village_id AS village, d.kind, d.name, d.lat, d.lon,"
    " d.parent_id AS parent, coalesce(s.state, 'unknown') AS state, s.since, s.last_seen,"
    " coalesce(s.metrics, '{}'::jsonb) AS metrics, s.metrics_ts, d.created_at,"
    " greatest(d.updated_at, s.updated_at) AS modified_at"
    " FROM devices d LEFT JOIN device_state s ON s.device_id = d.id"
)


def entity_rows(
    conn: psycopg.Connection,
    scope: Scope,
    *,
    device_id: str | None = None,
    device_ids: list[str] | None = None,
    state: str | None = None,
    name: str | None = None,
    not_equal: dict[str, str] | None = None,
    limit: int | None = 20,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Devices with their state for the NGSI-LD view, in id order, and how many match in all
    (`limit` None: every one)."""
    where, params = scope.where()
    if device_ids is not None:
        where += " AND d.id = ANY(%(e_ids)s)"
        params["e_ids"] = device_ids
    for column, value, key in (
        ("d.id", device_id, "e_id"),
        ("coalesce(s.state, 'unknown')", state, "e_state"),
        ("d.name", name, "e_name"),
    ):
        if value is not None:
            where += f" AND {column} = %({key})s"
            params[key] = value
    columns = {
        "deviceState": "coalesce(s.state, 'unknown')",
        "commune": "d.commune_id",
        "village": "d.village_id",
        "kind": "d.kind",
        "name": "d.name",
    }
    for i, (attr, value) in enumerate((not_equal or {}).items()):
        where += f" AND {columns[attr]} IS DISTINCT FROM %(ne{i})s"
        params[f"ne{i}"] = value
    params.update(n=limit, off=offset)
    rows = _fetch(conn, f"{_ENTITY} WHERE {where} ORDER BY d.id LIMIT %(n)s OFFSET %(off)s", params)  # noqa: S608
    if limit is None:
        for r in rows:
            for c in ("since", "last_seen", "metrics_ts", "created_at", "modified_at"):
                r[c] = utc(r[c])
        return rows, len(rows) + offset
    count_sql = f"SELECT count(*) FROM devices d LEFT JOIN device_state s ON s.device_id = d.id WHERE {where}"  # noqa: S608
    total = conn.execute(count_sql, params).fetchone()  # type: ignore[arg-type]
    for r in rows:
        for c in ("since", "last_seen", "metrics_ts", "created_at", "modified_at"):
            r[c] = utc(r[c])
    return rows, int(total[0]) if total else 0


def temporal(
    conn: psycopg.Connection, device_id: str, t0: datetime | None, t1: datetime | None, limit: int
) -> tuple[list[tuple[datetime, str]], list[tuple[datetime, dict[str, Any]]]]:
    """A device's state changes and status samples in [t0, t1), oldest first, at most `limit` of each."""
    cond, params = "device_id = %(d)s", {"d": device_id, "n": limit}
    if t0 is not None:
        cond += " AND {t} >= %(t0)s"
        params["t0"] = t0
    if t1 is not None:
        cond += " AND {t} < %(t1)s"
        params["t1"] = t1
    sql_c = f"SELECT at, state FROM state_changes WHERE {cond.format(t='at')} ORDER BY at, seq LIMIT %(n)s"  # noqa: S608
    sql_s = f"SELECT ts, metrics FROM status_samples WHERE {cond.format(t='ts')} ORDER BY ts LIMIT %(n)s"  # noqa: S608
    changes = [(utc(r[0]), r[1]) for r in conn.execute(sql_c, params)]  # type: ignore[arg-type]
    samples = [(utc(r[0]), r[1]) for r in conn.execute(sql_s, params)]  # type: ignore[arg-type]
    return changes, samples  # type: ignore[return-value]
