"""Alerts for technicians: list, acknowledge, resolve, assign; MTTA/MTTR; rule settings."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from gateway import operator_schemas as schemas
from gateway import params
from gateway.deps import Admin, Conn, CurrentUser, Technician, check_commune
from services import audit, paging
from services.alerts import config as alert_config
from services.alerts import rule_schema, store, unscheduled
from services.auth import User
from services.errors import ConfigError, Forbidden, InvalidInput, NotFound

router = APIRouter(tags=["alerts"], dependencies=[Depends(params.known_only)])


class AckIn(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


class AssignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)


def _scoped(user: User, alert: dict[str, Any]) -> dict[str, Any]:
    if (
        alert["commune_id"] is not None
        and user.communes is not None
        and alert["commune_id"] not in user.communes
    ):
        raise NotFound(f"no alert {alert['id']}")
    return alert


def _audit(conn: Conn, request: Request, user: User, alert: dict[str, Any], params: dict[str, Any]) -> None:
    # Written first in the change's transaction: a refused change (409, 400) leaves no row, and
    # the live-feed message stays the last statement.
    audit.record(
        conn,
        actor_kind="user",
        actor=user.username,
        action=f"{request.method} {request.url.path}",
        params={"alert_id": alert["id"], **params},
        status=200,
        communes=None if alert["commune_id"] is None else [alert["commune_id"]],
    )


@router.get("/api/v1/alerts", responses=schemas.ok(schemas.AlertPage))
def list_alerts(
    conn: Conn,
    user: CurrentUser,
    state: Annotated[
        str | None, Query(description="open, acked or resolved (comma-separated for several)")
    ] = None,
    commune: str | None = None,
    village: str | None = None,
    kind: str | None = None,
    rule: str | None = None,
    device_id: str | None = None,
    severity: str | None = None,
    assignee: str | None = None,
    since: Annotated[params.Time | None, Query(description="opened at or after")] = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Alerts, newest first: `id, rule, device_id, commune, village, kind, severity, state, message, since,
    opened_at, acked_at, acked_by, comment, resolved_at, resolved_by, assignee, affected` (`affected`: the
    devices down below this one)."""
    check_commune(user, commune)
    filters = {
        "state": [s.strip() for s in state.split(",") if s.strip()] if state else None,
        "commune": commune,
        "village": village,
        "kind": kind,
        "rule": rule,
        "device_id": device_id,
        "severity": severity,
        "assignee": assignee,
        "since": since,
    }
    items, next_cursor = store.list_alerts(
        conn, communes=user.communes, filters=filters, limit=paging.check_limit(limit), cursor=cursor
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/api/v1/alerts/stats")
def alert_stats(
    conn: Conn,
    user: CurrentUser,
    from_: Annotated[params.Time | None, Query(alias="from")] = None,
    to: params.Time | None = None,
    group_by: Annotated[
        str, Query(description="village, kind, rule, commune or village,kind")
    ] = "village,kind",
) -> dict[str, Any]:
    """Alert counts, mean time to acknowledge (`mtta_s`) and to resolve (`mttr_s`), by village and kind."""
    items = store.stats(conn, communes=user.communes, start=from_, end=to, group_by=group_by)
    return {"items": items, "next_cursor": None}


@router.get("/api/v1/alerts/{alert_id}", responses=schemas.ok(schemas.AlertDetail))
def get_alert(alert_id: int, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    """One alert with its full history (opened, notified, acknowledged, assigned, escalated, resolved)."""
    alert = _scoped(user, store.get(conn, alert_id))
    return {**store.to_row(alert), "history": store.alert_history(conn, alert_id)}


@router.post("/api/v1/alerts/{alert_id}/ack", responses=schemas.ok(schemas.AlertRow))
def ack_alert(
    alert_id: int,
    conn: Conn,
    user: Technician,
    request: Request,
    body: Annotated[AckIn | None, Body()] = None,
) -> dict[str, Any]:
    """Acknowledge (optional `{"comment"}`): repeats and escalation stop; who and when are recorded."""
    alert = _scoped(user, store.get(conn, alert_id))
    conn.commit()  # the change below is its own transaction, with the live-feed message last
    comment = body.comment if body else None
    with conn.transaction():
        _audit(conn, request, user, alert, {"comment": comment})
        return store.ack(conn, alert_id, user.username, comment)


@router.post("/api/v1/alerts/{alert_id}/resolve", responses=schemas.ok(schemas.AlertRow))
def resolve_alert(
    alert_id: int,
    conn: Conn,
    user: Technician,
    request: Request,
    body: Annotated[AckIn | None, Body()] = None,
) -> dict[str, Any]:
    """Resolve by hand; the alert comes back only if its condition clears and returns."""
    alert = _scoped(user, store.get(conn, alert_id))
    conn.commit()
    comment = body.comment if body else None
    with conn.transaction():
        _audit(conn, request, user, alert, {"comment": comment})
        return store.resolve(conn, alert_id, user.username, comment)


@router.post("/api/v1/alerts/{alert_id}/assign", responses=schemas.ok(schemas.AlertRow))
def assign_alert(
    alert_id: int, body: AssignIn, conn: Conn, user: Technician, request: Request
) -> dict[str, Any]:
    """Assign to a technician: `{"username"}`."""
    alert = _scoped(user, store.get(conn, alert_id))
    conn.commit()
    with conn.transaction():
        _audit(conn, request, user, alert, {"username": body.username})
        return store.assign(conn, alert_id, user.username, body.username)


def _file_doc(request: Request) -> dict[str, Any]:
    try:
        return alert_config.load_file(request.app.state.settings.alerts_file)
    except InvalidInput as err:
        raise ConfigError(f"IOC_ALERTS_FILE: {err.message}") from err


def _env_rules(request: Request) -> dict[str, dict[str, Any]]:
    """Rule settings of the environment (IOC_BROADCAST_ALLOWED_SOURCES), as the evaluator takes them."""
    return unscheduled.rule_defaults(request.app.state.settings.broadcast_allowed_sources)


def _rules_view(conn: Conn, request: Request) -> dict[str, Any]:
    doc = _file_doc(request)
    row = conn.execute("SELECT rules, version, updated_at, updated_by FROM alert_config").fetchone()
    api_rules, version, updated_at, updated_by = row if row else ({}, 0, None, None)
    try:
        cfg = alert_config.build(doc, api_rules, _env_rules(request))
    except InvalidInput as err:
        raise ConfigError(f"alert configuration: {err.message}") from err
    hours = cfg.quiet_hours
    return {
        "rules": alert_config.effective_rules(cfg),
        "builtin": list(rule_schema.BUILTIN),
        "edited": api_rules,
        "version": version,
        "updated_at": updated_at,
        "updated_by": updated_by,
        "repeat_s": cfg.repeat_s,
        "quiet_hours": f"{hours[0]:%H:%M}-{hours[1]:%H:%M}" if hours else None,
        "channels": sorted(cfg.channels),
        "routes": [
            {
                "match": {k: sorted(v) for k, v in r.match.items()},
                "channels": list(r.channels),
                "escalate": [{"after_s": e.after_s, "channels": list(e.channels)} for e in r.escalate],
                "stop": r.stop,
            }
            for r in cfg.routes
        ],
    }


@router.get("/api/v1/alert-rules")
def get_rules(conn: Conn, user: CurrentUser, request: Request) -> dict[str, Any]:
    """Every rule with the settings in force (built-in defaults, then IOC_ALERTS_FILE, then edits saved
    here), the channel names and the routes. Channel URLs are secrets and never shown."""
    return _rules_view(conn, request)


@router.put("/api/v1/alert-rules")
def put_rules(
    conn: Conn,
    user: Admin,
    request: Request,
    body: Annotated[
        dict[str, Any],
        Body(
            examples=[
                {"rules": {"offline": {"for_s": 300}, "gateway_cpu": {"metric": "cpu_pct", "threshold": 90}}}
            ]
        ),
    ],
) -> dict[str, Any]:
    """Admins: replace the rule edits (`{"rules": {name: settings}}`; a name that is not built in with
    `metric` and `threshold` is a new threshold rule). Edits override IOC_ALERTS_FILE rule by rule and
    reach the evaluator within a second. The rules are deployment-wide: only an admin of every
    commune may change them (403 for an admin limited to some communes)."""
    if user.communes is not None:
        raise Forbidden("alert rules apply to every commune; only an admin of every commune may change them")
    rules = body["rules"] if isinstance(body.get("rules"), dict) else body
    errors = rule_schema.check_rules(rules)
    if not errors:
        try:
            alert_config.build(_file_doc(request), rules, _env_rules(request))
        except InvalidInput as err:
            errors = list(err.detail) if isinstance(err.detail, list) else [err.message]
    if errors:
        raise RequestValidationError(
            [{"loc": ("body", *e.split(":")[0].split(".")), "msg": e, "type": "value_error"} for e in errors]
        )
    row = conn.execute(
        "UPDATE alert_config SET rules = %s, version = version + 1, updated_at = now(), updated_by = %s"
        " RETURNING version",
        (Jsonb(rules), user.username),
    ).fetchone()
    audit.record(
        conn,
        actor_kind="user",
        actor=user.username,
        action=f"{request.method} {request.url.path}",
        params={"rules": rules, "version": row[0] if row else None},
        status=200,
    )
    return _rules_view(conn, request)
