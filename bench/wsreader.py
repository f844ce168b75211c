"""A lean WebSocket reader for benchmarks: many live-feed clients in one process, cheaply.

The websockets library spent about a core of this 2-core machine receiving 2,000 msg/s for five
clients (a task and a timer per frame, UTF-8 checks, a queue hand-off): the measuring instrument
took the CPU the system under test needed. This reader is an asyncio Protocol that parses the
server's frames straight from the socket (RFC 6455: server frames are never masked), answers
pings, inflates permessage-deflate (RFC 7692) when the server agreed to it, and hands each whole
message to a callback with the time its last bytes arrived. It only reads: it sends nothing but
pongs and a close.
"""

import asyncio
import base64
import os
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

# (message bytes, receive time) -> None
OnMessage = Callable[[bytes, float], None]
_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.2: removed by the sender, put back before inflating


class Reader(asyncio.Protocol):
    """One client connection; `closed` resolves with the close code (1006 without a close frame)."""

    def __init__(self, on_message: OnMessage, deflate: bool) -> None:
        self.on_message = on_message
        self.offered_deflate = deflate
        self.inflate: zlib._Decompress | None = None
        self.buf = bytearray()
        self.open = False
        self.parts: list[bytes] = []
        self.compressed = False
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(1006)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buf += data
        if not self.open and not self._handshake():
            return
        while self._frame(now):
            pass

    def _handshake(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        status = head.split("\r\n", 1)[0]
        if " 101 " not in status + " ":
            self.opened.set_exception(ConnectionError(f"handshake refused: {status}"))
            assert self.transport is not None
            self.transport.close()
            return False
        extensions = [
            line.split(":", 1)[1].lower()
            for line in head.split("\r\n")[1:]
            if line.lower().startswith("sec-websocket-extensions:")
        ]
        if self.offered_deflate and any("permessage-deflate" in e for e in extensions):
            self.inflate = zlib.decompressobj(-15)
        self.open = True
        self.opened.set_result(None)
        return True

    def _frame(self, now: float) -> bool:
        buf = self.buf
        if len(buf) < 2:
            return False
        b0, n = buf[0], buf[1] & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return False
            n, pos = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return False
            n, pos = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < pos + n:
            return False
        payload = bytes(buf[pos : pos + n])
        del buf[: pos + n]
        opcode = b0 & 0x0F
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self.closed.done():
                self.closed.set_result(code)
            self._send(0x8, payload[:2])
            assert self.transport is not None
            self.transport.close()
            return False
        if opcode == 0x9:
            self._send(0xA, payload)
            return True
        if opcode in (0x1, 0x2):
            self.parts = [payload]
            self.compressed = bool(b0 & 0x40)
        elif opcode == 0x0:
            self.parts.append(payload)
        else:  # pong or reserved: nothing to do
            return True
        if b0 & 0x80:
            message = b"".join(self.parts)
            self.parts = []
            if self.compressed and self.inflate is not None:
                message = self.inflate.decompress(message + _TAIL)
            self.on_message(message, now)
        return True

    def _send(self, opcode: int, payload: bytes) -> None:
        # Client frames must be masked (RFC 6455 §5.3); control payloads are under 126 bytes.
        assert self.transport is not None and len(payload) < 126
        if self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def connect(
    url: str, headers: dict[str, str], on_message: OnMessage, *, deflate: bool = False
) -> Reader:
    """Open `ws://host:port/path?query` and return the reader once the handshake is done."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    _, reader = await loop.create_connection(lambda: Reader(on_message, deflate), host, port)
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
        *(["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"] if deflate else []),
    ]
    assert reader.transport is not None
    reader.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await reader.opened
    return reader
