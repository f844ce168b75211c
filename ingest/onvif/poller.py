"""The active poller: camera tasks kept in step with the registry (reloaded within seconds)."""

import asyncio
import logging
import random
from typing import Any

import psycopg

from ingest.onvif.camera import DEFAULT_TUNING, CameraPoller, Publish, Target, Tuning
from services import cameras, registry
from services.cameras import CameraMedia
from services.errors import ConfigError
from services.vault import Vault

log = logging.getLogger(__name__)


# A camera poller that failed unexpectedly is started again after this (doubling up to the max).
RESTART_S = 5.0
RESTART_MAX_S = 300.0


class LockLost(Exception):
    """The dedicated connection that holds the poller lock broke: another poller may take over."""


def load_targets(conn: psycopg.Connection, vault: Vault | None) -> tuple[dict[str, Target], list[str]]:
    """Active cameras with ONVIF settings, with their passwords decrypted (and any problems)."""
    targets: dict[str, Target] = {}
    problems: list[str] = []
    for d in registry.devices(conn):
        if d.kind != "camera" or d.onvif is None:
            continue
        password = None
        if vault is not None:
            try:
                password = registry.camera_password(conn, vault, d.id)
            except ConfigError as err:
                problems.append(f"camera {d.id}: {err.message}")
        elif conn.execute("SELECT onvif_password IS NOT NULL FROM devices WHERE id = %s", (d.id,)).fetchone()[
            0
        ]:  # type: ignore[index]
            problems.append(f"camera {d.id}: its password cannot be read without IOC_SECRET_KEY")
        targets[d.id] = Target.of(d, password)
    return targets, problems


class Poller:
    """Runs one CameraPoller task per camera while `stop` is clear and the lock connection lives."""

    def __init__(
        self,
        conn: psycopg.Connection,
        publish: Publish,
        vault: Vault | None,
        tuning: Tuning = DEFAULT_TUNING,
        *,
        reload_s: float = 2.0,
    ) -> None:
        self.conn, self.publish, self.vault, self.tuning, self.reload_s = (
            conn,
            publish,
            vault,
            tuning,
            reload_s,
        )
        self.sem = asyncio.Semaphore(tuning.concurrency)
        self.targets: dict[str, Target] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.pollers: dict[str, CameraPoller] = {}
        self._version: int | None = None
        self._reported: set[str] = set()

    async def _db(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, self.conn, *args)
        except psycopg.OperationalError as err:
            raise LockLost(
                str(err).strip().splitlines()[0] if str(err).strip() else "connection lost"
            ) from err

    async def save_media(self, media: CameraMedia) -> None:
        try:
            await self._db(cameras.upsert, media)
        except (LockLost, psycopg.Error) as err:
            # The supervisor notices a broken connection on its next check; a camera goes on polling.
            log.warning("camera %s: media not saved: %s", media.device_id, err)

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            try:
                while not stop.is_set():
                    version = await self._db(registry.version)
                    if version != self._version:
                        await self._reload(tg)
                        self._version = version
                    await wait(stop, self.reload_s)
            finally:
                for task in self.tasks.values():
                    task.cancel()

    async def _guarded(self, target: Target) -> None:
        """Polls one camera until cancelled. Its failure must never take the others down with the
        task group, nor end its own polling: the camera gets a fresh poller after a jittered backoff
        (it would otherwise drift to offline unpolled until the registry changed)."""
        backoff = RESTART_S
        while True:
            cp = CameraPoller(target, self.publish, self.save_media, self.sem, self.tuning)
            self.pollers[target.device_id] = cp
            try:
                await cp.run()
                return
            except Exception:
                log.exception(
                    "camera %s: poller failed; starting it again in ~%.0f s", target.device_id, backoff
                )
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, RESTART_MAX_S)

    async def _reload(self, tg: asyncio.TaskGroup) -> None:
        targets, problems = await self._db(load_targets, self.vault)
        for p in problems:
            if p not in self._reported:
                log.warning("%s", p)
                self._reported.add(p)
        for device_id in list(self.tasks):
            if targets.get(device_id) != self.targets.get(device_id):
                self.tasks.pop(device_id).cancel()
                self.pollers.pop(device_id, None)
        for device_id, target in targets.items():
            if device_id not in self.tasks:
                self.tasks[device_id] = tg.create_task(self._guarded(target), name=f"onvif[{device_id}]")
        self.targets = targets
        log.info("ONVIF poller: %d camera(s)", len(targets))


async def wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less when `stop` is set."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
