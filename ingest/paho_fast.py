"""A paho client that reads its socket in large chunks and hands QoS 1 PUBLISHes over lean.

Profiling ingest at full rate (py-spy, 2 cores) showed the paho network thread as the limit,
not the database: per message it made three or four `recv()` calls (command byte, length
bytes, body), each of which drops and re-takes the GIL that the writer thread holds, and
under MQTT 5 it builds a `Properties` object, an `MQTTMessage` and walks the topic matcher.
This subclass changes two private steps of paho 2.2 and nothing of its protocol handling:

- `_sock_recv` serves paho's small reads from a 256 KiB read buffer, refilled by one
  `recv()`; `loop_read` goes on while the buffer holds bytes (paho reads one packet per
  call and would otherwise wait in `select()` with data already in hand);
- at each packet boundary (after a refill, and between packets in `loop_read`) every complete
  QoS 1 PUBLISH at the head of the buffer is taken and passes them, in order, as one list of (topic, payload, mid) to `on_qos1`;
  anything else (CONNACK, SUBACK, PINGRESP, QoS 0/2, a packet cut by the buffer's end, a
  malformed one) goes through paho's own `_packet_read`, whose `_handle_publish` still
  hands QoS 1 over the same way.

`paused()` stops reading while the consumer has enough in hand. Mosquitto 2.0.11 honours our
Receive Maximum only until acknowledgements flow, then sends a persistent session's whole
backlog (measured: 157k unacknowledged with a window of 40k); without the pause a long
backlog would all be held in ingest's memory.

PUBLISH properties are skipped: ingest uses none, and the broker sends no topic aliases
because we announce no Topic Alias Maximum. paho is pinned to 2.2.x for these internals; every
private name is in `ingest.paho_private` (checked at import), none here.
tests/ingest/test_paho_fast.py checks the decoding against paho's own.
"""

import time
from collections.abc import Callable
from typing import Any

from paho.mqtt.enums import MQTTErrorCode

from ingest.paho_private import HookedClient

_CHUNK = 256 * 1024
_PAUSE_S = 0.01
_PUBLISH_QOS1 = 0x30 | 0x02


def read_varint(buf: bytes | bytearray, pos: int) -> tuple[int, int]:
    """(value, position after it) of an MQTT variable byte integer at `pos`.

    IndexError when the buffer ends inside it; ValueError when it is longer than 4 bytes.
    """
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise ValueError("variable byte integer longer than 4 bytes")


def decode_qos1_publish(packet: bytes | bytearray, mqtt5: bool) -> tuple[str, int, bytes]:
    """(topic, mid, payload) of a QoS 1 PUBLISH body (everything after the fixed header)."""
    tlen = (packet[0] << 8) | packet[1]
    pos = 2 + tlen
    topic = packet[2:pos].decode("utf-8", "replace")
    mid = (packet[pos] << 8) | packet[pos + 1]
    pos += 2
    if mqtt5:
        plen, pos = read_varint(packet, pos)
        pos += plen
        if pos > len(packet):
            raise ValueError("properties longer than the packet")
    if len(packet) < pos:
        raise ValueError("PUBLISH shorter than its header")
    return topic, mid, bytes(packet[pos:])


class FastClient(HookedClient):
    """paho.Client with buffered reads and a lean QoS 1 PUBLISH path (see module doc)."""

    def __init__(
        self,
        *args: Any,
        on_qos1: Callable[[list[tuple[str, bytes, int]]], None],
        paused: Callable[[], bool] = lambda: False,
        **kwargs: Any,
    ) -> None:
        self._rbuf = b""
        self._rpos = 0
        self._on_qos1 = on_qos1
        self._paused = paused
        super().__init__(*args, **kwargs)

    def create_socket(self) -> Any:
        self._rbuf, self._rpos = b"", 0
        return _BufferedSocket(super().create_socket(), self)

    def buffered(self) -> int:
        """Bytes read from the socket and not yet handled."""
        return len(self._rbuf) - self._rpos

    def recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super().recv(_CHUNK)  # BlockingIOError when there is nothing
            if not data:
                return data  # connection closed
            self._rbuf, self._rpos = data, 0
            # paho asks for a packet's first byte: take the PUBLISHes before it does.
            if self.at_packet_start() and self._take_publishes() and self._rpos >= len(self._rbuf):
                raise BlockingIOError
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._paused():
            # Leave the bytes in the socket: TCP flow control makes the broker keep the rest.
            # The loop still runs (writes, keepalive), just without reading, for a moment.
            time.sleep(_PAUSE_S)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self.connected_socket()
            and self._rpos < len(self._rbuf)
            and not self._paused()
        ):
            if self.at_packet_start() and self._take_publishes() and self._rpos >= len(self._rbuf):
                break
            rc = super().loop_read(max_packets)
        return rc

    def _take_publishes(self) -> int:
        """Hand over the complete QoS 1 PUBLISHes at the head of the buffer; returns how many."""
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        mqtt5 = self.is_mqtt5()
        out: list[tuple[str, bytes, int]] = []
        while pos < end and buf[pos] & 0xF6 == _PUBLISH_QOS1:
            try:
                rlen, i = read_varint(buf, pos + 1)
                if i + rlen > end:
                    break  # cut by the buffer's end: paho's path reads the rest
                topic, mid, payload = decode_qos1_publish(buf[i : i + rlen], mqtt5)
            except (IndexError, ValueError):
                break  # cut inside the length, or malformed: paho's path reports it
            out.append((topic, payload, mid))
            pos = i + rlen
        if out:
            self._rpos = pos
            self.mark_received()
            self._on_qos1(out)
        return len(out)

    def handle_publish(self) -> MQTTErrorCode:
        if self.packet_command() & 0xF6 != _PUBLISH_QOS1:
            return super().handle_publish()
        try:
            topic, mid, payload = decode_qos1_publish(self.packet_body(), self.is_mqtt5())
        except (IndexError, ValueError):
            return super().handle_publish()  # paho reports the malformed packet its way
        self._on_qos1([(topic, payload, mid)])
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class _BufferedSocket:
    """The socket as paho sees it: paho asks `pending()` before `select()` (meant for TLS
    buffers), so bytes in our read buffer are handled without waiting for the socket."""

    def __init__(self, sock: Any, client: FastClient) -> None:
        self._sock = sock
        self._client = client

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self._client.buffered() + int(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
