"""`ioc ingest`: the MQTT consumer, the liveness sweep, housekeeping and the ONVIF poller.

One owner (`IngestService`, a context manager) starts and stops every worker, by name, in one
`services.workers.Threads`: `ingest.mqtt` (paho's network thread), `ingest.writer`,
`ingest.liveness`, `ingest.housekeeping` and `ingest.onvif`. The first that fails stops them
all and `ioc ingest` exits non-zero; expected trouble (database or broker away) is retried
inside each worker.
"""

import asyncio
import logging
import socket
import threading
import time
from datetime import UTC, datetime

import psycopg

from ingest.mqtt import BrokerHealth, IngestConfig, MqttIngest
from services import liveness
from services.db import connect, first_line
from services.errors import Unavailable
from services.maintenance import devices_in_maintenance
from services.registry_cache import RegistryCache
from services.settings import IocSettings
from services.workers import Threads

log = logging.getLogger(__name__)

SWEEP_S = 1.0
PROBE_S = 1.0
HEALTH_S = 2.0
# The sweep declares nobody offline while the writer has committed nothing for this long with
# messages waiting: their statuses may be among them (the IOC is deaf, not the devices).
FREEZE_S = 5.0
# Any value unique to this purpose: one housekeeper per deployment.
HOUSEKEEPING_LOCK = 0x10C_0002


class IngestSettings(IocSettings):
    """`ioc ingest`: a stable, distinct client id per process (the broker keeps its session)."""

    ingest_id: str = ""
    ingest_batch_max: int = 20000
    ingest_linger_ms: float = 5
    ingest_onvif: bool = True
    # IOC_INGEST_SOURCES=false: no vendor MQTT bridge in this process (ingest.sources, SPEC §8)
    ingest_sources: bool = True
    # IOC_INGEST_POLL=false: this process polls no SNMP/ping/TCP/HTTP device (ingest.sources.poll)
    ingest_poll: bool = True
    # IOC_INGEST_FAST=false: plain paho instead of the lean path on paho internals (ingest.paho_private)
    ingest_fast: bool = True
    # IOC_INGEST_BROADCASTS=false: no broadcast delivery worker here (ingest.broadcaster; one is
    # active per deployment); media URLs in commands are built on IOC_PUBLIC_URL
    ingest_broadcasts: bool = True
    public_url: str | None = None


def default_client_id() -> str:
    return f"ioc-ingest-{socket.gethostname()}"


class IngestService:
    def __init__(self, settings: IngestSettings) -> None:
        assert settings.database_url and settings.mqtt_url
        self.settings = settings
        self.client_id = settings.ingest_id or default_client_id()
        self.registry = RegistryCache()
        self.health = BrokerHealth(self.client_id)
        self.workers = Threads()
        self.stop = self.workers.stop
        self.mqtt = MqttIngest(
            settings.database_url,
            settings.mqtt_url,
            IngestConfig(
                self.client_id,
                settings.ingest_batch_max,
                settings.ingest_linger_ms / 1000,
                fast=settings.ingest_fast,
            ),
            self.registry,
            self.health,
            self.workers,
        )
        self.stall = liveness.Stall()
        self.stalled_s = 0.0
        # The ONVIF poller's loop and stop event are made before its thread starts, so that a
        # stop that comes first is not lost (it is delivered once the loop runs).
        self._onvif_loop: asyncio.AbstractEventLoop | None = None
        self._onvif_stop: asyncio.Event | None = None
        self._onvif_lock = threading.Lock()
        self._own: list[threading.Thread] = []  # the workers started here (mqtt owns its own two)

    def __enter__(self) -> "IngestService":
        self.mqtt.__enter__()
        self._own = [
            self.workers.start("ingest.liveness", self._liveness_loop),
            self.workers.start("ingest.housekeeping", self._housekeeping_loop),
        ]
        if self.settings.ingest_onvif:
            self._onvif_loop, self._onvif_stop = asyncio.new_event_loop(), asyncio.Event()
            self._own.append(self.workers.start("ingest.onvif", self._onvif_thread))
        if self.settings.ingest_sources:
            self._own.append(self.workers.start("ingest.sources", self._sources_loop))
        if self.settings.ingest_poll:
            self._own.append(self.workers.start("ingest.poll", self._poll_loop))
        if self.settings.ingest_broadcasts and self.settings.secret_key is not None:
            self._own.append(self.workers.start("ingest.broadcasts", self._broadcasts_loop))
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """Stop every worker; a stop on purpose (no worker failed) is written down as planned."""
        self.stop.set()
        with self._onvif_lock:
            loop = self._onvif_loop
            if loop is not None and self._onvif_stop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._onvif_stop.set)
        self.workers.join(15, self._own)
        if exc_type is None and self.workers.failure is None:
            self._mark_stopped()
        self.mqtt.__exit__(exc_type, *exc)

    def _mark_stopped(self) -> None:
        try:
            with connect(self.settings.database_url or "", name="ioc-ingest-stop") as conn:
                liveness.mark_stopped(conn, self.client_id)
        except (psycopg.OperationalError, Unavailable) as err:
            log.warning("could not record this stop as planned: %s", first_line(err))

    def writer_stalled_s(self) -> float:
        """Seconds the writer has committed nothing while messages waited (0: it keeps up)."""
        waiting = getattr(self.mqtt, "waiting", None)
        last = getattr(self.mqtt, "last_commit_at", None)
        return self.stall.observe(
            waiting or 0, last if last is not None else self.mqtt.committed, time.monotonic()
        )

    def _liveness_loop(self) -> None:
        conn: psycopg.Connection | None = None
        last_health = 0.0
        counted = False
        while not self.stop.wait(SWEEP_S):
            self.mqtt.client.publish(self.health.topic, str(time.time()), qos=0)
            self.stalled_s = self.writer_stalled_s()
            if not self.health.check():
                continue  # cannot hear the broker: states freeze (SPEC §4, §7)
            since = self.health.listening_since
            if since is None:
                continue
            try:
                if conn is None or conn.closed:
                    conn = connect(self.settings.database_url or "", name="ioc-ingest-liveness")
                if not counted:
                    liveness.count_start(conn, "ingest")
                    counted = True
                self.registry.refresh_if_due(conn)
                now = datetime.now(UTC)
                if time.monotonic() - last_health >= HEALTH_S:
                    liveness.report_health(
                        conn,
                        self.client_id,
                        since,
                        last_commit_at=getattr(self.mqtt, "last_commit_at", None),
                        waiting=getattr(self.mqtt, "waiting", None),
                        stalled_s=self.stalled_s,
                    )
                    last_health = time.monotonic()
                if self.stalled_s > FREEZE_S:
                    continue  # the writer is stuck: states freeze until it catches up
                maint = devices_in_maintenance(conn, now, self.settings.tz)
                conn.commit()
                liveness.sweep(conn, self.registry.devices, now, since, maint)
            except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as err:
                # Anything else (a schema or privilege changed under us, a bug) ends the worker.
                log.warning("liveness sweep failed: %s", first_line(err))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _sources_loop(self) -> None:
        from ingest.sources import SourceBridges

        secret = self.settings.secret_key.get_secret_value() if self.settings.secret_key else None
        SourceBridges(self.settings.database_url or "", self.settings.mqtt_url or "", secret).run(self.stop)

    def _broadcasts_loop(self) -> None:
        from ingest.broadcaster import Broadcaster

        s = self.settings
        assert s.secret_key is not None
        public_url = s.public_url or f"http://{s.http_host}:{s.http_port}"
        Broadcaster(
            s.database_url or "",
            s.mqtt_url or "",
            public_url,
            s.secret_key.get_secret_value(),
            s.tz,
            f"{self.client_id}-broadcasts",
        ).run(self.stop)

    def _poll_loop(self) -> None:
        from ingest.sources.poll import PollScheduler

        secret = self.settings.secret_key.get_secret_value() if self.settings.secret_key else None
        db, mqtt_url = self.settings.database_url or "", self.settings.mqtt_url or ""
        PollScheduler(db, mqtt_url, secret, self.client_id).run(self.stop)

    def _housekeeping_loop(self) -> None:
        from ingest.housekeeping import Housekeeper

        Housekeeper(self.settings, HOUSEKEEPING_LOCK).run(self.stop)

    def _onvif_thread(self) -> None:
        from ingest.onvif import run_onvif

        loop, stop = self._onvif_loop, self._onvif_stop
        assert loop is not None and stop is not None
        secret = self.settings.secret_key.get_secret_value() if self.settings.secret_key else None
        try:
            loop.run_until_complete(
                run_onvif(self.settings.database_url or "", self.settings.mqtt_url or "", secret, stop)
            )
        finally:
            with self._onvif_lock:
                loop.close()
