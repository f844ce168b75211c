"""The live feed and the change log, numbered in commit order.

Writers call these as the last statements of their transaction: the counter row lock is
then held only until commit, so numbers are handed out in commit order and a reader that
has seen N has seen every message up to N. Readers are the gateways' tailers and the clients
that resume with `?since=`.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Json

NOTIFY_CHANNEL = "ioc_feed"
# (seq_first, seq_last, items as JSON text): one writing transaction's messages
Row = tuple[int, int, str]
_HEAD = "SELECT value FROM counters WHERE name = 'feed'"


def _take(conn: psycopg.Connection, counter: str, n: int) -> int:
    """Reserve n numbers; returns the first."""
    row = conn.execute(
        "UPDATE counters SET value = value + %s WHERE name = %s RETURNING value", (n, counter)
    ).fetchone()
    assert row is not None
    return int(row[0]) - n + 1


def publish(conn: psycopg.Connection, items: Sequence[dict[str, Any]]) -> int:
    """Append live-feed messages (each a dict with a `type`); returns the seq of the first.

    Items get `seq` set in place so callers can hand the same dicts on.
    """
    if not items:
        return 0
    first = _take(conn, "feed", len(items))
    for i, item in enumerate(items):
        item["seq"] = first + i
    conn.execute(
        "INSERT INTO feed (seq_first, seq_last, items) VALUES (%s, %s, %s)",
        (first, first + len(items) - 1, Json(list(items), dumps=_dumps)),
    )
    conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(first + len(items) - 1)))
    return first


def record_changes(
    conn: psycopg.Connection,
    rows: Sequence[tuple[str, str, str | None, str, str, str | None, datetime, str | None]],
) -> None:
    """Append state changes: (device_id, commune_id, village_id, kind, state, prev_state, at, reason)."""
    if not rows:
        return
    first = _take(conn, "changes", len(rows))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO state_changes (seq, device_id, commune_id, village_id, kind, state, prev_state, at, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(first + i, *r) for i, r in enumerate(rows)],
        )


def _dumps(obj: Any) -> bytes:
    # psycopg takes bytes as they are: no decode/encode round trip per row.
    return orjson.dumps(obj)


# The live feed only serves reconnecting clients (`?since=`); older gaps get a new snapshot.
FEED_KEEP = "1 hour"


def prune(conn: psycopg.Connection) -> int:
    """Delete feed rows older than FEED_KEEP; returns how many."""
    cur = conn.execute("DELETE FROM feed WHERE at < now() - %s::interval", (FEED_KEEP,))
    return cur.rowcount


def head(conn: psycopg.Connection) -> int:
    """The seq of the newest message (0 before the first)."""
    row = conn.execute(_HEAD).fetchone()
    return int(row[0]) if row else 0


def replay(conn: psycopg.Connection, since: int, limit: int) -> list[Row] | None:
    """The rows holding every message after `since` (the first row may start before it); None when
    some are gone (pruned) or more than `limit` messages follow."""
    newest = head(conn)
    if since > newest or newest - since > limit:
        return None
    if since == newest:
        return []
    oldest = conn.execute("SELECT min(seq_first) FROM feed").fetchone()
    if oldest is None or oldest[0] is None or oldest[0] > since + 1:
        return None
    return conn.execute(
        "SELECT seq_first, seq_last, items::text FROM feed"
        " WHERE seq_first >= (SELECT max(seq_first) FROM feed WHERE seq_first <= %s)"
        " ORDER BY seq_first",
        (since + 1,),
    ).fetchall()


# The gateway's tailer runs on the event loop, on an AsyncConnection of its own (LISTEN ties up a
# connection), so it cannot call the sync reads above. Async twins rather than exported SQL text:
# each statement stays next to its parameters and the shape of its rows, and the gateway sees no SQL.


async def listen(conn: psycopg.AsyncConnection) -> None:
    """Be woken (`conn.notifies()`) when messages are published."""
    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")


async def head_async(conn: psycopg.AsyncConnection) -> int:
    """`head` on an async connection."""
    row = await (await conn.execute(_HEAD)).fetchone()
    return int(row[0]) if row else 0


async def rows_after(conn: psycopg.AsyncConnection, seq: int, limit: int) -> list[Row]:
    """Up to `limit` rows of messages after `seq` (whole rows: seq_first > seq), oldest first."""
    cur = await conn.execute(
        "SELECT seq_first, seq_last, items::text FROM feed WHERE seq_first > %s ORDER BY seq_first LIMIT %s",
        (seq, limit),
    )
    return await cur.fetchall()
