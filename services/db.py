"""Connections to PostgreSQL: one pool per process, plus dedicated connections for locks."""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from services.errors import Unavailable

APP_NAME = "commune-ioc"


def connect(url: str, *, autocommit: bool = False, name: str = APP_NAME) -> psycopg.Connection:
    """A dedicated connection (advisory locks and LISTEN must not live on a pooled one)."""
    try:
        return psycopg.connect(url, autocommit=autocommit, application_name=name, connect_timeout=5)
    except psycopg.OperationalError as err:
        raise Unavailable(f"database unreachable: {first_line(err)}") from err


def pool(
    url: str, *, min_size: int = 1, max_size: int = 8, name: str = APP_NAME, timeout: float = 30.0
) -> ConnectionPool:
    """A pool of plain connections (tuple rows; ask a cursor for `dict_row` where wanted);
    `timeout` is the longest `connection()`/`getconn()` waits before PoolTimeout."""
    return ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        # psycopg prepares a statement after a few runs; PostgreSQL may then switch it to a
        # generic plan that suits no range (a report went from 20 ms to 270 ms that way).
        kwargs={
            "application_name": name,
            "connect_timeout": 5,
            "options": "-c plan_cache_mode=force_custom_plan",
        },
        open=False,
        # A server restart leaves dead sockets in the pool; check before handing one out.
        check=ConnectionPool.check_connection,
    )


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """A short-lived connection in one transaction (CLI commands)."""
    with connect(url) as conn, conn.transaction():
        conn.row_factory = dict_row  # type: ignore[assignment]
        yield conn


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
