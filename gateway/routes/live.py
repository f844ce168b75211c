"""WS /ws/live: the operators' live feed (snapshot, then every change in seq order)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio
from fastapi import APIRouter, FastAPI, Query, WebSocket
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from gateway.deps import SESSION_COOKIE
from gateway.live import CLOSE_NOT_READY, CLOSE_SIGNED_OUT, CLOSE_TOO_SLOW, Client, LiveFeed
from services import auth
from services.auth import User
from services.errors import Unauthorized

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])
# A slow client must read what is already buffered before it sees the close frame.
_CLOSE_TIMEOUT_S = 30.0
# Most messages in one frame of a `?batch=1` client.
_BATCH_FRAME = 1000


def setup(app: FastAPI) -> None:
    """One live feed per gateway process: its two workers run in the app's task group (the
    lifespan's `app.state.workers`), which cancels them when the app stops."""

    async def start(app: FastAPI) -> None:
        s = app.state.settings
        live = app.state.live = LiveFeed(
            s.database_url, app.state.pool, poll_s=s.live_poll_s, queue_limit=s.live_queue
        )
        app.state.workers.start("live.tail", live.run)
        app.state.workers.start("live.sessions", live.check_sessions)

    app.state.startup.append(start)


def _token(ws: WebSocket, query_token: str | None) -> str | None:
    scheme, _, value = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return ws.cookies.get(SESSION_COOKIE) or query_token or None


def _session_user(pool: ConnectionPool, token: str) -> User | None:
    try:
        with pool.connection() as conn:
            return auth.session_user(conn, token)
    except Unauthorized:
        return None


async def _deny(ws: WebSocket, status: int, code: str, message: str) -> None:
    body = JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )
    try:
        await ws.send_denial_response(body)
    except RuntimeError:
        # A server without the denial-response extension: closing before accept refuses with 403.
        await ws.close(code=1008, reason=message)


@router.websocket("/ws/live")
async def live(
    websocket: WebSocket,
    since: int | None = Query(None, ge=0, description="resume after this seq"),
    token: str | None = Query(None, description="session token, when no header or cookie can be sent"),
    batch: bool = Query(False, description="after the snapshot, send JSON arrays of messages (fewer frames)"),
) -> None:
    """Live feed for operators.

    Authenticate with `Authorization: Bearer <token>`, the `ioc_session` cookie or `?token=`
    (never logged). The first message is `{"type":"snapshot","seq":N,"devices":[...],"alerts":[...]}`
    (plus `communes`, `villages`, and the last hour's `changes` and `events`), then every feed message
    with seq > N in order: `status`, `event`, `alert`, `registry` (refetch: reconnect without `since`).
    `?since=N` resumes with every message after N, or a new snapshot when N is too old.
    A client that cannot keep up is closed with code 1013; it reconnects with `?since=`.
    When its session ends (signed out on any gateway, expired, user disabled) it is closed with
    code 1008 within seconds.
    With `?batch=1` every frame after the snapshot is a JSON array of messages in seq order
    (what the dashboard uses: far fewer frames under load).
    """
    tok = _token(websocket, token)
    user = await run_in_threadpool(_session_user, websocket.app.state.pool, tok) if tok else None
    if user is None:
        await _deny(websocket, 401, "unauthorized", "sign in first: POST /api/v1/auth/login")
        return
    feed: LiveFeed = websocket.app.state.live
    try:
        await asyncio.wait_for(feed.ready.wait(), 10)
    except TimeoutError:
        await _deny(websocket, 503, "unavailable", "the live feed cannot reach the database")
        return
    await websocket.accept()
    client = feed.subscribe(user.communes, auth.token_hash(tok) if tok else None)
    try:
        await _serve(websocket, feed, client, since, batch, user.username)
    finally:
        feed.unsubscribe(client)


async def _serve(
    ws: WebSocket, feed: LiveFeed, client: Client, since: int | None, batch: bool, who: str
) -> None:
    # Whichever ends first (client gone, sender failed, client too slow, signed out) ends the others;
    # an anyio task group, so that a cancelled endpoint (shutdown) cancels them all.
    first: list[tuple[str, BaseException | None]] = []

    async def run(name: str, fn: Callable[[], Awaitable[object]]) -> None:
        try:
            await fn()
            first.append((name, None))
        except Exception as err:  # noqa: BLE001 - reported below, after the others are stopped
            first.append((name, err))
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "send", lambda: _send(ws, feed, client, since, batch), name=f"live[{who}].send")
        tg.start_soon(run, "receive", lambda: _receive(ws), name=f"live[{who}].receive")
        tg.start_soon(run, "overflow", client.overflowed.wait, name=f"live[{who}].overflow")
        tg.start_soon(run, "signed_out", client.signed_out.wait, name=f"live[{who}].signed_out")
    name, err = first[0] if first else ("receive", None)
    if name == "signed_out":
        log.info("live feed: closing %s's connection: the session ended", who)
        await _close(ws, CLOSE_SIGNED_OUT, "signed out; sign in again")
    elif name == "overflow":
        log.info("live feed: closing %s's connection: too slow", who)
        await _close(ws, CLOSE_TOO_SLOW, "too slow or resynchronising; reconnect with ?since=")
    elif err is not None and not isinstance(err, WebSocketDisconnect | OSError):
        log.error("live feed: sending to %s failed", who, exc_info=err)
        await _close(ws, CLOSE_NOT_READY, "feed error; reconnect with ?since=")


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    # A client that reads nothing may never take the close frame either; do not wait for it forever.
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await ws.close(code=code, reason=reason)
    except (TimeoutError, RuntimeError, WebSocketDisconnect, OSError):
        pass


async def _receive(ws: WebSocket) -> None:
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return


async def _send(ws: WebSocket, feed: LiveFeed, client: Client, since: int | None, batch: bool) -> None:
    backlog = None
    if since is not None:
        backlog = feed.replay_from_ring(since, client)
        if backlog is None:
            backlog = await run_in_threadpool(feed.replay_from_db, since, client)
    if backlog is None:
        last, text = await run_in_threadpool(feed.snapshot, client.communes)
        backlog = feed.after_snapshot(last, client)
        if backlog is None:  # a shared snapshot older than the ring: read one of our own
            last, text = await run_in_threadpool(lambda: feed.snapshot(client.communes, reuse=False))
            backlog = []
        await ws.send_text(text)
    else:
        assert since is not None
        last = since
    pending = backlog or []
    while True:
        # Messages fanned out while the snapshot or backlog was read are already covered.
        fresh = [m for m in pending if m.seq > last]
        if fresh:
            last = fresh[-1].seq
            if batch:
                for i in range(0, len(fresh), _BATCH_FRAME):
                    await ws.send_text("[" + ",".join(m.text for m in fresh[i : i + _BATCH_FRAME]) + "]")
            else:
                for m in fresh:
                    await ws.send_text(m.text)
        pending = await client.take()
