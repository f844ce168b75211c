"""A QoS 1 MQTT publisher fast enough not to be what a benchmark measures.

paho publishes about 5,000 QoS 1 messages/s on this machine, a quarter of what ingest
consumes, so a benchmark driven by it measures paho. This one speaks just enough MQTT 3.1.1
over a plain socket: CONNECT, pre-encoded PUBLISH packets written in large chunks, and a
reader thread counting PUBACKs. A packet id is reused only after the broker acknowledged
it (at most `window` messages outstanding), so every message is delivered exactly as a
real client's would be. `mosquitto_pub -l` cannot stand in: it sends all lines to one topic.
"""

import socket
import threading
import time
from collections.abc import Callable, Sequence

_CONNACK_OK = b"\x20\x02\x00\x00"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    body = _utf8(topic) + mid.to_bytes(2, "big") + payload
    return b"\x32" + _varint(len(body)) + body


class FastPublisher:
    """Connect, publish QoS 1 as fast as the broker acknowledges, disconnect."""

    def __init__(self, mqtt_url: str, client_id: str = "bench-fastpub", window: int = 20_000) -> None:
        host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
        self.window = window
        self._sock = socket.create_connection((host, int(port)))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        var = _utf8("MQTT") + b"\x04\x02\x00\x3c"  # level 4, clean session, keepalive 60 s
        body = var + _utf8(client_id)
        self._sock.sendall(b"\x10" + _varint(len(body)) + body)
        if self._recv_exact(4) != _CONNACK_OK:
            raise RuntimeError("broker refused the benchmark publisher")
        self.sent = 0
        self.acked = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return buf

    def _read_acks(self) -> None:
        rest = b""
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            data = rest + data
            n = len(data) // 4  # PUBACK is 4 bytes: 0x40 0x02 mid mid
            rest = data[n * 4 :]
            if n:
                with self._cond:
                    self.acked += n
                    self._cond.notify_all()

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> float:
        """Publish all messages as fast as the broker takes them; returns when the last is acked."""
        chunk: list[bytes] = []
        for topic, payload in messages:
            if self.sent - self.acked >= self.window:
                self._flush(chunk)
                self._wait(lambda: self.sent - self.acked < self.window)
            chunk.append(publish_packet(topic, payload, self.sent % 65535 + 1))
            self.sent += 1
            if len(chunk) >= 500:
                self._flush(chunk)
        self._flush(chunk)
        return self.wait_acked()

    def send(self, topic: str, payload: bytes) -> None:
        """Publish one message now (for paced publishing)."""
        if self.sent - self.acked >= self.window:
            self._wait(lambda: self.sent - self.acked < self.window)
        self._sock.sendall(publish_packet(topic, payload, self.sent % 65535 + 1))
        self.sent += 1

    def wait_acked(self, timeout: float = 600) -> float:
        """Wait until every message sent is acknowledged; returns the time it was."""
        if not self._wait(lambda: self.acked >= self.sent, timeout):
            raise RuntimeError(f"only {self.acked} of {self.sent} publishes acknowledged")
        return time.perf_counter()

    def _wait(self, done: Callable[[], bool], timeout: float = 60) -> bool:
        with self._cond:
            return self._cond.wait_for(done, timeout=timeout)

    def _flush(self, chunk: list[bytes]) -> None:
        if chunk:
            self._sock.sendall(b"".join(chunk))
            chunk.clear()

    def close(self) -> None:
        try:
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self._sock.close()

    def __enter__(self) -> "FastPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
