"""What a simulated speaker or e-board does with the IOC's commands (SPEC §9).

`play`: report `accepted`, fetch the media over HTTP and check its sha256, report `playing`,
then `done` after its duration (divided by the rate scale). `show` (e-boards): `accepted`,
`playing` while the text is up, `done` after the duration (or a short while). `stop`/`clear`
end what they name. A command of a lower priority than the one playing is `rejected` (busy);
a higher one ends the current one (the IOC sends `stop` first anyway). Now and then a device
fails realistically: a fetch error, or an amplifier fault after accepting.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)

RANK = {"normal": 0, "priority": 1, "emergency": 2}
SHOW_S = 10.0
FETCH_TIMEOUT_S = 10.0


# One HTTP client for every device of the event loop: making one costs tens of milliseconds of
# blocking work (its TLS context), which for a thousand speakers held every answer back seconds.
_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


# Fetches at once from one simulator process: a thousand speakers fetching together would
# measure the simulator's single core (and the gateway's load limit), not the IOC's delivery.
FETCH_CONCURRENCY = 32
FETCH_ATTEMPTS = 6
_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _fetch_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _slots.get(loop)
    if sem is None:
        for old in [lp for lp in _slots if lp.is_closed()]:
            del _slots[old]
        sem = _slots[loop] = asyncio.Semaphore(FETCH_CONCURRENCY)
    return sem


def _http() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        for old in [lp for lp in _clients if lp.is_closed()]:
            del _clients[old]
        client = _clients[loop] = httpx.AsyncClient(
            timeout=FETCH_TIMEOUT_S, limits=httpx.Limits(max_connections=200)
        )
    return client


@dataclass
class _Playing:
    id: str
    broadcast: str
    priority: str
    task: asyncio.Task[None]


class Player:
    """The command handling of one device; `publish(channel, payload)` sends on its topics."""

    def __init__(
        self,
        kind: str,
        rng: random.Random,
        rate_scale: float,
        publish: Callable[[bytes], None],
        fault_p: float = 0.02,
    ) -> None:
        self.kind = kind
        self.rng = rng
        self.rate_scale = rate_scale
        self._publish = publish
        self.fault_p = fault_p
        self.current: _Playing | None = None
        self.results: dict[str, str] = {}  # delivery id -> last status reported
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def playing(self) -> bool:
        return self.current is not None

    def _report(self, delivery_id: str, status: str, reason: str | None = None) -> None:
        self.results[delivery_id] = status
        body: dict[str, Any] = {"id": delivery_id, "status": status}
        if reason:
            body["reason"] = reason
        self._publish(orjson.dumps(body))

    def on_cmd(self, payload: bytes) -> None:
        """One `cmd` message (from the device's MQTT callback, on the event loop)."""
        try:
            cmd = orjson.loads(payload)
            kind, delivery_id = cmd["type"], str(cmd["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("a command the device does not understand: %r", payload[:200])
            return
        if kind in ("stop", "clear"):
            if self.current is not None and self.current.id == delivery_id:
                self.current.task.cancel()
                self.current = None
            return
        if kind not in ("play", "show"):
            return
        if self.current is not None and self.current.id == delivery_id:
            return  # sent again (we came back): it is playing already
        if delivery_id in self.results and self.results[delivery_id] in ("done", "failed", "rejected"):
            self._report(delivery_id, self.results[delivery_id])  # the answer was lost: say it again
            return
        priority = cmd.get("priority", "normal")
        if self.current is not None:
            if RANK.get(self.current.priority, 0) >= RANK.get(priority, 0):
                self._report(delivery_id, "rejected", f"busy: playing broadcast {self.current.broadcast}")
                return
            self.current.task.cancel()
        task = asyncio.get_running_loop().create_task(self._play(cmd), name=f"player[{delivery_id}]")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.current = _Playing(delivery_id, str(cmd.get("broadcast", "")), priority, task)

    async def _play(self, cmd: dict[str, Any]) -> None:
        delivery_id = str(cmd["id"])
        try:
            self._report(delivery_id, "accepted")
            await asyncio.sleep(0)  # the answer leaves before the fetch begins
            if cmd["type"] == "play":
                try:
                    await self._fetch(str(cmd.get("media_url", "")), str(cmd.get("sha256", "")))
                except (httpx.HTTPError, ValueError) as err:
                    self._report(delivery_id, "failed", f"fetch error: {err}"[:200])
                    return
                if self.rng.random() < self.fault_p:
                    self._report(delivery_id, "failed", "amplifier fault")
                    return
            self._report(delivery_id, "playing")
            length = float(cmd.get("duration_s") or SHOW_S)
            await asyncio.sleep(length / self.rate_scale)
            self._report(delivery_id, "done")
        finally:
            if self.current is not None and self.current.id == delivery_id:
                self.current = None

    async def _fetch(self, url: str, sha256: str) -> None:
        # Firmware retries a busy server (503 with Retry-After) a few times, as it would a bad link.
        for attempt in range(FETCH_ATTEMPTS):
            async with _fetch_slots():
                r = await _http().get(url)
            if r.status_code != 503 or attempt == FETCH_ATTEMPTS - 1:
                break
            wait = float(r.headers.get("retry-after", "1") or 1)
            await asyncio.sleep(wait * self.rng.uniform(0.5, 1.5))
        r.raise_for_status()
        if hashlib.sha256(r.content).hexdigest() != sha256:
            raise ValueError("the media's sha256 is not the command's")

    def close(self) -> None:
        """Power cut: whatever played stops, unreported."""
        for t in list(self._tasks):
            t.cancel()
        self.current = None
