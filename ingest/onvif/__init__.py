"""ONVIF cameras: the poller (status, events by PullPoint) publishing to MQTT, and discovery.

`run_onvif` is what `ioc ingest` runs (its worker `ingest.onvif`): exactly one poller is active
per deployment (a PostgreSQL advisory lock on a dedicated connection); the others stand by and
take over within seconds when it goes away. A lost database is waited out; anything else that
escapes the per-camera tasks ends `run_onvif` with the error, and with it the process.
"""

import asyncio
import logging

import psycopg

from ingest.onvif.camera import Tuning
from ingest.onvif.poller import LockLost, Poller, wait
from ingest.onvif.publisher import MqttPublisher
from services.db import connect
from services.errors import Unavailable
from services.vault import Vault

log = logging.getLogger(__name__)

# Any value unique to this purpose: one active ONVIF poller per deployment.
LOCK_ID = 0x10C_0005


def _try_lock(db_url: str) -> psycopg.Connection | None:
    conn = connect(db_url, autocommit=True, name="ioc-onvif-poller")
    try:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()
    except psycopg.Error:
        conn.close()
        raise
    if row and row[0]:
        return conn
    conn.close()
    return None


async def run_onvif(
    db_url: str,
    mqtt_url: str,
    secret_key: str | None,
    stop: asyncio.Event,
    *,
    tuning: Tuning | None = None,
    lock_retry_s: float = 2.0,
    reload_s: float = 2.0,
) -> None:
    """Poll the registry's cameras and publish their status and events until `stop` is set."""
    vault = Vault(secret_key) if secret_key else None
    if vault is None:
        log.warning("IOC_SECRET_KEY is not set: cameras with a stored password cannot be polled")
    publisher = MqttPublisher(mqtt_url)
    publisher.start()
    standby_logged = db_down = False
    try:
        while not stop.is_set():
            try:
                conn = await asyncio.to_thread(_try_lock, db_url)
            except (Unavailable, psycopg.OperationalError) as err:
                if not db_down:
                    log.warning("ONVIF poller: database unavailable: %s", err)
                    db_down = True
                await wait(stop, lock_retry_s)
                continue
            if db_down:
                log.info("ONVIF poller: database reachable again")
                db_down = False
            if conn is None:
                if not standby_logged:
                    log.info("ONVIF poller standing by: another one is active")
                    standby_logged = True
                await wait(stop, lock_retry_s)
                continue
            standby_logged = False
            log.info("ONVIF poller active")
            try:
                await Poller(conn, publisher.publish, vault, tuning or Tuning(), reload_s=reload_s).run(stop)
            except* LockLost as eg:
                log.warning("ONVIF poller lost its database connection (%s); standing by", eg.exceptions[0])
            finally:
                await asyncio.to_thread(conn.close)
    finally:
        await asyncio.to_thread(publisher.stop)


__all__ = ["LOCK_ID", "Tuning", "run_onvif"]
