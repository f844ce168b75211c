"""Load shedding: a bounded number of requests served at once, a bounded queue, 503 beyond.

A gateway past its limit answers at once with 503 and Retry-After instead of piling requests onto
its worker threads and database pool (issue 13: 64 concurrent clients used to wedge it for
minutes). /healthz is answered here, before the queue: it needs no thread and no database, so a
load balancer or supervisor sees the process alive under any load.
"""

import logging

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admission import NoSlot, Slots
from gateway.errors import answer

log = logging.getLogger(__name__)

HEALTHZ = "/healthz"
CALM_S = 10.0  # no refusal for this long: the busy spell is over (logged once each way)
_HEALTHY = b'{"status":"ok"}'


class LoadShed:
    """At most `slots.size` HTTP requests in the app at once; up to `slots.queue` more wait up to
    `slots.wait_s` for a place; others are answered 503 with Retry-After, no sooner than
    `refusal_delay_s` after they arrived (waiting costs a timer, not a thread). WebSockets pass
    by (a live feed is one long request, bounded by its own queue)."""

    def __init__(
        self, app: ASGIApp, *, slots: Slots, retry_after_s: int = 1, refusal_delay_s: float = 0.0
    ) -> None:
        self.app = app
        self.slots = slots
        self.retry_after_s = retry_after_s
        self.refusal_delay_s = refusal_delay_s
        self.shed = 0  # answered 503 since the gateway started
        self._shed_since_calm = 0
        self._last_refusal_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == HEALTHZ and scope["method"] in ("GET", "HEAD"):
            await _healthy(send, head=scope["method"] == "HEAD")
            return
        started_at = anyio.current_time()
        try:
            await self.slots.acquire()
        except NoSlot:
            await anyio.sleep(max(0.0, self.refusal_delay_s - (anyio.current_time() - started_at)))
            await self._refuse(scope, receive, send)
            return
        try:
            if self._shed_since_calm and anyio.current_time() - self._last_refusal_at > CALM_S:
                log.info(
                    "load back within limits: %d requests were answered 503 meanwhile", self._shed_since_calm
                )
                self._shed_since_calm = 0
            await self.app(scope, receive, send)
        finally:
            self.slots.release()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._shed_since_calm:
            log.warning(
                "busy: %d requests in progress and %d waiting; answering 503 with Retry-After",
                self.slots.taken,
                self.slots.waiting,
            )
        self.shed += 1
        self._shed_since_calm += 1
        self._last_refusal_at = anyio.current_time()
        message = f"the gateway is busy; retry in {self.retry_after_s} s"
        response = answer(scope["path"], 503, "busy", message, {"Retry-After": str(self.retry_after_s)})
        await response(scope, receive, send)


async def _healthy(send: Send, *, head: bool) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_HEALTHY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else _HEALTHY})
