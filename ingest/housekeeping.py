"""Periodic jobs that must run once per deployment: availability rollup, retention, feed pruning.

Whoever holds the advisory lock (on a dedicated connection: a pooled one could be recycled
and the lock would vanish silently) is the housekeeper; the others wait to take over.
"""

import logging
import threading
import time
from datetime import UTC, datetime

import psycopg

from services import feed
from services.db import connect, first_line
from services.errors import Unavailable
from services.settings import IocSettings

log = logging.getLogger(__name__)

ROLLUP_S = 60
RETENTION_S = 3600
FEED_PRUNE_S = 300


class Housekeeper:
    def __init__(self, settings: IocSettings, lock_id: int) -> None:
        self.settings = settings
        self.lock_id = lock_id
        self._due = {"rollup": 0.0, "retention": 0.0, "feed": 0.0}
        self.is_leader = False

    def run(self, stop: threading.Event) -> None:
        conn: psycopg.Connection | None = None
        leader = False
        while not stop.wait(1.0 if leader else 5.0):
            try:
                if conn is None or conn.closed:
                    conn = connect(self.settings.database_url or "", autocommit=True, name="ioc-housekeeping")
                    leader = False
                if not leader:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_id,)).fetchone()
                    leader = bool(row and row[0])
                    if leader:
                        log.info("this process is the housekeeper")
                self.is_leader = leader
                if leader:
                    self._run_due(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as err:
                # The database went away: wait and reconnect. Anything else ends the worker.
                log.warning("housekeeping failed: %s", first_line(err))
                if conn is not None:
                    conn.close()
                conn, leader = None, False
                self.is_leader = False
        if conn is not None:
            conn.close()
        self.is_leader = False

    def _run_due(self, conn: psycopg.Connection) -> None:
        now_m = time.monotonic()
        for name, every_s, job in (
            ("rollup", ROLLUP_S, self._rollup),
            ("retention", RETENTION_S, self._retention),
            ("feed", FEED_PRUNE_S, self._prune),
        ):
            if now_m < self._due[name]:
                continue
            self._due[name] = now_m + every_s
            try:
                job(conn)
            except psycopg.OperationalError:
                raise
            except Exception:
                # One failing job must not stop the others; it is retried at its next turn.
                log.exception("housekeeping job %s failed", name)

    def _rollup(self, conn: psycopg.Connection) -> None:
        from services import rollup

        with conn.transaction():
            rollup.run(conn, datetime.now(UTC))

    def _retention(self, conn: psycopg.Connection) -> None:
        from services import retention

        retention.run(conn, self.settings)

    def _prune(self, conn: psycopg.Connection) -> None:
        feed.prune(conn)
        conn.execute("DELETE FROM sessions WHERE expires_at < now()")
