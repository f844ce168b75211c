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

    def publish(
        self,
        messages: Sequence[tuple[str, bytes]],
        rate: float | None = None,
        on_sent: Callable[[int, float], None] | None = None,
    ) -> float:
        """Publish all messages (at `rate` per second if given); returns when the last is acked.

        `on_sent(i, perf_counter)` is called as message i leaves (rate-limited mode only).
        """
        base = self.acked
        chunk: list[bytes] = []
        t0 = time.perf_counter()
        for i, (topic, payload) in enumerate(messages):
            if i - (self.acked - base) >= self.window:
                self._flush(chunk)
                with self._cond:
                    self._cond.wait_for(lambda i=i: i - (self.acked - base) < self.window, timeout=60)  # type: ignore[misc]
            chunk.append(publish_packet(topic, payload, (base + i) % 65535 + 1))
            if rate is not None:
                self._flush(chunk)
                if on_sent is not None:
                    on_sent(i, time.perf_counter())
                delay = t0 + (i + 1) / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            elif len(chunk) >= 500:
                self._flush(chunk)
        self._flush(chunk)
        with self._cond:
            if not self._cond.wait_for(lambda: self.acked - base >= len(messages), timeout=600):
                raise RuntimeError(f"only {self.acked - base} of {len(messages)} publishes acknowledged")
        return time.perf_counter()

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
