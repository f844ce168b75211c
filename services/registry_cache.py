"""The registry as a running process sees it: reloaded when `registry_version` moves."""

import logging
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from services import registry
from services.models import Device
from services.sources import profiles as source_profiles
from services.sources import store as source_store
from services.sources.model import Broker
from services.sources.profiles import Profile

log = logging.getLogger(__name__)
FROM_ENV: Any = object()

REFRESH_S = 2.0


class RegistryCache:
    """Active devices by id; `refresh_if_due` checks the version at most every REFRESH_S."""

    def __init__(self, profiles_dir: Path | None = FROM_ENV) -> None:
        self.devices: dict[str, Device] = {}
        # vendor sources: brokers other than the IOC's own, and the profiles in effect (shipped <
        # IOC_PROFILES_DIR < registry), reloaded with the devices
        self.brokers: dict[str, Broker] = {}
        self.profiles: dict[str, Profile] = {}
        self._profiles_dir = source_profiles.env_dir() if profiles_dir is FROM_ENV else profiles_dir
        self.version = -1
        self._checked = 0.0
        self._lock = threading.Lock()

    def refresh_if_due(self, conn: psycopg.Connection, force: bool = False) -> bool:
        """Reload if the registry changed; returns True when it did."""
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_S:
            return False
        with self._lock:
            self._checked = now
            v = registry.version(conn)
            if v == self.version:
                conn.rollback()
                return False
            devices = {d.id: d for d in registry.devices(conn)}
            brokers, profiles = self._sources(conn, devices)
            conn.rollback()
            self.devices, self.version = devices, v
            self.brokers, self.profiles = brokers, profiles
            return True

    def _sources(
        self, conn: psycopg.Connection, devices: dict[str, Device]
    ) -> tuple[dict[str, Broker], dict[str, Profile]]:
        if not any(d.source is not None for d in devices.values()):
            return {}, {}
        try:
            base = source_profiles.catalogue(self._profiles_dir)
        except source_profiles.ProfileError as err:
            # a bad file in IOC_PROFILES_DIR must not stop ingest: shipped profiles stay in use
            log.error("IOC_PROFILES_DIR: %s; using the shipped profiles", err)
            base = source_profiles.shipped()
        return source_store.brokers(conn), source_profiles.effective(
            base, source_store.registry_profiles(conn)
        )
