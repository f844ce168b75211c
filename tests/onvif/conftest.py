"""Helpers for the ONVIF tests: a collecting publisher, quick tuning, a poller against the farm."""

import asyncio
from collections.abc import Callable
from typing import Any

from ingest.onvif.camera import CameraPoller, Target, Tuning
from services.cameras import CameraMedia
from simulator.onvif import CameraFarm

# Short waits so a test sees several polls and pulls in a couple of seconds.
QUICK = Tuning(
    timeout_s=1.0, concurrency=8, pull_wait_s=0.5, subscription_s=60, first_poll_spread_s=0, backoff_max_s=1.0
)
PASSWORD = "s3cret-Pa55word"


class Collector:
    """Stands in for the MQTT publisher: keeps (device_id, channel, payload)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, dict[str, Any]]] = []
        self.media: list[CameraMedia] = []
        self._changed = asyncio.Event()

    def publish(self, commune_id: str, device_id: str, channel: str, payload: dict[str, Any]) -> None:
        self.messages.append((device_id, channel, payload))
        self._changed.set()

    async def save_media(self, media: CameraMedia) -> None:
        self.media.append(media)

    def of(self, device_id: str, channel: str = "status") -> list[dict[str, Any]]:
        return [p for d, c, p in self.messages if d == device_id and c == channel]

    async def wait_for(self, pred: Callable[[], Any], timeout_s: float = 15.0) -> Any:
        async with asyncio.timeout(timeout_s):
            while not (result := pred()):
                self._changed.clear()
                await self._changed.wait()
        return result


def target(farm: CameraFarm, device_id: str, password: str = PASSWORD, poll_s: int = 1) -> Target:
    return Target(
        device_id,
        "thoai-giang",
        farm.host,
        farm.port,
        f"/onvif/{device_id}/device_service",
        "admin",
        poll_s,
        password,
    )


def poller(
    farm: CameraFarm,
    device_id: str,
    out: Collector,
    sem: asyncio.Semaphore | None = None,
    password: str = PASSWORD,
    tuning: Tuning = QUICK,
) -> CameraPoller:
    return CameraPoller(
        target(farm, device_id, password), out.publish, out.save_media, sem or asyncio.Semaphore(8), tuning
    )
