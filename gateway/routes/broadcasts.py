"""Broadcasts to the villages' loudspeakers and e-boards (SPEC §9, Thông tư 39/2020/TT-BTTTT)."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from gateway import params
from gateway.deps import Conn, CurrentUser, Operator, check_commune
from services import audit, paging
from services.auth import User
from services.broadcasts import store, texts
from services.errors import Forbidden

router = APIRouter(
    prefix="/api/v1/broadcasts", tags=["broadcasts"], dependencies=[Depends(params.known_only)]
)


class Targets(BaseModel):
    communes: list[str] = Field(default=[], max_length=1000)
    villages: list[str] = Field(default=[], max_length=10000, description="`village` or `commune/village`")
    devices: list[str] = Field(default=[], max_length=100000)
    kinds: list[Literal["speaker", "eboard"]] = Field(default=["speaker", "eboard"], max_length=2)


class BroadcastIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    priority: Literal["normal", "priority", "emergency"] = "normal"
    media_id: str | None = Field(default=None, max_length=100)
    text: str | None = Field(default=None, max_length=2000, description="shown by e-boards (else the title)")
    targets: Targets
    starts_at: params.Time | None = None
    rrule: str | None = Field(default=None, max_length=500, description="RFC 5545 RRULE (local time)")
    expires_at: params.Time | None = Field(default=None, description="default starts_at + 1 h")
    risk_level: int | None = Field(default=None, ge=1, le=5, description="Quyết định 18/2021/QĐ-TTg")
    volume: int | None = Field(default=None, ge=0, le=100)
    channels: list[str] | None = Field(
        default=None,
        max_length=20,
        description="alert channels (names of IOC_ALERTS_FILE's `channels`: Zalo OA, Telegram…) it also"
        " goes out to as text; default: IOC_BROADCAST_EMERGENCY_CHANNELS for an emergency, none otherwise",
    )


def _tz(request: Request) -> str:
    return str(request.app.state.settings.tz)


def _audit(
    conn: Conn, request: Request, user: User, b: store.Broadcast, status: int, extra: dict[str, Any]
) -> None:
    audit.record(
        conn,
        actor_kind="user",
        actor=user.username,
        action=f"{request.method} {request.url.path}",
        params={"broadcast_id": b.id, "state": b.state, **extra},
        status=status,
        communes=b.communes,
    )


@router.post("", status_code=201)
def create(body: BroadcastIn, conn: Conn, user: Operator, request: Request) -> dict[str, Any]:
    """Operators and admins: a bulletin or warning to the devices of the listed communes, villages
    and devices (a union), of the listed kinds. `normal` and `priority` from an operator wait for an
    admin's approval; `emergency` goes at once. 400 names unknown targets; an expiry already past is
    400. `channels` (names of the alert channels) send it as text too; unknown ones are 400.
    / Tạo bản tin phát thanh hoặc thông báo bảng tin."""
    now = datetime.now(UTC)
    settings = request.app.state.settings
    known = texts.known_channels(settings.alerts_file)
    channels = body.channels
    if channels is None:
        # A default that names a channel the file lost must not stop an emergency.
        wanted = settings.broadcast_emergency_channels if body.priority == "emergency" else ""
        channels = [c for c in (x.strip() for x in wanted.split(",")) if c in known]
    b = store.create(
        conn,
        title=body.title,
        priority=body.priority,
        media_id=body.media_id,
        text=body.text,
        targets=body.targets.model_dump(),
        starts_at=body.starts_at,
        rrule=body.rrule,
        expires_at=body.expires_at,
        risk_level=body.risk_level,
        volume=body.volume,
        actor=user.username,
        role=user.role,
        scope=user.communes,
        now=now,
        tz=_tz(request),
        channels=channels,
        known_channels=known,
    )
    _audit(conn, request, user, b, 201, body.model_dump(mode="json", exclude_none=True))
    return store.detail(conn, b)


@router.get("")
def list_broadcasts(
    conn: Conn,
    user: CurrentUser,
    state: str | None = None,
    priority: str | None = None,
    commune: str | None = None,
    from_: Annotated[params.Time | None, Query(alias="from")] = None,
    to: params.Time | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    counts: bool = False,
) -> dict[str, Any]:
    """Broadcasts of your communes, oldest first, filtered by `state`, `priority`, `commune`.
    `counts=true` adds to each the share log's `villages_targeted`, `villages_reached`,
    `devices_targeted` and `devices_done` (of its latest occurrence)."""
    check_commune(user, commune)
    bs, nxt = store.list_page(
        conn,
        scope=user.communes,
        limit=paging.check_limit(limit),
        cursor=cursor,
        state=state,
        priority=priority,
        commune=commune,
        since=from_,
        until=to,
    )
    items = [store.row(b) for b in bs]
    if counts:
        keys = ("villages_targeted", "villages_reached", "devices_targeted", "devices_done")
        for item, shared in zip(items, store.share_rows(conn, bs), strict=True):
            item.update({k: shared[k] for k in keys})
    return {"items": items, "next_cursor": nxt}


@router.get("/channels")
def channels(user: CurrentUser, request: Request) -> dict[str, list[str]]:
    """The alert channels a broadcast may also go out to as text (names of IOC_ALERTS_FILE's
    `channels`, never their URLs), and those an emergency takes by default."""
    settings = request.app.state.settings
    known = texts.known_channels(settings.alerts_file)
    wanted = (x.strip() for x in settings.broadcast_emergency_channels.split(","))
    return {"channels": known, "emergency": [c for c in wanted if c in known]}


@router.get("/{broadcast_id}")
def get(broadcast_id: int, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    """A broadcast with its `deliveries` (one per device) and `coverage` (per village: reached or
    not, and why not) and `villages_not_reached`."""
    return store.detail(conn, store.get(conn, broadcast_id, user.communes))


@router.post("/{broadcast_id}/approve")
def approve(broadcast_id: int, conn: Conn, user: CurrentUser, request: Request) -> dict[str, Any]:
    """Admins: let a broadcast awaiting approval go. 403 for anyone else, 409 when not awaiting."""
    if user.role != "admin":
        raise Forbidden(f"only an admin approves a broadcast; you are {user.role}")
    b = store.approve(conn, broadcast_id, user.username, user.communes, datetime.now(UTC))
    _audit(conn, request, user, b, 200, {})
    return store.detail(conn, b)


@router.post("/{broadcast_id}/cancel")
def cancel(broadcast_id: int, conn: Conn, user: Operator, request: Request) -> dict[str, Any]:
    """The creator or an admin: end a broadcast; devices playing it are sent `stop`."""
    b = store.cancel(conn, broadcast_id, user.username, user.role, user.communes, datetime.now(UTC))
    _audit(conn, request, user, b, 200, {})
    return store.detail(conn, b)
