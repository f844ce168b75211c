"""The push worker of `ioc alerts`: any number may run, exactly one pushes.

Like the alert evaluator (services/alerts/engine.py) it holds a session advisory lock on a
dedicated connection — a lock of its own, so the evaluator and the pusher may be active in
different `ioc alerts` processes. While it holds the lock it runs, as named tasks:
`push.listen` (wakes deliverers on NOTIFY), `push.deliver[upstream:<id>]` and
`push.produce[upstream:<id>]` per upstream, `push.deliver[ngsi]` (every NGSI-LD subscription),
`ngsi.produce` (services.ngsi_subscriptions.run_producer, when present), `push.prune`,
`push.lock` (ends the term when the lock connection dies) and `push.config` (IOC_UPSTREAMS_FILE read
again when it changes). A task that fails ends the process.
"""

import asyncio
import functools
import logging
import os
import socket
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg_pool import AsyncConnectionPool

from services import criteria
from services.backoff import Backoff
from services.errors import ConfigError, InvalidInput
from services.push import outbox, producers, upstreams
from services.push.outbox import Deliverer
from services.push.senders import NgsiSender, UpstreamSender, ngsi_module
from services.push.upstreams import Upstream
from services.settings import IocSettings
from services.workers import Tasks, WorkerFailed

log = logging.getLogger(__name__)
LOCK_ID = 0x10C_9054  # any value unique to this purpose
PRUNE_EVERY_S = 3600.0
FILE_POLL_S = 5.0  # IOC_UPSTREAMS_FILE is read again within this long of an edit


class PushSettings(IocSettings):
    """`ioc alerts`: pushes to upstreams (IOC_UPSTREAMS_FILE) and NGSI-LD subscribers."""

    upstreams_file: Path | None = None
    alerts_name: str = ""
    push_poll_s: float = 1.0  # how often producers look for new changes and alerts
    push_backoff_s: float = 1.0  # first retry delay; doubles per failure in a row
    push_backoff_cap_s: float = 300.0
    push_max_pending: int = 2  # queued rows per upstream stream while its receiver is down
    push_keep_days: int = 30  # delivered rows kept (the criteria report counts pushes)
    push_keep_bodies_hours: float = 24  # a delivered row's body kept this long, then emptied
    push_lock_poll_s: float = 1.0
    push_ngsi_concurrency: int = 16


def check_upstreams(s: PushSettings) -> tuple[Upstream, ...]:
    """IOC_UPSTREAMS_FILE, validated (ConfigError naming every bad line)."""
    try:
        return upstreams.load_file(s.upstreams_file)
    except InvalidInput as err:
        lines = err.detail if isinstance(err.detail, list) else [err.message]
        raise ConfigError("IOC_UPSTREAMS_FILE: " + "; ".join(lines)) from err


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
    return stop.is_set()


def _daily_report(s: PushSettings) -> producers.Report:
    tz = ZoneInfo(s.tz)

    def report(conn: psycopg.Connection, first: Any, last: Any, communes: list[str] | None) -> dict[str, Any]:
        return criteria.report(conn, first, last, communes, tz=tz, lang=s.lang)

    return report


class PushWorker:
    def __init__(
        self,
        settings: PushSettings,
        ups: tuple[Upstream, ...],
        *,
        ngsi: ModuleType | None | bool = True,
        report: producers.Report | None = None,
    ) -> None:
        settings.require("database_url")
        assert settings.database_url is not None
        self.s = settings
        self.url = settings.database_url
        self.upstreams = ups
        self.name = settings.alerts_name or f"{socket.gethostname()}:{os.getpid()}"
        self.ngsi: ModuleType | None = ngsi_module() if ngsi is True else (ngsi or None)
        self.report = report or _daily_report(settings)
        self.backoff = Backoff(settings.push_backoff_s, settings.push_backoff_cap_s)
        self.active = False
        self.terms = 0  # terms begun with the upstreams' targets and cursors in place
        self.lock_pid: int | None = None
        self.deliverers: dict[str, Deliverer] = {}
        self.reloading = False
        self._mtime = self._stat()
        self._bad: str | None = None

    def _stat(self) -> float | None:
        path = self.s.upstreams_file
        try:
            return path.stat().st_mtime if path is not None else None
        except OSError:
            return None

    def _refresh(self) -> bool:
        """Read IOC_UPSTREAMS_FILE again if it changed; True when the upstreams changed. A bad edit
        keeps the upstreams in force (logged once)."""
        mtime = self._stat()
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            ups = upstreams.load_file(self.s.upstreams_file)
        except InvalidInput as err:
            text = "; ".join(err.detail) if isinstance(err.detail, list) else err.message
            if text != self._bad:
                log.error("IOC_UPSTREAMS_FILE not applied, keeping the upstreams in force: %s", text)
                self._bad = text
            return False
        self._bad = None
        if ups == self.upstreams:
            return False
        self.upstreams = ups
        return True

    async def _watch_file(self, stop: asyncio.Event) -> None:
        """A changed file starts the term again with its upstreams, the lock kept."""
        while not await _wait(stop, FILE_POLL_S):
            if self._refresh():
                self.reloading = True
                stop.set()
                return

    async def run(self, stop: asyncio.Event) -> None:
        """Contend for the lock and push while holding it, until `stop` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self._term(stop)
                failures = 0
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                failures += 1
                if failures == 1:
                    log.warning("push worker lost its database: %s", outbox._first_line(err))
            await _wait(stop, self.backoff.delay(failures) if failures else self.s.push_lock_poll_s)

    async def _connect(self) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            application_name=f"ioc-push:{self.name}",
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        self.lock_pid = int(row[0]) if row else None
        return conn

    async def _term(self, stop: asyncio.Event) -> None:
        lock = await self._connect()
        try:
            while True:
                row = await (await lock.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,))).fetchone()
                if row and row[0]:
                    break
                if await _wait(stop, self.s.push_lock_poll_s):
                    return
            self.active = True
            self._refresh()
            log.info("push worker %s is active (%s upstream(s))", self.name, len(self.upstreams))
            while not stop.is_set():
                self.reloading = False
                await self._push(lock, stop)
                if not self.reloading:
                    break
                log.info("push worker: IOC_UPSTREAMS_FILE changed, %s upstream(s) now", len(self.upstreams))
        finally:
            if self.active:
                log.info("push worker %s is no longer active", self.name)
            self.active = False
            await lock.close()

    async def _push(self, lock: psycopg.AsyncConnection, stop: asyncio.Event) -> None:
        pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=4 + len(self.upstreams) + self.s.push_ngsi_concurrency,
            kwargs={"application_name": f"ioc-push:{self.name}", "connect_timeout": 5},
            open=False,
        )
        await pool.open()
        senders: list[Any] = []
        lost = asyncio.Event()
        try:
            async with pool.connection() as conn, conn.transaction():
                await self._configure(conn)
            self.terms += 1
            async with Tasks() as tasks:
                tasks.start("push.stop", lambda: _relay(stop, tasks.stop))
                for up in self.upstreams:
                    sender = UpstreamSender(up)
                    senders.append(sender)
                    d = Deliverer(pool, up.target, sender, self.backoff)
                    p = producers.Producer(
                        pool,
                        up,
                        db_url=self.url,
                        tz=ZoneInfo(self.s.tz),
                        report=self.report if "daily_report" in up.send else None,
                        max_pending=self.s.push_max_pending,
                        wake=d.wake.set,
                    )
                    d.on_delivered = p.kick.set
                    self.deliverers[up.target] = d
                    tasks.start(f"push.deliver[{up.target}]", functools.partial(d.run, tasks.stop))
                    tasks.start(
                        f"push.produce[{up.target}]",
                        functools.partial(p.run, tasks.stop, self.s.push_poll_s, self.backoff),
                    )
                ngsi = None
                if self.ngsi is not None:
                    ngsi = NgsiSender(pool, self.ngsi)
                    senders.append(ngsi)
                    tasks.start("ngsi.produce", lambda: self.ngsi.run_producer(pool, tasks.stop))  # type: ignore[union-attr]
                dispatch = _NgsiDispatch(pool, ngsi, self.backoff, self.s.push_ngsi_concurrency)
                tasks.start("push.deliver[ngsi]", lambda: dispatch.run(tasks.stop))
                tasks.start("push.listen", lambda: self._listen(tasks.stop, dispatch))
                tasks.start("push.prune", lambda: self._prune(pool, tasks.stop))
                tasks.start("push.lock", lambda: _watch_lock(lock, tasks.stop, lost))
                tasks.start("push.config", lambda: self._watch_file(tasks.stop))
                await tasks.wait()
                # A POST in flight may finish (its row is then marked, not sent again).
                await tasks.close(grace_s=10)
            if tasks.failure is not None:
                raise WorkerFailed(tasks.failure)
        finally:
            self.deliverers = {}
            for s in senders:
                await s.aclose()
            await pool.close()
        if lost.is_set():
            raise psycopg.OperationalError("the push worker's lock connection was lost")

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        """Targets and cursors of the upstreams in the file; those no longer in it are kept, marked."""
        ids = [up.target for up in self.upstreams]
        for up in self.upstreams:
            await conn.execute(
                "INSERT INTO push_targets (target, communes) VALUES (%s, %s)"
                " ON CONFLICT (target) DO UPDATE SET configured = true, communes = EXCLUDED.communes",
                (up.target, list(up.communes) if up.communes else None),
            )
            await producers.start_cursors(conn, up)
        await conn.execute(
            "UPDATE push_targets SET configured = false WHERE target LIKE 'upstream:%%' AND NOT target = ANY(%s)",
            (ids,),
        )
        if self.upstreams:
            known = {r[0] for r in await (await conn.execute("SELECT id FROM communes")).fetchall()}
            for up in self.upstreams:
                for c in up.communes or ():
                    if c not in known:
                        log.warning(
                            "upstream %s: commune %s is not in the registry (nothing to send)", up.id, c
                        )

    async def _listen(self, stop: asyncio.Event, dispatch: "_NgsiDispatch") -> None:
        """Wake the deliverer of a target a row was queued for (a poll covers a lost NOTIFY)."""
        failures = 0
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
                try:
                    await conn.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
                    failures = 0
                    gen = conn.notifies(timeout=1.0)
                    while not stop.is_set():
                        async for n in gen:
                            if n.payload in self.deliverers:
                                self.deliverers[n.payload].wake.set()
                            elif n.payload.startswith("ngsi:"):
                                dispatch.wake(n.payload)
                        gen = conn.notifies(timeout=1.0)
                finally:
                    await conn.close()
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                failures += 1
                if failures == 1:
                    log.warning("push listener: %s", outbox._first_line(err))
                await _wait(stop, self.backoff.delay(failures))

    async def _prune(self, pool: AsyncConnectionPool, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with pool.connection() as conn:
                    n = await outbox.prune(conn, self.s.push_keep_days, self.s.push_keep_bodies_hours)
                if n:
                    log.info(
                        "push outbox: %s delivered row(s) older than %s days removed",
                        n,
                        self.s.push_keep_days,
                    )
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                log.warning("push prune: %s", outbox._first_line(err))
            await _wait(stop, PRUNE_EVERY_S)


async def _relay(src: asyncio.Event, dst: asyncio.Event) -> None:
    """The process asks the term's tasks to stop; they also stop when the term ends by itself."""
    waiters = [asyncio.ensure_future(src.wait()), asyncio.ensure_future(dst.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    dst.set()


async def _watch_lock(lock: psycopg.AsyncConnection, stop: asyncio.Event, lost: asyncio.Event) -> None:
    """End the term (not the process) when the connection holding the lock dies."""
    while not await _wait(stop, 2.0):
        try:
            async with asyncio.timeout(10):
                await lock.execute("SELECT 1")
        except (psycopg.Error, OSError, TimeoutError):
            lost.set()
            stop.set()
            return


class _NgsiDispatch:
    """Deliverers of every NGSI-LD subscription with pending rows, several at once."""

    def __init__(
        self, pool: AsyncConnectionPool, sender: NgsiSender | None, backoff: Backoff, concurrency: int
    ) -> None:
        self.pool = pool
        self.sender = sender
        self.backoff = backoff
        self.sem = asyncio.Semaphore(concurrency)
        self.deliverers: dict[str, Deliverer] = {}
        self.running: set[str] = set()
        self.due: dict[str, float] = {}
        self.kick = asyncio.Event()

    def wake(self, target: str) -> None:
        self.due[target] = 0.0
        self.kick.set()

    async def run(self, stop: asyncio.Event, poll_s: float = 2.0) -> None:
        if self.sender is None:
            await stop.wait()  # nothing can deliver NGSI-LD rows before services.ngsi_subscriptions exists
            return
        async with asyncio.TaskGroup() as tg:
            while not stop.is_set():
                self.kick.clear()
                try:
                    async with self.pool.connection() as conn:
                        rows = await (
                            await conn.execute(
                                "SELECT target, min(not_before) <= now(), extract(epoch FROM min(not_before) - now())"
                                " FROM push_outbox WHERE status = 'pending' AND target LIKE 'ngsi:%%' GROUP BY target"
                            )
                        ).fetchall()
                except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                    log.warning("push to NGSI-LD subscribers: database: %s", outbox._first_line(err))
                    rows = []
                next_s = poll_s
                for target, ready, wait_s in rows:
                    if not ready:
                        next_s = min(next_s, max(0.05, float(wait_s)))
                        continue
                    if target in self.running:
                        continue
                    self.running.add(target)
                    tg.create_task(self._drain(target, stop), name=f"push.deliver[{target}]")
                try:
                    async with asyncio.timeout(next_s):
                        await self.kick.wait()
                except TimeoutError:
                    pass
                if stop.is_set():
                    break

    async def _drain(self, target: str, stop: asyncio.Event) -> None:
        assert self.sender is not None
        d = self.deliverers.get(target)
        if d is None:
            d = self.deliverers[target] = Deliverer(
                self.pool, target, self.sender, self.backoff, self.sender.on_attempt
            )
        try:
            async with self.sem:
                await d.drain(stop)
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
            log.warning("push to %s: database: %s", target, outbox._first_line(err))
        finally:
            self.running.discard(target)
            self.kick.set()
