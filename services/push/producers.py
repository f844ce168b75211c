"""What an upstream is sent: its streams read from the IOC's tables into the outbox.

Each stream keeps its position in `push_cursors`, moved in the transaction that queues the
outbox row, so a restart resumes exactly where the last committed row left off.

- `changes`: `state_changes` by `seq` (commit-ordered), the rows of `/api/share/v1/changes`;
- `alerts`: `alert_changes` by (xid, id) below the oldest running transaction, the current rows of
  `/api/share/v1/alerts` of the alerts that changed;
- `daily_report`: once a local day at `daily_at`, the criteria report of the month so far.

While a target's receiver is down, a stream queues at most `max_pending` rows: the rest waits in
its source tables (which keep it), and when the receiver is back the catch-up goes out in full
batches of `batch` items rather than as thousands of small rows.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services import share
from services.backoff import Backoff
from services.push import outbox
from services.push.upstreams import Upstream
from services.status import utc

log = logging.getLogger(__name__)

_CHANGES = (
    "SELECT c.seq, c.device_id, c.commune_id AS commune, c.village_id AS village, c.kind,"
    " c.state, c.prev_state, c.at, c.reason FROM state_changes c JOIN devices d ON d.id = c.device_id"
)
_ALERT_TIMES = ("since", "opened_at", "acked_at", "resolved_at", "updated_at")
# A report of what exists: (sync connection, first day, last day, communes) -> criteria report
Report = Callable[[psycopg.Connection, date, date, list[str] | None], dict[str, Any]]


def scope(up: Upstream) -> share.Scope:
    return share.Scope(communes=up.communes, kinds=None)


async def _fetch(conn: psycopg.AsyncConnection, sql: str, params: Any) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, params)
    return await cur.fetchall()


async def start_cursors(conn: psycopg.AsyncConnection, up: Upstream) -> None:
    """A new upstream starts from now: earlier history is for pulling (`/api/share/v1/changes`)."""
    await conn.execute(
        "INSERT INTO push_cursors (upstream, stream, pos) SELECT %s, 'changes', value FROM counters"
        " WHERE name = 'changes' ON CONFLICT DO NOTHING",
        (up.id,),
    )
    await conn.execute(
        "INSERT INTO push_cursors (upstream, stream, pos_xid)"
        " VALUES (%s, 'alerts', pg_snapshot_xmin(pg_current_snapshot())) ON CONFLICT DO NOTHING",
        (up.id,),
    )
    await conn.execute(
        "INSERT INTO push_cursors (upstream, stream) VALUES (%s, 'daily_report') ON CONFLICT DO NOTHING",
        (up.id,),
    )


async def _pending(conn: psycopg.AsyncConnection, target: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM push_outbox WHERE target = %s AND status = 'pending'", (target,)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def changes_rows(
    conn: psycopg.AsyncConnection, up: Upstream, after: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The changes after `after` in the upstream's communes, and where to resume (as /changes)."""
    cur = await conn.execute("SELECT value FROM counters WHERE name = 'changes'")
    head = await cur.fetchone()
    top = int(head[0]) if head else 0
    where, params = scope(up).where()
    params.update(after=after, top=top, n=limit)
    sql = f"{_CHANGES} WHERE c.seq > %(after)s AND c.seq <= %(top)s AND {where} ORDER BY c.seq LIMIT %(n)s"  # noqa: S608
    rows = await _fetch(conn, sql, params)
    for r in rows:
        r["at"] = utc(r["at"])
    if len(rows) == limit:
        return rows, int(rows[-1]["seq"])
    return rows, max(top, after)


async def alert_rows(
    conn: psycopg.AsyncConnection, up: Upstream, pos: tuple[str, int], limit: int
) -> tuple[list[dict[str, Any]], tuple[str, int]]:
    """The alerts (as /api/share/v1/alerts rows, now) that changed after `pos`, in the order of
    their last change, and the position after the marks read."""
    marks = await (
        await conn.execute(
            "SELECT xid::text, id, alert_id FROM alert_changes"
            " WHERE (xid, id) > (%s::xid8, %s) AND xid < pg_snapshot_xmin(pg_current_snapshot())"
            " ORDER BY xid, id LIMIT %s",
            (pos[0], pos[1], limit),
        )
    ).fetchall()
    if not marks:
        return [], pos
    order: dict[int, int] = {}
    for i, (_, _, alert_id) in enumerate(marks):
        order.pop(alert_id, None)
        order[alert_id] = i
    where, params = scope(up).where()
    select, reach = share.alerts_select(scope(up))
    params.update(reach, ids=list(order))
    rows = await _fetch(conn, f"{select} WHERE a.id = ANY(%(ids)s) AND {where}", params)  # noqa: S608
    for r in rows:
        for c in _ALERT_TIMES:
            r[c] = utc(r[c])
        r["affected"] = list(r["affected"] or [])
    rows.sort(key=lambda r: order[r["id"]])
    return rows, (marks[-1][0], int(marks[-1][1]))


# At most this many past months are caught up after an outage (a year).
MAX_MISSED_MONTHS = 12


def missed_month_ends(last_sent: date | None, today: date) -> list[tuple[date, date]]:
    """The months before today's whose report never covered their last day, from the one of the
    day last sent on (first day, last day) each, oldest first, the last MAX_MISSED_MONTHS at most;
    none when nothing was ever sent."""
    if last_sent is None:
        return []
    out: list[tuple[date, date]] = []
    this_month = today.replace(day=1)
    year, month0 = divmod(this_month.year * 12 + this_month.month - 1 - MAX_MISSED_MONTHS, 12)
    oldest = date(year, month0 + 1, 1)
    first = max(last_sent.replace(day=1), oldest)
    while first < this_month:
        nxt = (first + timedelta(days=32)).replace(day=1)
        end = nxt - timedelta(days=1)
        if last_sent < end:
            out.append((first, end))
        first = nxt
    return out


class Producer:
    """The streams of one upstream, into its outbox target."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        up: Upstream,
        *,
        db_url: str,
        tz: ZoneInfo,
        report: Report | None,
        max_pending: int = 2,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.up = up
        self.db_url = db_url
        self.tz = tz
        self.report = report
        self.max_pending = max_pending
        self.wake = wake
        self.clock = clock
        self._no_report_logged = False
        self.kick = asyncio.Event()
        self._daily_retry_at = datetime.min.replace(tzinfo=UTC)

    async def tick(self) -> int:
        """Queue what is new; how many rows were queued."""
        n = 0
        if "daily_report" in self.up.send and self.clock() >= self._daily_retry_at:
            try:
                n += await self._daily()
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError):
                raise
            except Exception:
                # A report that fails must not hold up the streams; it is tried again in 10 minutes.
                log.exception("upstream %s: the daily report failed", self.up.id)
                self._daily_retry_at = self.clock() + timedelta(minutes=10)
        for stream in ("changes", "alerts"):
            if stream in self.up.send:
                while await self._stream(stream):
                    n += 1
        if n:
            self.wake()
        return n

    async def _stream(self, stream: str) -> bool:
        """Queue one batch of `stream`; True when it did (there may be more)."""
        async with self.pool.connection() as conn, conn.transaction():
            if await _pending(conn, self.up.target) >= self.max_pending:
                return False
            cur = await conn.execute(
                "SELECT pos, pos_xid::text FROM push_cursors WHERE upstream = %s AND stream = %s FOR UPDATE",
                (self.up.id, stream),
            )
            row = await cur.fetchone()
            if row is None:
                await start_cursors(conn, self.up)
                return False
            if stream == "changes":
                items, nxt = await changes_rows(conn, self.up, int(row[0]), self.up.batch)
                moved = nxt != int(row[0])
                await conn.execute(
                    "UPDATE push_cursors SET pos = %s, updated_at = now() WHERE upstream = %s AND stream = %s",
                    (nxt, self.up.id, stream),
                )
            else:
                items, (px, p) = await alert_rows(conn, self.up, (row[1], int(row[0])), self.up.batch)
                moved = (px, p) != (row[1], int(row[0]))
                await conn.execute(
                    "UPDATE push_cursors SET pos = %s, pos_xid = %s::xid8, updated_at = now()"
                    " WHERE upstream = %s AND stream = %s",
                    (p, px, self.up.id, stream),
                )
            if items:
                await outbox.enqueue(
                    conn,
                    self.up.target,
                    {"type": stream, "items": items},
                    communes=list(self.up.communes) if self.up.communes else None,
                )
            # marks of alerts outside this upstream's communes move the cursor with no item: go on
            return bool(items) or moved

    async def _daily(self) -> int:
        now = self.clock().astimezone(self.tz)
        if now.time().replace(tzinfo=None) < self.up.daily_at:
            return 0
        today = now.date()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT day FROM push_cursors WHERE upstream = %s AND stream = 'daily_report'", (self.up.id,)
            )
            row = await cur.fetchone()
        if row is None or (row[0] is not None and row[0] >= today):
            return 0
        last_sent: date | None = row[0]
        if self.report is None:
            if not self._no_report_logged:
                log.warning(
                    "upstream %s: daily_report is due but no criteria report is available", self.up.id
                )
                self._no_report_logged = True
            return 0
        # The report is the month so far, so a day missed is in the next day's. A month whose last
        # days were missed (the IOC down over its end) gets its whole-month report first, in order.
        sent = 0
        for first, last in missed_month_ends(last_sent, today) + [(today.replace(day=1), today)]:
            if not await self._send_daily(first, last, last_sent):
                return sent
            sent += 1
            last_sent = last
        return sent

    async def _send_daily(self, first: date, last: date, expected: date | None) -> bool:
        """Queue the report of first..last and mark `last` sent, unless another leader moved the mark."""
        communes = list(self.up.communes) if self.up.communes else None
        report = self.report
        assert report is not None
        doc = await asyncio.to_thread(self._report, report, first, last, communes)
        body = {"type": "daily_report", "period": doc.get("period"), "items": doc.get("items", [])}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT day FROM push_cursors WHERE upstream = %s AND stream = 'daily_report' FOR UPDATE",
                (self.up.id,),
            )
            row = await cur.fetchone()
            if row is None or row[0] != expected:
                return False  # another leader sent it meanwhile
            await outbox.enqueue(conn, self.up.target, body, communes=communes)
            await conn.execute(
                "UPDATE push_cursors SET day = %s, updated_at = now() WHERE upstream = %s AND stream = 'daily_report'",
                (last, self.up.id),
            )
        log.info("upstream %s: daily report of %s..%s queued", self.up.id, first, last)
        return True

    def _report(self, report: Report, first: date, last: date, communes: list[str] | None) -> dict[str, Any]:
        with psycopg.connect(self.db_url, autocommit=True, connect_timeout=5) as conn:
            return report(conn, first, last, communes)

    async def run(self, stop: asyncio.Event, poll_s: float, backoff: Backoff) -> None:
        """Tick every `poll_s` until `stop`; database trouble is retried with backoff, as is a report
        that fails (logged)."""
        failures = 0
        while not stop.is_set():
            self.kick.clear()
            try:
                await self.tick()
                failures = 0
                wait = poll_s
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                failures += 1
                if failures == 1:
                    log.warning("upstream %s producer: database: %s", self.up.id, outbox._first_line(err))
                wait = backoff.delay(failures)
            await outbox.sleep(stop, self.kick, wait)
