"""Data sharing with the province and neighbouring communes (`/api/share/v1`), with an API key.

Every call is audited (key, route, parameters, rows, status, time), counted against the key's
rate across all gateways, and limited to the key's communes and kinds. Lists are pages
`{"items", "next_cursor"}`; `Accept: text/csv` or `format=csv` gives CSV of the same rows with
the next cursor in the `X-Next-Cursor` header.
"""

import hashlib
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import anyio
import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway import problems
from gateway.deps import POOL_RESERVE, Conn, bearer
from gateway.errors import error_response
from gateway.negotiation import choose
from gateway.security import ASGIApp, Message, Receive, Send
from gateway.security import Scope as AsgiScope
from gateway.share_schemas import (
    ERRORS,
    NOT_MODIFIED,
    AlertItem,
    AlertsQuery,
    AvailabilityItem,
    AvailabilityQuery,
    BucketItem,
    ChangesPage,
    DeviceItem,
    HistoryQuery,
    ListQuery,
    Page,
    SampleItem,
    StatusItem,
)
from services import audit, history, keys, paging, reports, share, timerange
from services.broadcasts import store as broadcast_store
from services.errors import InvalidInput, Unauthorized
from services.keys import ApiKey
from services.share import Scope

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/share/v1", tags=["share"], responses=ERRORS)
AUDITED = ("/api/share/", "/ngsi-ld/")
UNAUDITED = "/ngsi-ld/v1/jsonldContexts/"  # the public @context document
MAX_RANGE = timedelta(days=366)
DEFAULT_SPAN = timedelta(hours=24)


def share_key(request: Request, conn: Conn) -> ApiKey:
    """The caller's API key: 401 without a valid one, 429 over its rate (counted even if the call fails)."""
    secret = bearer(request)
    if not secret:
        raise Unauthorized("give an API key: Authorization: Bearer <key> (ioc keys create)")
    key = keys.authenticate(conn, secret)
    request.state.share_key = key
    try:
        keys.hit(conn, key)
    finally:
        conn.commit()
    return key


ShareKey = Annotated[ApiKey, Depends(share_key)]


def wants_csv(request: Request, fmt: str | None) -> bool:
    """`format=csv`, or an Accept that prefers text/csv to JSON by its q-values (JSON on a tie, and
    for an Accept that admits neither)."""
    if fmt is not None:
        return fmt == "csv"
    return choose(request.headers.get("accept", ""), ("application/json", "text/csv")) == "text/csv"


def reply(
    request: Request,
    fmt: str | None,
    items: Sequence[dict[str, Any]],
    next_cursor: str | None,
    columns: Sequence[str],
    *,
    etag: bool = False,
) -> Response:
    """A page as JSON or CSV; with `etag`, a strong ETag and 304 on a matching If-None-Match."""
    request.state.audit_rows = len(items)
    headers = {}
    if wants_csv(request, fmt):
        body, media = share.to_csv(items, columns), "text/csv; charset=utf-8"
        if next_cursor is not None:
            headers["X-Next-Cursor"] = next_cursor
    else:
        body, media = orjson.dumps({"items": items, "next_cursor": next_cursor}), "application/json"
    if etag:
        tag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        headers["ETag"] = tag
        headers["Cache-Control"] = "no-cache"
        if tag in [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]:
            request.state.audit_rows = 0
            return Response(status_code=304, headers=headers)
    return Response(body, media_type=media, headers=headers)


def time_range(from_: str | None, to: str | None, now: datetime) -> tuple[datetime, datetime]:
    """`from`/`to` of a share list or report: bounded times (services.timerange), at most MAX_RANGE apart."""
    return timerange.time_range(from_, to, now, default_span=DEFAULT_SPAN, max_span=MAX_RANGE)


_DEVICE_COLUMNS = list(DeviceItem.model_fields)
_STATUS_COLUMNS = list(StatusItem.model_fields)
_BUCKET_COLUMNS = list(BucketItem.model_fields)
_AVAIL_COLUMNS = list(AvailabilityItem.model_fields)


@router.get(
    "/devices",
    response_model=Page[DeviceItem],
    responses={200: {"content": {"text/csv": {}}}, **NOT_MODIFIED},
)
def devices(request: Request, conn: Conn, key: ShareKey, q: Annotated[ListQuery, Query()]) -> Response:
    """Registered devices in the key's communes and kinds, by id (retired devices are not shared).
    / Danh sách thiết bị trong phạm vi của khóa. Supports ETag / If-None-Match."""
    items, nxt = share.devices(
        conn, Scope.of(key, q.commune, q.village, q.kind, q.former_commune), q.limit, q.cursor
    )
    return reply(request, q.format, items, nxt, _DEVICE_COLUMNS, etag=True)


@router.get(
    "/status", response_model=Page[StatusItem], responses={200: {"content": {"text/csv": {}}}, **NOT_MODIFIED}
)
def status(request: Request, conn: Conn, key: ShareKey, q: Annotated[ListQuery, Query()]) -> Response:
    """Current state of each device, by id. / Trạng thái hiện tại của từng thiết bị.
    Supports ETag / If-None-Match (304 when nothing changed)."""
    items, nxt = share.status(
        conn, Scope.of(key, q.commune, q.village, q.kind, q.former_commune), q.limit, q.cursor
    )
    return reply(request, q.format, items, nxt, _STATUS_COLUMNS, etag=True)


@router.get(
    "/history",
    response_model=Page[BucketItem] | Page[SampleItem],
    responses={200: {"content": {"text/csv": {}}}},
)
def history_(request: Request, conn: Conn, key: ShareKey, q: Annotated[HistoryQuery, Query()]) -> Response:
    """History over [from, to). With `bucket` (and `device`): one row per bucket with samples stored,
    share of time online and min/avg/max of each numeric field. Without `bucket`: the raw status
    samples of `device`, or of every device in scope, ordered by time then device — page through
    with `cursor` to export everything (CSV is produced by the database and is fastest).
    / Lịch sử: theo khoảng (bucket) hoặc dữ liệu thô để xuất toàn bộ."""
    scope = Scope.of(key, q.commune, q.village, q.kind, q.former_commune)
    now = datetime.now(UTC)
    if q.bucket is not None:
        if q.device is None:
            raise InvalidInput(
                "bucket needs device=; without bucket, history is the raw samples of every device"
            )
        w = history.window(q.from_, q.to, q.bucket, now)
        if w.end - w.start > MAX_RANGE:
            raise InvalidInput(f"from and to are more than {MAX_RANGE.days} days apart")
        share.device_in_scope(conn, scope, q.device)
        items, nxt = history.history(conn, q.device, w, limit=q.limit, cursor=q.cursor)
        for it in items:
            it["device_id"] = q.device
        return reply(request, q.format, items, nxt, _BUCKET_COLUMNS)
    t0, t1 = time_range(q.from_, q.to, now)
    if wants_csv(request, q.format):
        body, n, nxt = share.samples_csv(conn, scope, q.device, t0, t1, q.limit, q.cursor)
        request.state.audit_rows = n
        return Response(
            body, media_type="text/csv; charset=utf-8", headers={"X-Next-Cursor": nxt} if nxt else {}
        )
    body, n = share.samples_json(conn, scope, q.device, t0, t1, q.limit, q.cursor)
    request.state.audit_rows = n
    return Response(body, media_type="application/json")


@router.get(
    "/availability", response_model=Page[AvailabilityItem], responses={200: {"content": {"text/csv": {}}}}
)
def availability(
    request: Request, conn: Conn, key: ShareKey, q: Annotated[AvailabilityQuery, Query()]
) -> Response:
    """Availability over [from, to) per device, village or (commune, kind): online / (online + offline)
    time, auth_failed counting as offline, maintenance and unknown time left out; with the devices of
    each group and how many are online now. / Tỉ lệ hoạt động theo thiết bị, ấp/xóm hoặc loại."""
    now = datetime.now(UTC)
    t0, t1 = time_range(q.from_, q.to, now)
    scope = Scope.of(key, q.commune, q.village, q.kind, q.former_commune)
    rows = reports.availability(conn, share.report_devices(conn, scope), t0, t1, q.group_by, now)
    items, nxt = page_of(rows, q.limit, q.cursor, q.group_by)
    return reply(request, q.format, items, nxt, _AVAIL_COLUMNS)


def page_of(
    rows: list[dict[str, Any]], limit: int, cursor: str | None, group_by: str
) -> tuple[list[dict[str, Any]], str | None]:
    """Keyset paging of a computed, sorted report."""

    def sort_key(r: dict[str, Any]) -> list[str]:
        second = {
            "device": r["device_id"],
            "village": r["village"],
            "kind": r["kind"],
            "former_commune": r.get("former_commune"),
        }[group_by]
        return [r["commune"], second or ""]

    if cursor:
        after = paging.decode(cursor, [str, str])
        rows = [r for r in rows if sort_key(r) > after]
    return paging.page(rows[: limit + 1], limit, sort_key)


@router.get("/alerts", response_model=Page[AlertItem], responses={200: {"content": {"text/csv": {}}}})
def alerts(request: Request, conn: Conn, key: ShareKey, q: Annotated[AlertsQuery, Query()]) -> Response:
    """Alerts of devices in scope, by id; with `since`, those opened, acknowledged or resolved since then.
    / Cảnh báo của các thiết bị trong phạm vi."""
    since = history.parse_time("since", q.since) if q.since else None
    items, nxt = share.alerts(
        conn, Scope.of(key, q.commune, q.village, q.kind, q.former_commune), since, q.limit, q.cursor
    )
    return reply(request, q.format, items, nxt, share.ALERT_COLUMNS)


@router.get("/changes", response_model=ChangesPage, responses={200: {"content": {"text/csv": {}}}})
def changes(request: Request, conn: Conn, key: ShareKey, q: Annotated[ListQuery, Query()]) -> Response:
    """Every state change in order, for incremental sync: start without `cursor`, then always pass
    the `next_cursor` you got (it is never null, also on an empty page) — no change is skipped or
    repeated, even one committed late. / Nhật ký thay đổi trạng thái để đồng bộ dần."""
    items, nxt = share.changes(
        conn, Scope.of(key, q.commune, q.village, q.kind, q.former_commune), q.limit, q.cursor
    )
    return reply(request, q.format, items, nxt, share.CHANGE_COLUMNS)


class BroadcastsQuery(ListQuery):
    from_: str | None = Field(
        None, alias="from", max_length=64, description="broadcasts created at or after; default to − 24 h"
    )
    to: str | None = Field(None, max_length=64, description="broadcasts created before; default now")


class BroadcastLogItem(BaseModel):
    id: int
    title: str
    priority: Literal["normal", "priority", "emergency"]
    risk_level: int | None
    created_at: datetime
    created_by: str
    approved_by: str | None
    starts_at: datetime
    state: str
    villages_targeted: int
    villages_reached: int
    devices_targeted: int
    devices_done: int
    channels_targeted: int = Field(description="text channels (Zalo OA, Telegram…) it was also sent to")
    channels_sent: int


# The CSV has exactly SPEC §9's columns, in its order, so a partner's parser that reads them by
# position or compares the header keeps working; the JSON items add the text channels' counts.
BROADCAST_CSV_COLUMNS = [c for c in BroadcastLogItem.model_fields if not c.startswith("channels_")]


@router.get(
    "/broadcasts", response_model=Page[BroadcastLogItem], responses={200: {"content": {"text/csv": {}}}}
)
def broadcasts_log(
    request: Request, conn: Conn, key: ShareKey, q: Annotated[BroadcastsQuery, Query()]
) -> Response:
    """The broadcast log (nhật ký phát, SPEC §9) of broadcasts created in [from, to) that concern the
    key's communes (`commune` narrows it; `village`, `kind` and `former_commune` are not used here), oldest first:
    who sent and approved each, and how many villages and devices it reached.
    / Nhật ký phát thanh: ai phát, ai duyệt, bao nhiêu ấp/xóm và thiết bị đã nhận."""
    Scope.of(key, q.commune, q.village, q.kind, q.former_commune)
    t0, t1 = time_range(q.from_, q.to, datetime.now(UTC))
    bs, nxt = broadcast_store.list_page(
        conn, scope=key.communes, limit=q.limit, cursor=q.cursor, commune=q.commune, since=t0, until=t1
    )
    counted = [q.commune] if q.commune else (list(key.communes) if key.communes is not None else None)
    rows = broadcast_store.share_rows(conn, bs, counted)
    return reply(request, q.format, rows, nxt, BROADCAST_CSV_COLUMNS)


class AuditMiddleware:
    """Writes one audit row per share or NGSI-LD call, including refused and failed calls, before
    the first byte of the answer leaves: a call whose row cannot be written (database gone, pool
    exhausted) is answered 503 with no data, so nothing is ever read unaudited, and an audit read
    right after a call sees it."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._threads: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(AUDITED)
            or scope["path"].startswith(UNAUDITED)
        ):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        written = refused = False

        async def audited_send(message: Message) -> None:
            nonlocal written, refused
            if refused:
                return  # the route's answer is dropped: its audit row could not be written
            if message["type"] == "http.response.start" and not written:
                written = True
                if not await self._write(scope, state, message["status"]):
                    refused = True
                    await self._unavailable(scope, receive, send)
                    return
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        finally:
            if not written:
                # The route raised (answered 500 further out) or the client went away first.
                with anyio.CancelScope(shield=True):
                    await self._write(scope, state, 500)

    async def _write(self, scope: AsgiScope, state: dict[str, Any], status: int) -> bool:
        key: ApiKey | None = state.get("share_key")
        params = query_params(scope.get("query_string", b""))
        # what a route adds of the call (an NGSI-LD subscription's id and the body it was given)
        params.update(state.get("audit_params") or {})

        def write() -> bool:
            try:
                with self.fastapi_app.state.pool.connection() as conn:
                    audit.record(
                        conn,
                        actor_kind="key",
                        actor=key.name if key else "(no valid key)",
                        action=f"{scope['method']} {scope['path']}",
                        params=params,
                        status=status,
                        rows=state.get("audit_rows"),
                        key_id=key.id if key else None,
                        communes=row_communes(key, params, scope["path"]),
                    )
                return True
            except Exception:  # noqa: BLE001 - the caller answers 503 instead of the data
                log.exception("could not write the audit row of %s; answering 503", scope["path"])
                return False

        # Writers wait for a connection (at most the pool's timeout) in threads of their own, as
        # many as the pool keeps in reserve: under load they queue on the event loop and never
        # take the threads the routes holding connections need to finish and give them back.
        if self._threads is None:
            self._threads = anyio.CapacityLimiter(POOL_RESERVE)
        return await anyio.to_thread.run_sync(write, limiter=self._threads)

    @staticmethod
    async def _unavailable(scope: AsgiScope, receive: Receive, send: Send) -> None:
        message = "the audit log cannot be written just now, so no data is shared; try again shortly"
        headers = {"Retry-After": "5"}
        if problems.applies(scope["path"]):
            answer = problems.response(503, message, headers)
        else:
            answer = error_response(503, "unavailable", message, headers)
        await answer(scope, receive, send)


def query_params(query_string: bytes) -> dict[str, Any]:
    """A call's query parameters as audited: a repeated name gives a list of its values."""
    params: dict[str, Any] = {}
    for k, v in parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True):
        old = params.get(k)
        params[k] = v if old is None else [*(old if isinstance(old, list) else [old]), v]
    return params


_URN_COMMUNE = re.compile(r"urn:ngsi-ld:Device:([^:,/]+):")


def row_communes(key: ApiKey | None, params: dict[str, Any], path: str) -> list[str] | None:
    """The communes an audit row concerns: those the call asked for (`commune=`, NGSI-LD ids) when
    the key reaches them, else the key's own plus those asked for (a refused try is shown to both);
    None (deployment-wide) for a key of every commune asking for all, or a call without a valid key."""
    if key is None:
        return None
    asked = set(_URN_COMMUNE.findall(path))
    for name in ("commune", "id"):
        values = params.get(name, [])
        for v in values if isinstance(values, list) else [values]:
            if name == "commune":
                asked.add(v)
            else:
                asked.update(_URN_COMMUNE.findall(v))
    if not asked:
        return None if key.communes is None else list(key.communes)
    if key.communes is None or asked <= set(key.communes):
        return sorted(asked)
    return sorted(asked | set(key.communes))


def setup(app: FastAPI) -> None:
    app.add_middleware(AuditMiddleware, fastapi_app=app)
