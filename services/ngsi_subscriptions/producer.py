"""The producer of NGSI-LD notifications (task `ngsi.produce` of the push worker, leader only).

It reads the live feed (`feed`, numbered gap-free in commit order) in batches after its cursor:
every state change and every status ingest puts the device's whole current row there. Each
status item becomes the device's entity (services.ngsi_entities, as `GET /ngsi-ld/v1/entities`
shows it) and is compared with the one before it; a subscription is notified of the devices in
its key's scope that match its `entities` and `q` and whose watched attributes changed, one
notification per subscription per batch (its `data` holds every such device, latest value).
The notifications are queued in the push outbox in the transaction that moves the cursor, so a
restart neither loses nor repeats one.

Throttling: after a notification, the devices that change within `throttling` seconds are kept
(`ngsi_subscriptions.pending`, in the same transaction) and sent with their latest values when
the window ends. After a restart, each device's last entity before the cursor is read back from
the feed, so what changed is known exactly; when the feed (kept an hour) was pruned past the
cursor, every device changed since then is notified once with its current value.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from services import feed
from services.backoff import Backoff
from services.ngsi_entities import iso, key_values
from services.ngsi_subscriptions.matching import Device, Sub, bodies
from services.ngsi_subscriptions.store import NOTIFY_CHANNEL
from services.push import outbox

log = logging.getLogger(__name__)
POLL_S = 1.0  # at least this often: throttling windows that end, expiries
FEED_ROWS = 200  # feed rows (one per writing transaction) per batch
RELOAD_S = 5.0  # subscriptions and their keys read again at least this often (a revoked key)
SEED_ROWS = 20_000  # feed rows read back at start for each device's last entity
Clock = Callable[[], datetime]


def _time(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _changed(before: dict[str, Any] | None, after: dict[str, Any]) -> set[str]:
    if before is None:
        return set(after) - {"id", "type"}
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} - {"id", "type"}


class Producer:
    def __init__(self, pool: AsyncConnectionPool, clock: Clock | None = None) -> None:
        self.pool = pool
        self.clock = clock or (lambda: datetime.now(UTC))
        self.started = False
        self.devices: dict[str, Device] = {}
        self.registry_version: int | None = None
        self.subs: dict[str, Sub] = {}
        self.sub_version: tuple[int, int] | None = None
        self.loaded_at = 0.0
        # per subscription: throttled devices with the entity row to send, and the last notification
        self.pending: dict[str, dict[str, dict[str, Any] | None]] = {}
        self.notified: dict[str, datetime | None] = {}
        # per device: its last entity row and keyValues (what a change is measured against)
        self.last: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.cursor = 0
        self.cursor_at: datetime | None = None
        self.cursor_written = 0.0  # monotonic time the position was last written while idle
        self.seeded = False  # self.last holds each device's entity at the cursor
        self.wake = asyncio.Event()

    def _row(self, device_id: str, dev: Device, item: dict[str, Any]) -> dict[str, Any]:
        last_seen = _time(item.get("last_seen"))
        return {
            "device_id": device_id,
            "commune": dev.commune,
            "village": dev.village,
            "kind": dev.kind,
            "name": dev.name,
            "lat": dev.lat,
            "lon": dev.lon,
            "parent": dev.parent,
            "state": item.get("state") or "unknown",
            "since": _time(item.get("since")),
            "last_seen": last_seen,
            "metrics": item.get("metrics") or {},
            # the feed carries the receive time of the last status, not the device's own ts
            "metrics_ts": last_seen,
            "created_at": dev.created_at,
            "modified_at": max((t for t in (_time(item.get("since")), last_seen) if t), default=None),
        }

    async def start(self) -> None:
        """Cursor, registry, subscriptions, and each device's last entity before the cursor."""
        self.devices, self.subs, self.last = {}, {}, {}
        self.registry_version = self.sub_version = None
        async with self.pool.connection() as conn:
            async with conn.transaction():
                row = await (await conn.execute("SELECT feed_seq, feed_at FROM ngsi_producer")).fetchone()
                if row is None:
                    # First start: subscribers get the changes from now on.
                    head = await feed.head_async(conn)
                    await conn.execute(
                        "INSERT INTO ngsi_producer (feed_seq) VALUES (%s) ON CONFLICT DO NOTHING", (head,)
                    )
                    row = (head, self.clock())
            self.cursor, self.cursor_at = int(row[0]), row[1]
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            try:
                await self._load(conn)
                await self._seed(conn)
            finally:
                await conn.execute("COMMIT")
        self.started = True

    async def _load(self, conn: psycopg.AsyncConnection) -> None:
        row = await (await conn.execute("SELECT version FROM registry_version")).fetchone()
        version = int(row[0]) if row else 0
        if version != self.registry_version:
            cur = await conn.execute(
                "SELECT id, commune_id, village_id, kind, name, lat, lon, parent_id, created_at FROM devices"
                " WHERE retired_at IS NULL"
            )
            self.devices = {r[0]: Device(*r[1:]) for r in await cur.fetchall()}
            self.registry_version = version
        # A revoked key stops its subscriptions at once, as it stops the key everywhere.
        row = await (
            await conn.execute(
                "SELECT version, (SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL)"
                " FROM ngsi_subscriptions_version"
            )
        ).fetchone()
        subs_version = (int(row[0]), int(row[1])) if row else (0, 0)
        if subs_version == self.sub_version and time.monotonic() - self.loaded_at < RELOAD_S:
            return
        cur = await conn.execute(
            "SELECT s.id, s.doc, s.context_url, s.is_active, s.expires_at, s.throttling_s, k.communes, k.kinds,"
            " k.revoked_at IS NULL, k.expires_at, s.pending, s.notified_at"
            " FROM ngsi_subscriptions s JOIN api_keys k ON k.id = s.key_id"
        )
        subs: dict[str, Sub] = {}
        for r in await cur.fetchall():
            try:
                sub = subs[r[0]] = Sub.of(r[:10])
            except Exception:  # a stored subscription this version of the IOC cannot read: skipped, said once
                if r[0] not in self.subs:
                    log.exception("NGSI-LD subscription %s cannot be read; it is not notified", r[0])
                continue
            if sub.id not in self.pending or subs_version != self.sub_version:
                kept = self.pending.get(sub.id, {})
                self.pending[sub.id] = {d: kept.get(d) for d in r[10]}
                self.notified[sub.id] = r[11]
        for gone in set(self.pending) - set(subs):
            self.pending.pop(gone, None)
            self.notified.pop(gone, None)
        self.subs, self.sub_version, self.loaded_at = subs, subs_version, time.monotonic()

    async def _seed(self, conn: psycopg.AsyncConnection) -> None:
        """Each device's last entity at or before the cursor, read back from the feed."""
        self.last.clear()
        self.seeded = True
        need = set(self.devices)
        before = self.cursor
        rows_read = 0
        while need and before > 0 and rows_read < SEED_ROWS:
            cur = await conn.execute(
                "SELECT seq_first, items::text FROM feed WHERE seq_first <= %s ORDER BY seq_first DESC LIMIT 500",
                (before,),
            )
            rows = await cur.fetchall()
            if not rows:
                break
            for _, text in rows:
                for item in reversed(orjson.loads(text)):
                    d = item.get("device_id")
                    if item.get("type") == "status" and d in need and item.get("seq", 0) <= self.cursor:
                        r = self._row(d, self.devices[d], item)
                        self.last[d] = (r, key_values(r))
                        need.discard(d)
            rows_read += len(rows)
            before = rows[-1][0] - 1

    async def cycle(self) -> bool:
        """One batch: read, match, queue, move the cursor. True when more may be waiting."""
        now = self.clock()
        async with self.pool.connection() as conn:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            try:
                await self._load(conn)
                resync: list[tuple[str, dict[str, Any], bool]] | None = None
                rows: list[feed.Row] = []
                if self.subs and not self.seeded:
                    await self._seed(conn)
                if self.subs:
                    rows = await feed.rows_after(conn, self.cursor, FEED_ROWS)
                head = await feed.head_async(conn)
                due = self._periodic_due(now)
                current = await self._current(conn) if due else []
                if self.subs and (
                    (rows and rows[0][0] != self.cursor + 1) or (not rows and head > self.cursor)
                ):
                    resync = await self._current(conn)
            finally:
                await conn.execute("COMMIT")
        if not self.subs:
            await self._idle(head, now)
            return False
        matched: dict[str, dict[str, dict[str, Any]]] = {}
        new_at: datetime | None
        if resync is not None:
            log.warning(
                "the live feed no longer holds NGSI-LD notifications' position (%s; the producer was"
                " stopped over an hour): devices changed since %s are notified with their current values",
                self.cursor,
                self.cursor_at,
            )
            for d, item, changed_since in resync:
                if changed_since:
                    self._observe(d, item, matched, fresh=True, now=now)
                else:
                    r = self._row(d, self.devices[d], item)
                    self.last[d] = (r, key_values(r))
            new_cursor, new_at = head, now
        else:
            for _, _, text in rows:
                for item in orjson.loads(text):
                    if item.get("type") == "status" and item.get("device_id") in self.devices:
                        self._observe(item["device_id"], item, matched, fresh=False, now=now)
            new_cursor = rows[-1][1] if rows else self.cursor
            new_at = now if rows else self.cursor_at
        periodic: dict[str, list[dict[str, Any]]] = {}
        for sub in due:
            periodic[sub.id] = []
            for d, item, _ in current:
                r = self._row(d, self.devices[d], item)
                kv = key_values(r)
                if sub.selects(kv, set(kv)):
                    periodic[sub.id].append(r)
        await self._queue(matched, now, new_cursor, new_at, periodic)
        return len(rows) == FEED_ROWS

    def _periodic_due(self, now: datetime) -> list[Sub]:
        """Periodic subscriptions whose interval has passed since their last notification."""
        return [
            s
            for s in self.subs.values()
            if s.time_interval_s
            and s.live(now)
            and (
                (last := self.notified.get(s.id)) is None
                or now >= last + timedelta(seconds=s.time_interval_s)
            )
        ]

    async def _idle(self, head: int, now: datetime) -> None:
        """No subscription: nothing is read from the feed (most deployments have none), the
        position follows its head (written at most once a second), and each device's last entity
        is read back from the feed when a subscription comes."""
        self.last.clear()
        self.seeded = False
        if head != self.cursor and time.monotonic() - self.cursor_written >= 1.0:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute("UPDATE ngsi_producer SET feed_seq = %s, feed_at = %s", (head, now))
            self.cursor, self.cursor_at = head, now
            self.cursor_written = time.monotonic()

    async def _current(self, conn: psycopg.AsyncConnection) -> list[tuple[str, dict[str, Any], bool]]:
        cur = await conn.execute(
            "SELECT device_id, state, since, last_seen, metrics, updated_at > %s FROM device_state",
            (self.cursor_at,),
        )
        out = []
        for d, state, since, last_seen, metrics, changed in await cur.fetchall():
            if d in self.devices:
                item = {"state": state, "since": iso(since), "last_seen": iso(last_seen), "metrics": metrics}
                out.append((d, item, bool(changed)))
        return out

    def _observe(
        self,
        device_id: str,
        item: dict[str, Any],
        matched: dict[str, dict[str, dict[str, Any]]],
        *,
        fresh: bool,
        now: datetime,
    ) -> None:
        """Measure one status against the device's last entity; note it for each subscription it concerns."""
        r = self._row(device_id, self.devices[device_id], item)
        kv = key_values(r)
        before = self.last.get(device_id)
        changed = _changed(None if fresh or before is None else before[1], kv)
        self.last[device_id] = (r, kv)
        if not changed:
            return
        for sub in self.subs.values():
            if sub.selects(kv, changed) and sub.live(now):
                matched.setdefault(sub.id, {})[device_id] = r

    async def _queue(
        self,
        matched: dict[str, dict[str, dict[str, Any]]],
        now: datetime,
        new_cursor: int,
        new_at: datetime | None,
        periodic: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        notes: list[tuple[Sub, list[dict[str, Any]]]] = []
        pending_writes: dict[str, tuple[list[str], datetime | None]] = {}
        for sub_id, sub in self.subs.items():
            if sub.time_interval_s:
                # Periodic: notified on its interval with every matching entity, never on a change.
                if periodic and sub_id in periodic:
                    if periodic[sub_id]:
                        notes.append((sub, periodic[sub_id]))
                    pending_writes[sub_id] = ([], now)
                    self.notified[sub_id] = now
                continue
            pending = self.pending.setdefault(sub_id, {})
            fresh = matched.get(sub_id, {})
            if not sub.live(now):
                if pending:
                    pending_writes[sub_id] = ([], self.notified.get(sub_id))
                    pending.clear()
                continue
            if not fresh and not pending:
                continue
            last = self.notified.get(sub_id)
            window = timedelta(seconds=sub.throttling_s or 0)
            if sub.throttling_s and last is not None and now < last + window:
                added = set(fresh) - set(pending)
                pending.update(fresh)
                if added:
                    pending_writes[sub_id] = (sorted(pending), last)
                continue
            rows = [r for r in {**pending, **fresh}.values() if r is not None]
            rows += [self.last[d][0] for d, r in pending.items() if r is None and d in self.last]
            if rows:
                notes.append((sub, rows))
            if sub.throttling_s or pending:
                # (pending without throttling: its throttling was just removed; the stored list goes too)
                pending_writes[sub_id] = ([], now if sub.throttling_s else None)
            pending.clear()
            self.notified[sub_id] = now
        if not notes and not pending_writes and new_cursor == self.cursor:
            return
        # Pipelined: each enqueue waits only for its seq, not for the statements before it.
        async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            for sub, rows in notes:
                for body, communes in bodies(sub, rows, now):
                    await outbox.enqueue(conn, f"ngsi:{sub.id}", body, communes=communes)
            for sub_id in sorted(pending_writes):
                devices, notified = pending_writes[sub_id]
                await conn.execute(
                    "UPDATE ngsi_subscriptions SET pending = %s, notified_at = %s WHERE id = %s",
                    (devices, notified, sub_id),
                )
            if new_cursor != self.cursor:
                await conn.execute(
                    "UPDATE ngsi_producer SET feed_seq = %s, feed_at = %s", (new_cursor, new_at or now)
                )
        self.cursor, self.cursor_at = new_cursor, new_at

    def next_due_s(self, now: datetime) -> float:
        """Seconds until the first throttling window with devices waiting ends or a periodic
        subscription is due (at most POLL_S)."""
        due = POLL_S
        for periodic in self.subs.values():
            if periodic.time_interval_s and periodic.live(now):
                at = self.notified.get(periodic.id)
                left = (
                    0.0
                    if at is None
                    else (at + timedelta(seconds=periodic.time_interval_s) - now).total_seconds()
                )
                due = min(due, left)
        for sub_id, pending in self.pending.items():
            sub, last = self.subs.get(sub_id), self.notified.get(sub_id)
            if pending and sub is not None and sub.throttling_s and last is not None:
                due = min(due, (last + timedelta(seconds=sub.throttling_s) - now).total_seconds())
        return max(0.0, due)

    async def listen(self, stop: asyncio.Event, backoff: Backoff) -> None:
        """Be woken when the feed moves or a subscription changes (a poll covers a lost NOTIFY)."""
        failures = 0
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    str(self.pool.conninfo), autocommit=True, connect_timeout=5
                )
                try:
                    await conn.execute(f"LISTEN {feed.NOTIFY_CHANNEL}")
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    failures = 0
                    while not stop.is_set():
                        async for _ in conn.notifies(timeout=1.0):
                            self.wake.set()
                finally:
                    await conn.close()
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                failures += 1
                if failures == 1:
                    log.warning("NGSI-LD producer's listener: %s", outbox._first_line(err))  # noqa: SLF001
                await outbox.sleep(stop, asyncio.Event(), backoff.delay(failures))

    async def run(self, stop: asyncio.Event, backoff: Backoff | None = None) -> None:
        """Produce until `stop`; database trouble is retried with the backoff, starting over."""
        backoff = backoff or Backoff(1.0, 30.0)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.listen(stop, backoff), name="ngsi.listen")
            failures = 0
            while not stop.is_set():
                self.wake.clear()
                try:
                    if not self.started:
                        await self.start()
                    more = await self.cycle()
                    failures = 0
                except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                    failures += 1
                    self.started = False
                    if failures == 1:
                        log.warning("NGSI-LD producer: database: %s", outbox._first_line(err))  # noqa: SLF001
                    await outbox.sleep(stop, asyncio.Event(), backoff.delay(failures))
                    continue
                if not more:
                    await outbox.sleep(stop, self.wake, self.next_due_s(self.clock()) or 0.001)


async def run_producer(pool: AsyncConnectionPool, stop: asyncio.Event) -> None:
    """The `ngsi.produce` task of the push worker."""
    await Producer(pool).run(stop)
