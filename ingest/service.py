"""`ioc ingest`: the MQTT consumer, the liveness sweep, housekeeping and the ONVIF poller.

One owner (`IngestService`, a context manager) starts and stops every named thread.
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

log = logging.getLogger(__name__)

SWEEP_S = 1.0
PROBE_S = 1.0
HEALTH_S = 2.0
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
    # IOC_INGEST_FAST=false: plain paho instead of the lean path on paho internals (ingest.paho_private)
    ingest_fast: bool = True


def default_client_id() -> str:
    return f"ioc-ingest-{socket.gethostname()}"


class IngestService:
    def __init__(self, settings: IngestSettings) -> None:
        assert settings.database_url and settings.mqtt_url
        self.settings = settings
        self.client_id = settings.ingest_id or default_client_id()
        self.registry = RegistryCache()
        self.health = BrokerHealth(self.client_id)
        self.stop = threading.Event()
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
        )
        self._threads = [
            threading.Thread(target=self._liveness_loop, name="ingest.liveness", daemon=True),
            threading.Thread(target=self._housekeeping_loop, name="ingest.housekeeping", daemon=True),
        ]
        if settings.ingest_onvif:
            self._threads.append(
                threading.Thread(target=self._onvif_thread, name="ingest.onvif", daemon=True)
            )
        if settings.ingest_sources:
            self._threads.append(
                threading.Thread(target=self._sources_loop, name="ingest.sources", daemon=True)
            )
        self._onvif_stop: asyncio.Event | None = None
        self._onvif_loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> "IngestService":
        self.mqtt.__enter__()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self._onvif_loop and self._onvif_stop:
            self._onvif_loop.call_soon_threadsafe(self._onvif_stop.set)
        for t in self._threads:
            t.join(timeout=15)
        self.mqtt.__exit__(*exc)

    def _liveness_loop(self) -> None:
        conn: psycopg.Connection | None = None
        last_health = 0.0
        while not self.stop.wait(SWEEP_S):
            self.mqtt.client.publish(self.health.topic, str(time.time()), qos=0)
            if not self.health.check():
                continue  # cannot hear the broker: states freeze (SPEC §4, §7)
            since = self.health.listening_since
            if since is None:
                continue
            try:
                if conn is None or conn.closed:
                    conn = connect(self.settings.database_url or "", name="ioc-ingest-liveness")
                self.registry.refresh_if_due(conn)
                now = datetime.now(UTC)
                if time.monotonic() - last_health >= HEALTH_S:
                    liveness.report_health(conn, self.client_id, since)
                    last_health = time.monotonic()
                maint = devices_in_maintenance(conn, now, self.settings.tz)
                conn.commit()
                liveness.sweep(conn, self.registry.devices, now, since, maint)
            except (psycopg.Error, Unavailable) as err:
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

    def _housekeeping_loop(self) -> None:
        from ingest.housekeeping import Housekeeper

        Housekeeper(self.settings, HOUSEKEEPING_LOCK).run(self.stop)

    def _onvif_thread(self) -> None:
        from ingest.onvif import run_onvif

        loop = asyncio.new_event_loop()
        self._onvif_loop = loop
        self._onvif_stop = asyncio.Event()
        secret = self.settings.secret_key.get_secret_value() if self.settings.secret_key else None
        try:
            loop.run_until_complete(
                run_onvif(
                    self.settings.database_url or "", self.settings.mqtt_url or "", secret, self._onvif_stop
                )
            )
        except Exception:
            log.exception("ONVIF poller stopped with an error")
        finally:
            loop.close()
