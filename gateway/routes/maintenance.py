"""Maintenance windows: devices inside one are in the `maintenance` state and raise no alerts."""

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AliasChoices, BaseModel, Field

from gateway import operator_schemas as schemas
from gateway import params
from gateway.deps import Admin, Conn, CurrentUser, check_commune
from services import audit, maintenance, paging
from services.auth import User

router = APIRouter(
    prefix="/api/v1/maintenance", tags=["maintenance"], dependencies=[Depends(params.known_only)]
)


class MaintenanceIn(BaseModel):
    device_id: str | None = None
    commune: str | None = Field(default=None, validation_alias=AliasChoices("commune", "commune_id"))
    village: str | None = Field(default=None, validation_alias=AliasChoices("village", "village_id"))
    kind: str | None = None
    starts_at: params.Time
    ends_at: params.Time
    reason: str = Field(default="", max_length=500)
    rrule: str | None = Field(
        default=None, max_length=500, description="RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=TU (local time)"
    )


def _tz(request: Request) -> str:
    return str(request.app.state.settings.tz)


def _audit(conn: Conn, request: Request, user: User, commune_id: str, params: dict[str, Any]) -> None:
    # In the change's transaction (committed with it), after the live-feed message: one more
    # insert under the feed counter's lock, for the window's id in the row.
    audit.record(
        conn,
        actor_kind="user",
        actor=user.username,
        action=f"{request.method} {request.url.path}",
        params=params,
        status=201 if request.method == "POST" else 204,
        communes=[commune_id],
    )


@router.get("", responses=schemas.ok(schemas.MaintenancePage))
def list_windows(
    conn: Conn,
    user: CurrentUser,
    request: Request,
    commune: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Maintenance windows (not deleted), oldest first; `active` tells whether one covers now."""
    check_commune(user, commune)
    windows, next_cursor = maintenance.list_windows(
        conn, communes=user.communes, commune_id=commune, limit=paging.check_limit(limit), cursor=cursor
    )
    now = datetime.now(UTC)
    return {"items": [maintenance.row(w, now, _tz(request)) for w in windows], "next_cursor": next_cursor}


@router.post("", status_code=201, responses=schemas.ok(schemas.MaintenanceRow, 201))
def create_window(body: MaintenanceIn, conn: Conn, user: Admin, request: Request) -> dict[str, Any]:
    """Admins: a window for one `device_id`, or for a `commune` narrowed by `village` and/or `kind`;
    `starts_at`..`ends_at` once, or repeated by `rrule` (each occurrence as long as the first; read on
    the commune's clock). Times without an offset are UTC. Announced on `/ws/live` as
    `{"type": "maintenance", "op": "created", "commune", "window"}` (`window`: a row as listed here)."""
    if body.commune:
        check_commune(user, body.commune)
    w = maintenance.create(
        conn,
        commune_id=body.commune,
        device_id=body.device_id,
        village_id=body.village,
        kind=body.kind,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
        rrule_text=body.rrule,
        actor=user.username,
        tz=_tz(request),
    )
    check_commune(user, w.commune_id)
    params = body.model_dump(mode="json", exclude_none=True)
    _audit(conn, request, user, w.commune_id, {"window_id": w.id, **params})
    return maintenance.row(w, datetime.now(UTC), _tz(request))


@router.delete("/{window_id}", status_code=204)
def delete_window(window_id: int, conn: Conn, user: Admin, request: Request) -> Response:
    """Admins: end and remove a window (kept in the database for the record). Announced on
    `/ws/live` as `{"type": "maintenance", "op": "deleted", "commune", "window"}`."""
    check_commune(user, maintenance.get(conn, window_id).commune_id)
    w = maintenance.delete(conn, window_id, user.username, _tz(request))
    _audit(conn, request, user, w.commune_id, {"window_id": w.id})
    return Response(status_code=204)
