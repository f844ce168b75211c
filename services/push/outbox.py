"""The push outbox: every push to an upstream or an NGSI-LD subscriber, kept until delivered.

A row is written in the transaction of whatever produced it (none is lost), and is the exact
JSON to POST. Rows of one target are numbered gap-free in commit order (`push_targets.next_seq`,
whose row lock the enqueuing transaction holds until it commits) and delivered strictly in that
order: the next row goes only once the one before it is delivered or dead. Each row keeps one
`Idempotency-Key` across its attempts, so a receiver can drop a retry of what it already took.

Answers (SPEC §10, docs/upstreams.md):
- 2xx: delivered (`delivered_at` kept `keep_days` for the criteria report's count of pushes);
- 401: the token is dropped and the push retried at once with a new one; a second 401 is retried
  with backoff (credentials are a configuration problem, not the row's);
- 408, 409 (the same key still being processed), 425, 429, 5xx, timeouts and network errors:
  retried with the jittered backoff (`Retry-After` honoured up to the cap), for as long as it takes;
- any other 4xx refuses the row itself: after REFUSALS_TO_DEAD such answers in a row it is dead
  (kept, visible with its last error, `requeue_dead` sends it again) and the next row goes.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from services.backoff import Backoff

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "ioc_push"
REFUSALS_TO_DEAD = 3
RETRYABLE_4XX = frozenset({401, 408, 409, 425, 429})
MAX_ERROR_CHARS = 500


async def enqueue(
    conn: psycopg.AsyncConnection, target: str, body: dict[str, Any], *, communes: list[str] | None = None
) -> None:
    """Queue `body` to POST to `target` (`upstream:<id>` or `ngsi:<subscription id>`), in the
    caller's transaction; delivered after everything queued for `target` before it commits.
    `communes`: whose data it carries (None: not said), counted by the criteria report."""
    text = orjson.dumps(body).decode()
    items = body.get("items") if isinstance(body.get("items"), list) else body.get("data")
    n = len(items) if isinstance(items, list) else 1
    if conn.autocommit:
        # Alone, it is a transaction of its own: the seq and the row commit together.
        async with conn.transaction():
            await _enqueue(conn, target, text, n, communes)
    else:
        # In the caller's transaction (psycopg's `transaction()` would commit one it started here):
        # the push_targets row lock is held until the caller commits.
        await _enqueue(conn, target, text, n, communes)


async def _enqueue(
    conn: psycopg.AsyncConnection, target: str, text: str, n: int, communes: list[str] | None
) -> None:
    cur = await conn.execute(
        "INSERT INTO push_targets (target, next_seq) VALUES (%s, 1)"
        " ON CONFLICT (target) DO UPDATE SET next_seq = push_targets.next_seq + 1 RETURNING next_seq",
        (target,),
    )
    row = await cur.fetchone()
    assert row is not None
    await conn.execute(
        "INSERT INTO push_outbox (target, seq, body, items, communes) VALUES (%s, %s, %s::json, %s, %s)",
        (target, row[0], text, n, communes),
    )
    await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, target))


@dataclass(frozen=True)
class Row:
    target: str
    seq: int
    body: bytes
    idempotency_key: str
    attempts: int
    refusals: int


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. `kind`: ok, retry, refused, drop (the target is gone)."""

    kind: str
    error: str | None = None
    retry_after_s: float | None = None
    status: int | None = None

    @classmethod
    def of_status(cls, status: int, headers: Any = None, detail: str = "") -> "Outcome":
        """Sort an HTTP answer."""
        if 200 <= status < 300:
            return cls("ok", status=status)
        error = f"HTTP {status}{': ' + detail if detail else ''}"
        if status in RETRYABLE_4XX or status >= 500 or status < 400:
            return cls("retry", error, retry_after(headers), status)
        return cls("refused", error, status=status)


def retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


_HEAD = (
    "SELECT seq, body::text, idempotency_key::text, attempts, refusals, not_before, now() FROM push_outbox"
    " WHERE target = %s AND status = 'pending' ORDER BY seq LIMIT 1"
)

Send = Callable[[Row], Awaitable[Outcome]]
# (conn, target, ok, error, at): called in the transaction that records each attempt
OnAttempt = Callable[[psycopg.AsyncConnection, str, bool, str | None, datetime], Awaitable[None]]


class Deliverer:
    """Delivers one target's rows, oldest first, one at a time."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        target: str,
        send: Send,
        backoff: Backoff,
        on_attempt: OnAttempt | None = None,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self.on_delivered = on_delivered
        self.target = target
        self.send = send
        self.backoff = backoff
        self.on_attempt = on_attempt
        self.wake = asyncio.Event()
        self.failures_in_row = 0

    async def drain(self, stop: asyncio.Event) -> float | None:
        """Deliver what is due; seconds until the head row is due, or None when nothing is pending."""
        while not stop.is_set():
            async with self.pool.connection() as conn:
                cur = await conn.execute(_HEAD, (self.target,))
                head = await cur.fetchone()
            if head is None:
                return None
            seq, body, key, attempts, refusals, not_before, now = head
            if not_before > now:
                return (not_before - now).total_seconds()
            row = Row(self.target, seq, body.encode(), key, attempts, refusals)
            try:
                outcome = await self.send(row)
            except Exception as err:  # a bug in a sender must not stop the target: it is retried
                log.exception("push to %s: row %s", self.target, seq)
                outcome = Outcome("retry", f"internal error: {type(err).__name__}")
            await self._record(row, outcome)
            if outcome.kind in ("ok", "refused") and self.on_delivered is not None:
                self.on_delivered()  # room in the outbox: the producer may queue the next batch
        return None

    async def _record(self, row: Row, outcome: Outcome) -> None:
        error = (outcome.error or "")[:MAX_ERROR_CHARS] or None
        async with self.pool.connection() as conn, conn.transaction():
            at = await _now(conn)
            if outcome.kind == "ok":
                self.failures_in_row = 0
                await conn.execute(
                    "UPDATE push_outbox SET status = 'delivered', delivered_at = %s, attempts = attempts + 1,"
                    " last_attempt_at = %s WHERE target = %s AND seq = %s",
                    (at, at, row.target, row.seq),
                )
                await conn.execute(
                    "UPDATE push_targets SET last_success_at = %s, delivered_total = delivered_total + 1"
                    " WHERE target = %s",
                    (at, row.target),
                )
            elif outcome.kind == "drop":
                n = await conn.execute(
                    "DELETE FROM push_outbox WHERE target = %s AND status = 'pending'", (row.target,)
                )
                log.info("push to %s: %s; %s queued push(es) dropped", row.target, error, n.rowcount)
                return
            else:
                self.failures_in_row += 1
                refusals = row.refusals + 1 if outcome.kind == "refused" else 0
                dead = refusals >= REFUSALS_TO_DEAD
                delay = self.backoff.delay(self.failures_in_row)
                if outcome.retry_after_s is not None:
                    delay = min(max(delay, outcome.retry_after_s), self.backoff.cap_s)
                await conn.execute(
                    "UPDATE push_outbox SET attempts = attempts + 1, refusals = %s, last_error = %s,"
                    " last_attempt_at = %s, not_before = %s, status = %s WHERE target = %s AND seq = %s",
                    (
                        refusals,
                        error,
                        at,
                        at + timedelta(seconds=0 if dead else delay),
                        "dead" if dead else "pending",
                        row.target,
                        row.seq,
                    ),
                )
                await conn.execute(
                    "UPDATE push_targets SET last_error = %s, last_error_at = %s,"
                    " failures_total = failures_total + 1, dead_total = dead_total + %s WHERE target = %s",
                    (error, at, 1 if dead else 0, row.target),
                )
                if dead:
                    log.error(
                        "push to %s: row %s refused %s times (%s); dead-lettered, the next row goes",
                        row.target,
                        row.seq,
                        refusals,
                        error,
                    )
                elif self.failures_in_row == 1 or self.failures_in_row % 20 == 0:
                    log.warning(
                        "push to %s failed (%s in a row): %s; retrying in %.1f s",
                        row.target,
                        self.failures_in_row,
                        error,
                        delay,
                    )
            if self.on_attempt is not None:
                await self.on_attempt(conn, row.target, outcome.kind == "ok", error, at)

    async def run(self, stop: asyncio.Event, poll_s: float = 5.0) -> None:
        """Drain until `stop`; woken by `wake` (a new row) or when the head row is due."""
        failures = 0
        while not stop.is_set():
            self.wake.clear()
            try:
                due = await self.drain(stop)
                failures = 0
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                failures += 1
                if failures == 1:
                    log.warning("push to %s: database: %s", self.target, _first_line(err))
                due = self.backoff.delay(failures)
            wait = poll_s if due is None else min(due, poll_s)
            await sleep(stop, self.wake, wait)


async def _now(conn: psycopg.AsyncConnection) -> datetime:
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def sleep(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Until `seconds` pass, `wake` is set or `stop` is."""
    if seconds <= 0:
        return
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def requeue_dead(conn: psycopg.AsyncConnection, target: str) -> int:
    """Send a target's dead rows again (after the receiver or the file was fixed); how many."""
    cur = await conn.execute(
        "UPDATE push_outbox SET status = 'pending', refusals = 0, not_before = now()"
        " WHERE target = %s AND status = 'dead'",
        (target,),
    )
    await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, target))
    return cur.rowcount


async def prune(conn: psycopg.AsyncConnection, keep_days: int, keep_bodies_hours: float = 24) -> int:
    """Delete delivered rows (and alert change marks) older than `keep_days`; how many rows.

    A delivered row's body is emptied (JSON null) after `keep_bodies_hours`: the row stays for the
    criteria report's count of pushes and items, the bytes do not (an NGSI-LD subscription on every
    attribute queues tens of kB a second). Pending and dead rows keep theirs: they are sent again.
    """
    if keep_bodies_hours > 0:
        await conn.execute(
            "UPDATE push_outbox SET body = 'null' WHERE status = 'delivered'"
            " AND delivered_at < now() - make_interval(secs => %s) AND body::text <> 'null'",
            (keep_bodies_hours * 3600,),
        )
    if keep_days <= 0:
        return 0
    cur = await conn.execute(
        "DELETE FROM push_outbox WHERE status = 'delivered' AND delivered_at < now() - make_interval(days => %s)",
        (keep_days,),
    )
    await conn.execute("DELETE FROM alert_changes WHERE at < now() - make_interval(days => %s)", (keep_days,))
    return cur.rowcount


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
