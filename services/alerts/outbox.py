"""The notification outbox: rows written in the transaction that changes an alert (none is
lost), drained by a separate task with retries and backoff (a channel that is down never blocks
the evaluator). A row is claimed with FOR UPDATE SKIP LOCKED and marked sent in the same
transaction, so two evaluators never send it twice."""

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.alerts.channels import Channels, DeliveryFailed
from services.alerts.hours import hours_end, in_hours
from services.alerts.models import Config, Route

log = logging.getLogger(__name__)


def attrs(alert: Mapping[str, Any]) -> dict[str, str | None]:
    """What routes match on."""
    return {
        "commune": alert.get("commune_id"),
        "village": alert.get("village_id"),
        "kind": alert.get("kind"),
        "severity": alert.get("severity"),
        "rule": alert.get("rule"),
        "device": alert.get("device_id"),
    }


def route_channels(cfg: Config, alert: Mapping[str, Any], escalation_level: int = 0) -> dict[str, Route]:
    """Channel name -> the route that sends to it, with escalations reached so far."""
    out: dict[str, Route] = {}
    for route in cfg.route(attrs(alert)):
        for ch in route.channels:
            out.setdefault(ch, route)
    for level in escalations(cfg, alert)[:escalation_level]:
        for ch in level[1]:
            out.setdefault(ch, level[2])
    return out


def escalations(cfg: Config, alert: Mapping[str, Any]) -> list[tuple[float, tuple[str, ...], Route]]:
    """Escalation levels of every route the alert takes, earliest first."""
    levels = [(e.after_s, e.channels, r) for r in cfg.route(attrs(alert)) for e in r.escalate]
    levels.sort(key=lambda x: x[0])
    return levels


def not_before(cfg: Config, route: Route | None, severity: str, now: datetime, tz: ZoneInfo) -> datetime:
    """Now, or the end of quiet hours for a non-critical notification."""
    quiet = route.quiet_hours if route is not None and route.has_quiet_hours else cfg.quiet_hours
    if severity == "critical" or quiet is None:
        return now
    local = now.astimezone(tz)
    return hours_end(quiet, local) if in_hours(quiet, local) else now


def enqueue(
    conn: psycopg.Connection,
    alert_id: int | None,
    event: str,
    channels: Mapping[str, Route | None],
    message: tuple[str, str, Mapping[str, Any]],
    severity: str,
    cfg: Config,
    now: datetime,
    tz: ZoneInfo,
    *,
    quiet_severity: str | None = None,
    skip_if_pending: bool = False,
) -> int:
    """Queue one notification per channel (in the caller's transaction); returns how many.

    `quiet_severity` (default `severity`) decides whether quiet hours hold it back."""
    title, body, data = message
    rows = []
    for name, route in channels.items():
        if (
            skip_if_pending
            and conn.execute(
                "SELECT 1 FROM alert_outbox WHERE alert_id = %s AND channel = %s AND status = 'pending'"
                " AND event = %s",
                (alert_id, name, event),
            ).fetchone()
        ):
            continue
        rows.append(
            (
                alert_id,
                event,
                name,
                title,
                body,
                Jsonb(dict(data)),
                severity,
                not_before(cfg, route, quiet_severity or severity, now, tz),
            )
        )
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO alert_outbox (alert_id, event, channel, title, body, data, severity, not_before)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
    return len(rows)


def cancel_pending(conn: psycopg.Connection, alert_id: int) -> None:
    """Drop notifications of a resolved alert that were not sent yet (held by quiet hours or retries):
    the technician would only read that something broke and is fixed."""
    conn.execute(
        "UPDATE alert_outbox SET status = 'cancelled' WHERE id IN (SELECT id FROM alert_outbox"
        " WHERE alert_id = %s AND status = 'pending' AND event IN ('open', 'repeat', 'escalate')"
        " FOR UPDATE SKIP LOCKED)",
        (alert_id,),
    )


def notified_channels(conn: psycopg.Connection, alert_id: int) -> set[str]:
    """Channels that were (or are being) told about the alert."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT channel FROM alert_outbox WHERE alert_id = %s AND channel IS NOT NULL"
            " AND event IN ('open', 'repeat', 'escalate') AND status <> 'cancelled'",
            (alert_id,),
        )
    }


_DUE = (
    "SELECT o.id FROM alert_outbox o WHERE o.status = 'pending' AND o.not_before <= now()"
    # one channel hears about one alert in order: open before resolve
    " AND NOT EXISTS (SELECT 1 FROM alert_outbox p WHERE p.alert_id = o.alert_id AND p.channel = o.channel"
    "  AND p.id < o.id AND p.status = 'pending')"
    " ORDER BY o.id LIMIT 200"
)
_CLAIM = (
    "SELECT id, alert_id, event, channel, title, body, data, severity, attempts FROM alert_outbox"
    " WHERE id = %s AND status = 'pending' FOR UPDATE SKIP LOCKED"
)


class Drainer:
    """Sends due outbox rows, each in its own transaction that holds the row until it is marked."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        channels: Channels,
        config: Callable[[], Config],
        concurrency: int = 8,
    ) -> None:
        self.pool = pool
        self.channels = channels
        self.config = config
        self.wake = asyncio.Event()
        self.stopping = False
        self._sem = asyncio.Semaphore(concurrency)
        self._inflight: set[int] = set()

    async def run(self, poll_s: float = 1.0) -> None:
        """Drain until stop() is called; in-flight deliveries are let finish (cut in the middle,
        one could be sent again by the next evaluator)."""
        async with asyncio.TaskGroup() as tg:
            while not self.stopping:
                self.wake.clear()
                try:
                    await self._drain_once(tg)
                except psycopg.Error as err:
                    log.warning("outbox: %s", _first_line(err))
                try:
                    async with asyncio.timeout(poll_s):
                        await self.wake.wait()
                except TimeoutError:
                    pass

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def _drain_once(self, tg: asyncio.TaskGroup) -> None:
        async with self.pool.connection() as conn:
            ids = [r[0] for r in await (await conn.execute(_DUE)).fetchall()]
        for oid in ids:
            if oid in self._inflight or self.stopping:
                continue
            await self._sem.acquire()
            self._inflight.add(oid)
            tg.create_task(self._deliver(oid), name=f"alerts.outbox[{oid}]")

    async def _deliver(self, oid: int) -> None:
        try:
            async with self.pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                row = await (await cur.execute(_CLAIM, (oid,))).fetchone()
                if row is None:
                    return
                cfg = self.config()
                error, took = None, 0.0
                try:
                    took = await self.channels.send(
                        row["channel"], row["title"], row["body"], row["severity"], row["data"] or {}
                    )
                except DeliveryFailed as err:
                    error = err.message
                attempts = row["attempts"] + 1
                await conn.execute(
                    "INSERT INTO alert_deliveries (outbox_id, channel, ok, duration_ms, error) VALUES (%s, %s, %s, %s, %s)",
                    (oid, row["channel"], error is None, int(took * 1000), error),
                )
                if error is None:
                    await conn.execute(
                        "UPDATE alert_outbox SET status = 'sent', sent_at = now(), attempts = %s,"
                        " last_error = NULL WHERE id = %s",
                        (attempts, oid),
                    )
                    return
                give_up = attempts >= cfg.max_attempts
                delay = min(cfg.max_backoff_s, cfg.backoff_s * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
                await conn.execute(
                    "UPDATE alert_outbox SET attempts = %s, last_error = %s, status = %s, not_before = now() + %s"
                    " WHERE id = %s",
                    (attempts, error, "failed" if give_up else "pending", timedelta(seconds=delay), oid),
                )
                log.warning(
                    "notification %s to %s failed (attempt %s%s): %s",
                    oid,
                    row["channel"],
                    attempts,
                    ", giving up" if give_up else "",
                    error,
                )
        except psycopg.Error as err:
            log.warning("outbox row %s: %s", oid, _first_line(err))
        except Exception:  # a bug must not stop other deliveries
            log.exception("outbox row %s", oid)
        finally:
            self._inflight.discard(oid)
            self._sem.release()


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
