"""A bounded number of slots with a bounded, first-come queue, waited for on the event loop.

The gateway's requests wait here (for a place among the requests it serves at once, or for one of
its database connections) instead of in a worker thread: a thread that blocks waiting for a
connection is a thread the request holding that connection may need to finish.
"""

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio


class NoSlot(Exception):
    """No slot was free within the wait, or the queue was full."""


@dataclass
class Slots:
    """`size` holders at once; up to `queue` more wait, each at most `wait_s`."""

    size: int
    queue: int
    wait_s: float
    taken: int = 0
    # One event per waiter: set means the releasing holder handed its slot over.
    _waiters: deque[anyio.Event] = field(default_factory=deque)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        """Take a slot, waiting up to `wait_s`; NoSlot when none came or the queue is full."""
        if self.taken < self.size and not self._waiters:
            self.taken += 1
            return
        if len(self._waiters) >= self.queue or self.wait_s <= 0:
            raise NoSlot
        event = anyio.Event()
        self._waiters.append(event)
        try:
            with anyio.move_on_after(self.wait_s):
                await event.wait()
        except BaseException:
            # Cancelled (the client went away): a slot handed over at that moment is passed on.
            if event.is_set():
                self.release()
            else:
                self._waiters.remove(event)
            raise
        if not event.is_set():
            self._waiters.remove(event)
            raise NoSlot

    def release(self) -> None:
        """Give the slot back, to the first waiter if there is one."""
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self.taken -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()
