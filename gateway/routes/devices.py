"""Operators' view of the devices: registry rows, current state, bucketed history, events."""

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway import params
from gateway.deps import Conn, CurrentUser, check_commune
from services import history, status, timerange
from services.auth import User
from services.status import DeviceFilter

router = APIRouter(prefix="/api/v1", tags=["devices"], dependencies=[Depends(params.known_only)])
T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="give as `cursor` for the next page; null on the last page")


class OnvifOut(BaseModel):
    host: str
    port: int | None
    username: str | None
    path: str | None
    poll_s: int | None


class DeviceOut(BaseModel):
    id: str
    commune: str
    village: str | None
    kind: str
    former_commune: str | None = Field(
        default=None, description="the commune its village belonged to before the 2025 reform (a name)"
    )
    name: str | None
    lat: float | None
    lon: float | None
    parent: str | None
    heartbeat_s: int
    onvif: OnvifOut | None = Field(description="how the camera is polled; the password is never shown")
    source: dict[str, Any] | None = Field(
        default=None,
        description="how the device is heard when it does not speak the IOC's MQTT (SPEC §8): kind (mqtt, snmp,"
        " ping, tcp, http) and host, profile or broker; communities, keys and passwords are never shown",
    )
    state: str
    since: datetime | None
    last_seen: datetime | None = Field(description="receive time of the last status")


class StatusOut(BaseModel):
    device_id: str
    commune: str
    village: str | None
    kind: str
    state: str = Field(description="online, offline, unknown, maintenance or auth_failed")
    since: datetime | None
    last_seen: datetime | None
    metrics: dict[str, Any] = Field(description="fields of the last status")
    reason: str | None = Field(description="why the device is in this state")
    former_commune: str | None = Field(
        default=None, description="the commune its village belonged to before the 2025 reform (a name)"
    )


class MetricStats(BaseModel):
    min: float
    avg: float
    max: float


class BucketOut(BaseModel):
    bucket: datetime = Field(description="start of the bucket")
    n: int = Field(description="status samples stored in the bucket")
    online_share: float | None = Field(
        description="share of the bucket's time online, 0..1; null in the future"
    )
    known_share: float | None = Field(
        default=None,
        description="share of the bucket's time in which the state was known (the device had been heard "
        "and was not `unknown`), 0..1; 0 = no data, not offline; null in the future",
    )
    metrics: dict[str, MetricStats] = Field(description="min/avg/max of each numeric status field")


class HistoryOut(Page[BucketOut]):
    model_config = ConfigDict(populate_by_name=True)

    device_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    bucket: str


class EventOut(BaseModel):
    device_id: str
    seq: int
    ts: datetime
    received_at: datetime
    type: str
    severity: str
    message: str | None
    fields: dict[str, Any]


Commune = Annotated[str | None, Query(description="commune id")]
Village = Annotated[str | None, Query(description="village id")]
Kind = Annotated[str | None, Query(description="camera, speaker, eboard, wifi or gateway")]
StateQ = Annotated[str | None, Query(description="online, offline, unknown, maintenance or auth_failed")]
FormerCommune = Annotated[
    str | None,
    Query(max_length=200, description="villages of this former commune (its name, before the 2025 reform)"),
]
Limit = Annotated[int | None, Query(description="rows per page, 1..10000 (default 1000)")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
From = Annotated[str | None, Query(alias="from", description="ISO 8601 time; no offset means UTC")]
To = Annotated[str | None, Query(description="ISO 8601 time; no offset means UTC")]


def _filter(
    user: User,
    commune: str | None,
    village: str | None,
    kind: str | None,
    state: str | None,
    former_commune: str | None = None,
) -> DeviceFilter:
    check_commune(user, commune)
    f = DeviceFilter(commune, village, kind, state, user.communes, former_commune)
    f.check()
    return f


def device_filter(
    user: CurrentUser,
    commune: Commune = None,
    village: Village = None,
    kind: Kind = None,
    state: StateQ = None,
    former_commune: FormerCommune = None,
) -> DeviceFilter:
    """The list filters of /devices and /status, checked against the user's communes."""
    return _filter(user, commune, village, kind, state, former_commune)


Filters = Annotated[DeviceFilter, Depends(device_filter)]


@router.get("/devices", response_model=Page[DeviceOut])
def list_devices(conn: Conn, f: Filters, limit: Limit = None, cursor: Cursor = None) -> dict[str, Any]:
    """Registered (not retired) devices in id order, with their current state; paged."""
    items, nxt = status.list_devices(conn, f, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/devices/{device_id}", response_model=DeviceOut)
def get_device(device_id: str, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    """One device; 404 when unknown or retired."""
    return status.get_device(conn, device_id, user.communes)


@router.get("/status", response_model=Page[StatusOut])
def list_status(conn: Conn, f: Filters, limit: Limit = None, cursor: Cursor = None) -> dict[str, Any]:
    """Current state of every active device, one row each, in device id order; paged."""
    items, nxt = status.list_status(conn, f, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/devices/{device_id}/history", response_model=HistoryOut)
def device_history(
    device_id: str,
    conn: Conn,
    user: CurrentUser,
    from_: From = None,
    to: To = None,
    bucket: Annotated[str | None, Query(description="width like 30s, 5m, 1h, 1d")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """One row per bucket of [from, to): samples stored, share of time online, min/avg/max of each
    numeric metric. Defaults: to = now, from = to - 24 h, a bucket giving at most ~300 rows.
    Buckets are aligned (1h on the hour, 1d at UTC midnight); empty ones are included."""
    w = history.window(from_, to, bucket)
    # Retired devices keep their history.
    status.get_device(conn, device_id, user.communes, include_retired=True)
    items, nxt = history.history(conn, device_id, w, limit=limit, cursor=cursor)
    return {
        "device_id": device_id,
        "from": w.start,
        "to": w.end,
        "bucket": w.label,
        "items": items,
        "next_cursor": nxt,
    }


@router.get("/devices/{device_id}/events", response_model=Page[EventOut])
def device_events(
    device_id: str,
    conn: Conn,
    user: CurrentUser,
    from_: From = None,
    to: To = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The device's events with from <= ts < to (both optional), newest first; paged."""
    start = timerange.parse_time("from", from_) if from_ else None
    end = timerange.parse_time("to", to) if to else None
    status.get_device(conn, device_id, user.communes, include_retired=True)
    items, nxt = history.events(conn, device_id, start, end, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt}
