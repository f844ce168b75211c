"""The `ioc alerts` process: any number may run, exactly one evaluates.

The active one holds a session advisory lock on a dedicated connection and does all its
evaluation on that same connection: if the connection dies the lock goes with it, and so
does any half-done tick (rolled back). Standbys try the lock every `alerts_lock_poll_s`.
"""

import asyncio
import logging
import os
import random
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services import liveness
from services.alerts import config as alert_config
from services.alerts import unscheduled
from services.alerts.channels import Channels, check
from services.alerts.evaluator import Evaluator
from services.alerts.models import Config
from services.alerts.outbox import Drainer
from services.errors import ConfigError, InvalidInput
from services.settings import IocSettings

log = logging.getLogger(__name__)
LOCK_ID = 0x10C_A1E7  # any value unique to this purpose
HEALTH_EVERY_S = 5.0


class AlertsSettings(IocSettings):
    """`ioc alerts`: the alert evaluator and notifier."""

    # Base of links in notifications (`{public_url}/#/device/{id}`); shared with the gateway.
    public_url: str | None = None
    alerts_tick_s: float = 0.5
    alerts_lock_poll_s: float = 1.0
    alerts_name: str = ""
    alerts_send_concurrency: int = 8
    # After this process starts, an ingest that has not reported yet may still be starting
    # (`ioc up` starts its children together): no "IOC lost its broker" for that long.
    alerts_start_grace_s: float = 60.0

    def rule_defaults(self) -> dict[str, dict[str, Any]]:
        """Rule settings the environment gives, under IOC_ALERTS_FILE's and the API's."""
        return unscheduled.rule_defaults(self.broadcast_allowed_sources)


class ConfigSource:
    """IOC_ALERTS_FILE plus the rules admins saved through the API, rebuilt when either changes."""

    def __init__(self, path: Path | None, defaults: dict[str, dict[str, Any]] | None = None) -> None:
        self.path = path
        self.defaults = defaults or {}
        self._mtime: float | None = None
        self._version: int | None = None
        self._doc: dict[str, Any] = {}
        self._api: dict[str, Any] = {}
        self._last_error: str | None = None
        self.current: Config = alert_config.build({}, defaults=self.defaults)

    def _file(self) -> bool:
        mtime = self.path.stat().st_mtime if self.path and self.path.exists() else None
        if mtime == self._mtime and self._mtime is not None:
            return False
        self._doc = alert_config.load_file(self.path)
        self._mtime = mtime
        return True

    def refresh(self, conn: psycopg.Connection, *, strict: bool = False) -> bool:
        """Reload what changed; True when the config changed. A bad edit keeps the previous config."""
        try:
            changed = self._file()
            row = conn.execute("SELECT version, rules FROM alert_config").fetchone()
            if row is not None and row[0] != self._version:
                self._version, self._api = row[0], row[1] or {}
                changed = True
            if not changed:
                return False
            self.current = alert_config.build(self._doc, self._api, self.defaults)
            for name, url in self.current.channels.items():
                try:
                    check(url)
                except InvalidInput as err:
                    raise InvalidInput(f"channels.{name}: {err.message}") from err
            self._last_error = None
            return True
        except InvalidInput as err:
            if strict:
                raise ConfigError(f"IOC_ALERTS_FILE: {_one_line(err)}") from err
            if err.message != self._last_error:
                log.error("alert configuration not applied, keeping the previous one: %s", err.message)
                self._last_error = err.message
            return False


def public_url(s: AlertsSettings, cfg: Config) -> str:
    return (cfg.public_url or s.public_url or f"http://{s.http_host}:{s.http_port}").rstrip("/")


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early when stopping; True when stopping."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
    return stop.is_set()


class Engine:
    def __init__(self, settings: AlertsSettings) -> None:
        settings.require("database_url")
        assert settings.database_url is not None
        self.s = settings
        self.url = settings.database_url
        self.name = settings.alerts_name or f"{socket.gethostname()}:{os.getpid()}"
        self.active = False
        self.terms = 0  # times this process became the active evaluator
        self.lock_pid: int | None = None
        self.started_at: datetime | None = None  # on the database's clock, at the first connection

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(
            self.url,
            autocommit=True,
            application_name=f"ioc-alerts:{self.name}",
            connect_timeout=5,
            # A dead peer must end this process's term quickly: another evaluator is waiting.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            options="-c statement_timeout=30000",
        )
        row = conn.execute("SELECT pg_backend_pid(), clock_timestamp()").fetchone()
        self.lock_pid = int(row[0]) if row else None
        if self.started_at is None and row is not None:
            self.started_at = row[1]
            liveness.count_start(conn, "alerts")
        return conn

    def _try_lock(self, conn: psycopg.Connection) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()
        return bool(row and row[0])

    def _health(self, conn: psycopg.Connection) -> None:
        conn.execute(
            "INSERT INTO process_health (name, kind, seen_at, info) VALUES (%s, 'alerts', now(), %s)"
            " ON CONFLICT (name) DO UPDATE SET seen_at = now(), info = EXCLUDED.info",
            (f"alerts:{self.name}", Jsonb({"active": self.active})),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Contend for the lock and evaluate while holding it, until `stop` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self._term(stop)
                failures = 0
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as err:
                # The database went away: back off and contend again. Any other error (a table
                # or a privilege changed under us, a bug) ends the process; it is restarted.
                failures += 1
                if failures == 1:
                    log.warning(
                        "alert evaluator lost its database connection: %s",
                        (str(err).strip().splitlines() or [type(err).__name__])[0],
                    )
            await _wait(stop, min(10.0, 0.5 * 2 ** min(failures, 5)) * random.uniform(0.5, 1.0))

    async def _term(self, stop: asyncio.Event) -> None:
        conn = await asyncio.to_thread(self._connect)
        try:
            next_health = 0.0
            loop = asyncio.get_running_loop()
            while not await asyncio.to_thread(self._try_lock, conn):
                if loop.time() >= next_health:
                    await asyncio.to_thread(self._health, conn)
                    next_health = loop.time() + HEALTH_EVERY_S
                if await _wait(stop, self.s.alerts_lock_poll_s):
                    return
            self.active = True
            self.terms += 1
            log.info("alert evaluator %s is active", self.name)
            await self._evaluate(conn, stop)
        finally:
            if self.active:
                log.info("alert evaluator %s is no longer active", self.name)
            self.active = False
            await asyncio.to_thread(conn.close)

    async def _evaluate(self, conn: psycopg.Connection, stop: asyncio.Event) -> None:
        source = ConfigSource(self.s.alerts_file, self.s.rule_defaults())
        await asyncio.to_thread(source.refresh, conn)
        evaluator = Evaluator(
            conn,
            lambda: source.current,
            tz=self.s.tz,
            lang=self.s.lang,
            public_url=public_url(self.s, source.current),
            grace_until=self.started_at + timedelta(seconds=self.s.alerts_start_grace_s)
            if self.started_at is not None
            else None,
        )
        await asyncio.to_thread(evaluator.load)
        pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self.s.alerts_send_concurrency + 1,
            kwargs={"application_name": f"ioc-alerts-send:{self.name}", "connect_timeout": 5},
            open=False,
        )
        await pool.open()
        channels = Channels(source.current.channels)
        drainer = Drainer(pool, channels, lambda: source.current, concurrency=self.s.alerts_send_concurrency)
        error: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(drainer.run(), name="alerts.outbox")
                try:
                    next_health = 0.0
                    loop = asyncio.get_running_loop()
                    while not stop.is_set():
                        if await asyncio.to_thread(source.refresh, conn):
                            evaluator.public_url = public_url(self.s, source.current)
                            if dict(source.current.channels) != channels.urls:
                                old, channels = channels, Channels(source.current.channels)
                                drainer.channels = channels
                                await old.aclose()
                        if await asyncio.to_thread(evaluator.tick):
                            drainer.wake.set()
                        if loop.time() >= next_health:
                            await asyncio.to_thread(self._health, conn)
                            next_health = loop.time() + HEALTH_EVERY_S
                        await _wait(stop, self.s.alerts_tick_s)
                except (psycopg.Error, OSError) as err:
                    # Let deliveries in flight finish before giving up the term (no duplicates).
                    error = err
                finally:
                    drainer.stop()
        finally:
            await channels.aclose()
            await pool.close()
        if error is not None:
            raise error


def check_config(settings: AlertsSettings) -> Config:
    """Validate IOC_ALERTS_FILE (and its channel URLs) without a database."""
    try:
        cfg = alert_config.build(
            alert_config.load_file(settings.alerts_file), defaults=settings.rule_defaults()
        )
        for name, url in cfg.channels.items():
            try:
                check(url)
            except InvalidInput as err:
                raise InvalidInput(f"channels.{name}: {err.message}") from err
    except InvalidInput as err:
        raise ConfigError(f"IOC_ALERTS_FILE: {_one_line(err)}") from err
    return cfg


def _one_line(err: InvalidInput) -> str:
    return "; ".join(err.detail) if isinstance(err.detail, list) else err.message.replace("\n", "; ")
