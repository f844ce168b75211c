"""uvicorn's httptools protocol with a deadline for a request's headers.

uvicorn times out idle keep-alive connections only after a response: a client that connects and
sends nothing, or sends its headers a byte at a time, holds the socket as long as it likes (issue
13). This subclass gives every connection `header_timeout_s` from connecting (and every further
request from its first byte) to finish its headers, then answers 408 and closes. It overrides
four protocol callbacks of uvicorn 0.55; where they are missing it falls back to uvicorn's own
protocol (`"auto"`) and the reverse proxy's `client_header_timeout` is the only guard.
"""

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

_HOOKS = ("connection_made", "connection_lost", "on_message_begin", "on_headers_complete")
_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed
    HttpToolsProtocol = None  # type: ignore[assignment, misc]


def protocol(header_timeout_s: float) -> type[asyncio.Protocol] | str:
    """The protocol class for `uvicorn.run(http=...)`."""
    if HttpToolsProtocol is None or not all(hasattr(HttpToolsProtocol, name) for name in _HOOKS):
        log.warning("uvicorn's protocol has changed: no header deadline (rely on the proxy's)")
        return "auto"

    class HeaderDeadline(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _begun = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._begun = True
            if self._header_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            self._begun = False
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self._begun:
                self.transport.write(_408)
            self.transport.close()

    return HeaderDeadline
