"""Request bodies: a size limit by path (413) and a deadline for slow bodies (408).

An unauthenticated 400 MB sign-in once took the gateway from 117 MB to 1.28 GB, and a client
sending a body byte by byte held a socket (and a request slot) for as long as it liked (issue 13).
A Content-Length over the limit is refused before a byte is read; a chunked body is counted as it
arrives. A body must arrive within `timeout_s` plus one second per `min_bps` bytes received.
Bodies up to `buffer_max` are read here, before the request takes one of the places the load
limit counts (gateway.load_shed), so a slow sender holds only its socket; larger ones (audio
uploads) stream through, counted and timed the same way. Refusals close the connection, so the
rest of an unread body cannot keep it open.
"""

import time
from collections.abc import Callable

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import answer

BUFFER_MAX = 1024 * 1024
_NO_BODY = ("GET", "HEAD", "OPTIONS")


class BodyRefused(HTTPException):
    """The body broke a limit (408 or 413). An HTTPException, so that a route reading a streamed
    body passes it on to the gateway's error handlers instead of calling it a malformed body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status_code=status, detail=message)
        self.status = status
        self.message = message


class BodyGuard:
    """Applies `max_bytes` (or the limit of the longest matching prefix in `by_path`) and the
    body deadline to every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        by_path: dict[str, int],
        timeout_s: float,
        notes: dict[str, str] | None = None,
        min_bps: int,
        buffer_max: int = BUFFER_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.by_path = sorted(by_path.items(), key=lambda item: -len(item[0]))
        # A path's own 413 sentence (the upload path names its setting), by prefix.
        self.notes = notes or {}
        self.timeout_s = timeout_s
        self.min_bps = max(1, min_bps)
        self.buffer_max = buffer_max
        self.clock = clock

    def limit(self, path: str) -> int:
        return next((n for prefix, n in self.by_path if path.startswith(prefix)), self.max_bytes)

    def too_large(self, path: str) -> str:
        note = next((n for prefix, n in self.notes.items() if path.startswith(prefix)), None)
        return note or _too_large(self.limit(path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length_header = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length_header is None and not chunked:
            await self.app(scope, receive, send)  # no body (uvicorn hands the app an empty one)
            return
        limit = self.limit(scope["path"])
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            length = None
        if length is not None and length > limit:
            await _refuse(scope, receive, send, BodyRefused(413, self.too_large(scope["path"])))
            return
        reader = _Reader(
            receive, limit, self.timeout_s, self.min_bps, self.clock, self.too_large(scope["path"])
        )
        if limit <= self.buffer_max or scope["method"] in _NO_BODY:
            try:
                messages = await reader.read_all()
            except BodyRefused as refused:
                await _refuse(scope, receive, send, refused)
                return

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            await self.app(scope, replay, send)
            return
        await self._stream(scope, reader, send)

    async def _stream(self, scope: Scope, reader: "_Reader", send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if reader.refused:
                    # The route answered the refusal it got from receive(); the unread rest of the
                    # body must not keep the connection open.
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, reader.receive, tracking_send)
        except BodyRefused as refused:
            if started:
                raise
            await _refuse(scope, reader.receive, send, refused)


class _Reader:
    def __init__(
        self,
        receive: Receive,
        limit: int,
        timeout_s: float,
        min_bps: int,
        clock: Callable[[], float],
        too_large: str,
    ) -> None:
        self._receive = receive
        self.limit = limit
        self.too_large = too_large
        self.timeout_s = timeout_s
        self.min_bps = min_bps
        self.clock = clock
        self.started_at = clock()
        self.received = 0
        self.done = False
        self.refused = False

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()
        deadline = self.started_at + self.timeout_s + self.received / self.min_bps
        with anyio.move_on_after(max(0.0, deadline - self.clock())) as waited:
            message = await self._receive()
        if waited.cancelled_caught:
            self.refused = True
            raise BodyRefused(
                408, f"the request body did not arrive in time ({self.received} bytes received)"
            )
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.refused = True
                raise BodyRefused(413, self.too_large)
            self.done = not message.get("more_body", False)
        else:
            self.done = True  # http.disconnect
        return message

    async def read_all(self) -> list[Message]:
        messages = [await self.receive()]
        while not self.done:
            messages.append(await self.receive())
        # One message: routes read it whole.
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        last = messages[-1]
        if last["type"] != "http.request":
            return [last]
        return [{"type": "http.request", "body": body, "more_body": False}]


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


async def _refuse(scope: Scope, receive: Receive, send: Send, refused: BodyRefused) -> None:
    code = "too_large" if refused.status == 413 else "request_timeout"
    response = answer(scope["path"], refused.status, code, refused.message, {"Connection": "close"})
    await response(scope, receive, send)
