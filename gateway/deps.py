"""Request dependencies: a database connection and the signed-in operator."""

from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio
import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway.admission import NoSlot, Slots
from services import auth
from services.auth import User
from services.errors import Busy, Forbidden, Unauthorized

SESSION_COOKIE = "ioc_session"
# Pooled connections left outside the request gate: the audit writer of sharing calls, the live
# feed's tailer and /readyz take theirs straight from the pool and must never find it empty.
POOL_RESERVE = 4
RETRY_AFTER_S = 2


def connection_gate(pool_size: int, wait_s: float, queue: int) -> Slots:
    """The slots of the request-facing connections of a pool of `pool_size`."""
    return Slots(size=max(1, pool_size - POOL_RESERVE), queue=queue, wait_s=wait_s)


async def get_conn(request: Request) -> AsyncIterator[psycopg.Connection]:
    """A pooled connection for the request; committed when the route returns normally, rolled back
    when it raises, and given back before the answer is sent.

    The wait for a connection happens on the event loop (bounded: 503 with Retry-After), never in
    a worker thread: threads blocked in the pool while the requests holding its connections waited
    for a thread wedged the gateway (issue 13). Giving it back runs outside the worker threads'
    limiter, so it never waits for a free thread either.
    """
    gate: Slots = request.app.state.db_gate
    pool: ConnectionPool = request.app.state.pool
    try:
        await gate.acquire()
    except NoSlot:
        raise Busy(
            "the gateway is busy (every database connection is in use); retry shortly",
            retry_after_s=RETRY_AFTER_S,
        ) from None
    try:
        try:
            conn = await anyio.to_thread.run_sync(pool.getconn, gate.wait_s)
        except PoolTimeout as err:
            raise Busy(
                "the gateway is busy (no database connection came free); retry shortly",
                retry_after_s=RETRY_AFTER_S,
            ) from err
        ok = False
        try:
            yield conn
            ok = True
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_give_back, pool, conn, ok, limiter=anyio.CapacityLimiter(1))
    finally:
        gate.release()


def _give_back(pool: ConnectionPool, conn: psycopg.Connection, commit: bool) -> None:
    try:
        if commit:
            conn.commit()
        else:
            conn.rollback()
    finally:
        pool.putconn(conn)


# Function scope: the connection is committed and given back before the answer leaves (a client
# reading right after a change sees it; the sharing audit writer takes its own connection then).
Conn = Annotated[psycopg.Connection, Depends(get_conn, scope="function")]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def current_user(request: Request, conn: Conn) -> User:
    token = bearer(request) or request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("sign in first: POST /api/v1/auth/login")
    user = auth.session_user(conn, token)
    request.state.actor = user.username
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require(*roles: str) -> Callable[[User], User]:
    """A dependency that admits only the given roles."""

    def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {user.role}")
        return user

    return check


Admin = Annotated[User, Depends(require("admin"))]
Operator = Annotated[User, Depends(require("admin", "operator"))]
Technician = Annotated[User, Depends(require("admin", "operator", "technician"))]


def check_commune(user: User, commune_id: str | None) -> None:
    """A user limited to some communes may not ask for another."""
    if commune_id is not None and user.communes is not None and commune_id not in user.communes:
        raise Forbidden(f"you have no access to commune {commune_id}")
