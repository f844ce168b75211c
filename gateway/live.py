"""The live feed of one gateway process: a tailer follows the `feed` table and fans out to clients.

The feed comes from the database, so every gateway of a deployment serves the same messages
with the same `seq`. One dedicated connection per process LISTENs on `ioc_feed` and reads new
rows when woken, and at least every `poll_s` in case a notification was lost.
Clients each get a bounded queue: the tailer never waits for a client. A client that falls
behind first has its queued `status` messages coalesced (the newest per device wins); if it is
still over its limit it is disconnected with close code 1013 and resumes with `?since=`.

Two workers of the gateway (`services.workers.Tasks`, owned by the app's lifespan): `live.tail`
(`LiveFeed.run`) and `live.sessions` (`LiveFeed.check_sessions`: a client whose session ended —
signed out on any gateway, expired, user disabled — is closed within `session_check_s`). A lost
database is retried with backoff; any other error ends the worker and the gateway exits
non-zero: a feed that silently stopped would show operators a frozen picture as if it were live.
"""

import asyncio
import bisect
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg_pool import ConnectionPool

from services import auth, feed, live_snapshot, liveness
from services.db import first_line

log = logging.getLogger(__name__)

# Close codes a client sees; both mean "reconnect with ?since=<last seq you got>".
CLOSE_TOO_SLOW = 1013
CLOSE_NOT_READY = 1013
# The client's session ended (signed out, expired, user disabled): sign in again.
CLOSE_SIGNED_OUT = 1008
# How far back `?since=` is served from the feed table; further back a snapshot is cheaper.
MAX_REPLAY = 50_000
_BATCH_ROWS = 500
SNAPSHOT_REUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class Message:
    """One feed message, serialized once for every client."""

    seq: int
    type: str
    commune: str | None
    device_id: str | None
    text: str


def _message(item: dict[str, Any]) -> Message:
    commune = item.get("commune")
    device_id = item.get("device_id")
    return Message(
        int(item["seq"]),
        str(item.get("type")),
        commune if isinstance(commune, str) else None,
        device_id if isinstance(device_id, str) else None,
        orjson.dumps(item).decode(),
    )


def _rows_to_messages(rows: Iterable[tuple[int, int, str]]) -> list[Message]:
    out: list[Message] = []
    for _first, _last, items in rows:
        out.extend(_message(item) for item in orjson.loads(items))
    return out


class Client:
    """One WebSocket client's queue: filled by the tailer, drained by the client's sender."""

    def __init__(self, communes: Iterable[str] | None, limit: int, session: bytes | None = None) -> None:
        self.communes = frozenset(communes) if communes is not None else None
        self.limit = limit
        self.session = session  # hash of the session token it signed in with
        self.queue: deque[Message] = deque()
        self.wake = asyncio.Event()
        self.overflowed = asyncio.Event()
        self.signed_out = asyncio.Event()

    def visible(self, m: Message) -> bool:
        return self.communes is None or m.commune is None or m.commune in self.communes

    def offer(self, batch: list[Message]) -> None:
        """Queue messages without ever waiting; coalesce or give up on a client that falls behind."""
        if self.overflowed.is_set():
            return
        if self.communes is None:
            self.queue.extend(batch)
        else:
            self.queue.extend(m for m in batch if self.visible(m))
        if len(self.queue) > self.limit:
            self._coalesce()
            if len(self.queue) > self.limit:
                self.queue.clear()
                self.overflowed.set()
        if self.queue:
            self.wake.set()

    def _coalesce(self) -> None:
        # A newer status of a device supersedes an older one still queued; events and alerts stay.
        seen: set[str] = set()
        keep: list[Message] = []
        for m in reversed(self.queue):
            if m.type == "status" and m.device_id is not None:
                if m.device_id in seen:
                    continue
                seen.add(m.device_id)
            keep.append(m)
        keep.reverse()
        self.queue = deque(keep)

    async def take(self) -> list[Message]:
        """Everything queued, waiting for at least one message."""
        while not self.queue:
            self.wake.clear()
            await self.wake.wait()
        batch = list(self.queue)
        self.queue.clear()
        return batch


class LiveFeed:
    """The tailer of one gateway process and the set of its clients."""

    def __init__(
        self,
        url: str,
        pool: ConnectionPool,
        *,
        poll_s: float = 1.0,
        queue_limit: int = 20_000,
        ring_size: int = 20_000,
        session_check_s: float = 2.0,
    ) -> None:
        self.url = url
        self.pool = pool
        self.poll_s = poll_s
        self.session_check_s = session_check_s
        self.queue_limit = queue_limit
        self.clients: set[Client] = set()
        self.ready = asyncio.Event()
        # Last seq handed to clients; everything up to it has been fanned out.
        self.position = 0
        # Recent messages for cheap resumption; complete from `ring_from` to `position`.
        self.ring: deque[Message] = deque(maxlen=ring_size)
        self.ring_from = 1
        # Recent snapshots by scope: (monotonic time read, seq, text).
        self._snapshots: dict[tuple[str, ...] | None, tuple[float, int, str]] = {}
        self._snapshot_lock = threading.Lock()
        self._reset_seq = 0
        self._counted = False

    # -- workers ---------------------------------------------------------------------------

    async def run(self) -> None:
        """The tailer (worker `live.tail`): follow the feed table until cancelled."""
        delay = 0.5
        failing = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, application_name="ioc-gateway-live", connect_timeout=5
                ) as conn:
                    await feed.listen(conn)
                    if not self._counted:
                        await asyncio.to_thread(self._count_start)
                        self._counted = True
                    if not self.ready.is_set():
                        self.position = await feed.head_async(conn)
                        self.ring_from = self.position + 1
                        self.ready.set()
                    if failing:
                        log.info("live feed: database reachable again; resuming after seq %d", self.position)
                        failing = False
                    delay = 0.5
                    while True:
                        await self._catch_up(conn)
                        async for _ in conn.notifies(timeout=self.poll_s, stop_after=1):
                            pass
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                if not failing:
                    log.warning("live feed: lost the database (%s); retrying", first_line(err))
                    failing = True
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 10.0)

    def _count_start(self) -> None:
        with self.pool.connection() as conn:
            liveness.count_start(conn, "gateway")

    async def check_sessions(self) -> None:
        """Worker `live.sessions`: close clients whose session has ended, on whichever gateway
        it was ended, every `session_check_s`, until cancelled."""
        conn: psycopg.AsyncConnection | None = None
        failing = False
        try:
            while True:
                await asyncio.sleep(self.session_check_s)
                held = {c.session for c in self.clients if c.session is not None}
                if not held:
                    continue
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(
                            self.url,
                            autocommit=True,
                            application_name="ioc-gateway-sessions",
                            connect_timeout=5,
                        )
                    alive = await auth.live_sessions_async(conn, list(held))
                    failing = False
                except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                    if not failing:
                        log.warning("live feed: cannot check sessions (%s); retrying", first_line(err))
                        failing = True
                    if conn is not None:
                        await conn.close()
                    conn = None
                    continue
                for c in list(self.clients):
                    if c.session is not None and c.session not in alive:
                        c.signed_out.set()
        finally:
            if conn is not None:
                await conn.close()

    def sign_out(self, session: bytes) -> None:
        """Close this gateway's clients of a session now (the others notice within seconds)."""
        for c in list(self.clients):
            if c.session == session:
                c.signed_out.set()

    async def _catch_up(self, conn: psycopg.AsyncConnection) -> None:
        while True:
            rows = await feed.rows_after(conn, self.position, _BATCH_ROWS)
            if not rows:
                return
            if rows[0][0] != self.position + 1:
                self._gap(int(rows[0][0]))
            self.dispatch(_rows_to_messages(rows))
            self.position = int(rows[-1][1])
            if len(rows) < _BATCH_ROWS:
                return

    def _gap(self, first: int) -> None:
        # Rows were pruned before this process read them (it was cut off from the database for
        # longer than the feed retention): clients may have missed messages, so they start over.
        log.warning(
            "live feed: messages %d..%d are gone; clients resynchronise", self.position + 1, first - 1
        )
        self.ring.clear()
        self.ring_from = first
        for client in self.clients:
            client.queue.clear()
            client.overflowed.set()

    def dispatch(self, batch: list[Message]) -> None:
        """Hand a batch to every client; never waits."""
        if not batch:
            return
        if len(self.ring) + len(batch) > (self.ring.maxlen or 0):
            drop = len(self.ring) + len(batch) - (self.ring.maxlen or 0)
            self.ring_from = (
                self.ring[drop].seq if drop < len(self.ring) else batch[drop - len(self.ring)].seq
            )
        self.ring.extend(batch)
        for m in batch:
            if m.type == "registry":
                self._reset_seq = m.seq  # clients refetch: no snapshot from before it is shared
        for client in self.clients:
            client.offer(batch)

    # -- clients ---------------------------------------------------------------------------

    def subscribe(self, communes: Iterable[str] | None, session: bytes | None = None) -> Client:
        client = Client(communes, self.queue_limit, session)
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def replay_from_ring(self, since: int, client: Client) -> list[Message] | None:
        """Messages after `since` still held in memory; None when the ring does not reach back."""
        if since + 1 < self.ring_from or since > self.position:
            return None
        seqs = [m.seq for m in self.ring]
        start = bisect.bisect_right(seqs, since)
        return [m for m in list(self.ring)[start:] if client.visible(m)]

    def replay_from_db(self, since: int, client: Client) -> list[Message] | None:
        """Messages after `since` from the feed table; None when they are gone or too many."""
        with self.pool.connection() as conn:
            rows = feed.replay(conn, since, MAX_REPLAY)
        if rows is None:
            return None
        return [m for m in _rows_to_messages(rows) if m.seq > since and client.visible(m)]

    def snapshot(self, communes: Iterable[str] | None, *, reuse: bool = True) -> tuple[int, str]:
        """(seq, text) of a snapshot message; the counter and the rows are read in one snapshot.

        Clients of the same scope connecting within SNAPSHOT_REUSE_S share one: when a gateway
        restarts every dashboard comes back at once, and 200 snapshots of 5,000 devices built
        side by side cost seconds and hundreds of MB. A shared snapshot may be older than the
        client's subscription; `after_snapshot` gives what happened since.
        """
        key = tuple(sorted(communes)) if communes is not None else None
        with self._snapshot_lock:
            now = time.monotonic()
            hit = self._snapshots.get(key)
            if reuse and hit is not None and now - hit[0] < SNAPSHOT_REUSE_S and hit[1] >= self._reset_seq:
                return hit[1], hit[2]
            with self.pool.connection() as conn:
                body = live_snapshot.read(conn, list(key) if key is not None else None)
            seq, text = int(body["seq"]), orjson.dumps(body).decode()
            self._snapshots = {k: v for k, v in self._snapshots.items() if now - v[0] < SNAPSHOT_REUSE_S}
            self._snapshots[key] = (now, seq, text)
            return seq, text

    def after_snapshot(self, seq: int, client: Client) -> list[Message] | None:
        """Messages after a snapshot's seq that the client's queue may lack (they were fanned out
        before it subscribed); None when the ring no longer reaches back to it."""
        if seq >= self.position:
            return []
        return self.replay_from_ring(seq, client)
