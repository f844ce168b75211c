"""Vendor MQTT sources in `ioc ingest` (SPEC §8): one bridge per broker per deployment.

Each broker that has devices (the IOC's own one too, for devices that publish their vendor's
topics to it) gets a bridge in exactly one running ingest: a PostgreSQL advisory lock per broker,
held on a dedicated connection, as the ONVIF poller does. One per deployment, not per process,
because the bridge's session on the vendor broker is persistent under a stable client id: two
processes with one client id would take the session from each other, and two with different ids
would both receive, and republish, every message. The others stand by; when the holder dies its
connection (and lock) goes, and a survivor takes the broker over within a cycle, resuming the
same session, so what the vendor broker queued meanwhile is delivered to it.

Every cycle the active bridge reports its broker's health (`process_health`, kind `source`):
the liveness sweep freezes the states of a lost broker's devices and the alert engine raises
one `source_lost` alert.
"""

import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ingest.sources.bridge import VendorBridge
from ingest.sources.publish import IocPublisher
from services.db import connect, first_line
from services.errors import Unavailable
from services.mqtt_url import parse as parse_mqtt_url
from services.registry_cache import FROM_ENV, RegistryCache
from services.sources import IOC_BROKER, MqttSource
from services.sources import store as source_store
from services.sources.model import Broker
from services.sources.vendor import routes
from services.vault import Vault

log = logging.getLogger(__name__)

# Any value unique to this purpose, with hashtext(broker id) as the second key.
LOCK_CLASS = 0x10C_0012
CYCLE_S = 2.0


def own_broker(mqtt_url: str) -> tuple[Broker, str | None]:
    """The IOC's own broker as a source (devices publishing their vendor's topics to it)."""
    t = parse_mqtt_url(mqtt_url)
    scheme = "mqtts" if t.tls else "mqtt"
    return Broker(IOC_BROKER, f"{scheme}://{t.host}:{t.port}", "ioc-bridge-ioc", t.username), t.password


@dataclass
class _Active:
    bridge: VendorBridge
    lock_conn: psycopg.Connection
    config: tuple[Broker, bytes | None]
    version: int = -1


class SourceBridges:
    """The bridges this process holds; `run(stop)` until `stop` is set (a worker of `ioc ingest`)."""

    def __init__(
        self,
        db_url: str,
        mqtt_url: str,
        secret_key: str | None,
        *,
        profiles_dir: Path | None = FROM_ENV,
        cycle_s: float = CYCLE_S,
        name: str | None = None,
    ) -> None:
        self._db_url = db_url
        self._mqtt_url = mqtt_url
        self._vault = Vault(secret_key) if secret_key else None
        self._cycle_s = cycle_s
        self._name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.registry = RegistryCache(profiles_dir)
        self.active: dict[str, _Active] = {}
        self._conn: psycopg.Connection | None = None
        self._publisher: IocPublisher | None = None
        self._standby_logged: set[str] = set()
        self._missing_logged: set[tuple[str, str]] = set()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.cycle()
                stop.wait(self._cycle_s)
        finally:
            self.close()

    def close(self) -> None:
        for bid in list(self.active):
            self._release(bid)
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- one cycle -----------------------------------------------------------------------

    def cycle(self) -> None:
        for bid, a in self.active.items():
            if a.bridge.failure is not None:
                raise RuntimeError(f"the bridge of broker {bid} failed") from a.bridge.failure
        try:
            conn = self._db()
            self.registry.refresh_if_due(conn, force=True)
            wanted = self._wanted(conn)
            conn.commit()
        except (psycopg.Error, Unavailable) as err:
            log.warning("sources: database unavailable: %s", first_line(err))
            self._reset_db()
            return
        for bid in [b for b in self.active if b not in wanted or self.active[b].config != wanted[b]]:
            self._release(bid)
        for bid, config in wanted.items():
            if bid not in self.active:
                self._acquire(bid, config)
        for bid in list(self.active):
            a = self.active[bid]
            if not self._holds(a):
                log.warning("bridge %s lost its database lock; standing by", bid)
                self._release(bid)
                continue
            if a.version != self.registry.version:
                self._routes(bid, a)
        self._report()

    def _wanted(self, conn: psycopg.Connection) -> dict[str, tuple[Broker, bytes | None]]:
        """Brokers with devices, and their stored password (still encrypted: a changed one restarts
        the bridge; it is decrypted when a bridge starts)."""
        ids = {d.source_broker for d in self.registry.devices.values() if isinstance(d.source, MqttSource)}
        out: dict[str, tuple[Broker, bytes | None]] = {}
        for bid in sorted(i for i in ids if i is not None):
            if bid == IOC_BROKER:
                out[bid] = (own_broker(self._mqtt_url)[0], None)
            elif bid in self.registry.brokers:
                out[bid] = (self.registry.brokers[bid], source_store.broker_secret(conn, bid))
        return out

    def _routes(self, bid: str, a: _Active) -> None:
        devices = self.registry.devices.values()
        for d in devices:
            src = d.source
            if (
                isinstance(src, MqttSource)
                and src.broker_id == bid
                and src.profile not in self.registry.profiles
            ):
                if (d.id, src.profile) not in self._missing_logged:
                    log.error(
                        "device %s: profile %s is not known (removed from IOC_PROFILES_DIR?)",
                        d.id,
                        src.profile,
                    )
                    self._missing_logged.add((d.id, src.profile))
        a.bridge.set_routes(routes(devices, self.registry.profiles, bid))
        a.version = self.registry.version

    def _acquire(self, bid: str, config: tuple[Broker, bytes | None]) -> None:
        try:
            conn = connect(self._db_url, autocommit=True, name=f"ioc-bridge-lock-{bid}")
        except (psycopg.Error, Unavailable) as err:
            log.warning("sources: database unavailable: %s", first_line(err))
            return
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, bid)).fetchone()
        except psycopg.Error as err:
            log.warning("sources: cannot take the lock of broker %s: %s", bid, first_line(err))
            conn.close()
            return
        if not (row and row[0]):
            conn.close()
            if bid not in self._standby_logged:
                log.info("bridge %s standing by: another ingest runs it", bid)
                self._standby_logged.add(bid)
            return
        self._standby_logged.discard(bid)
        broker, token = config
        password = self._password(bid, token)
        bridge = VendorBridge(broker, password, self._ioc(), self._db_url)
        a = _Active(bridge, conn, config)
        self._routes(bid, a)
        bridge.start()
        self.active[bid] = a
        log.info("bridge %s active (%s:%s as %s)", bid, broker.host, broker.port, broker.client_id)

    def _release(self, bid: str) -> None:
        a = self.active.pop(bid)
        a.bridge.close()
        a.lock_conn.close()

    def _password(self, bid: str, token: bytes | None) -> str | None:
        if bid == IOC_BROKER:
            return own_broker(self._mqtt_url)[1]
        if token is None:
            return None
        if self._vault is None:
            log.error(
                "broker %s has a stored password but IOC_SECRET_KEY is not set: connecting without", bid
            )
            return None
        return self._vault.decrypt(token)

    @staticmethod
    def _holds(a: _Active) -> bool:
        try:
            a.lock_conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _report(self) -> None:
        if not self.active:
            return
        try:
            conn = self._db()
            for bid, a in self.active.items():
                source_store.report(
                    conn, bid, a.bridge.listening_since, a.bridge.error, refused=a.bridge.refused
                )
            conn.commit()
        except (psycopg.Error, Unavailable) as err:
            log.warning("sources: cannot report broker health: %s", first_line(err))
            self._reset_db()

    # -- connections ---------------------------------------------------------------------

    def _ioc(self) -> IocPublisher:
        if self._publisher is None:
            self._publisher = IocPublisher(self._mqtt_url, f"ioc-bridge-pub-{self._name}")
            self._publisher.start()
        return self._publisher

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._db_url, name="ioc-sources")
        return self._conn

    def _reset_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None


__all__ = ["LOCK_CLASS", "SourceBridges", "own_broker"]
