"""The registry as a running process sees it: reloaded when `registry_version` moves."""

import threading
import time

import psycopg

from services import registry
from services.models import Device

REFRESH_S = 2.0


class RegistryCache:
    """Active devices by id; `refresh_if_due` checks the version at most every REFRESH_S."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
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
            conn.rollback()
            self.devices, self.version = devices, v
            return True
