"""One simulated device's MQTT connection: a paho client driven by the asyncio loop.

paho's external-loop callbacks (socket open/close, register write) let one event loop serve
thousands of device connections without a thread each, while every device keeps its own
session and its own last will, as a real device would.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Broker:
        u = urlsplit(url)
        if u.scheme != "mqtt":
            raise ValueError(f"the simulator speaks plain mqtt://, not {u.scheme}://")
        return cls(
            u.hostname or "127.0.0.1",
            u.port or 1883,
            unquote(u.username) if u.username else None,
            unquote(u.password) if u.password else None,
        )


class LinkError(Exception):
    """The broker could not be reached or refused the device."""


class Link:
    """An MQTT 3.1.1 session with a retained last will, published through the running loop."""

    def __init__(
        self,
        broker: Broker,
        client_id: str,
        will_topic: str,
        *,
        keepalive_s: int = 60,
        will_payload: bytes = b"offline",
        username: str | None = None,
        password: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self._on_close_cb = on_close
        self.keepalive_s = keepalive_s
        self._loop = asyncio.get_running_loop()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
        self._client.will_set(will_topic, will_payload, qos=1, retain=True)
        user = username if username is not None else broker.username
        if user is not None:
            self._client.username_pw_set(user, password if username is not None else broker.password)
        self._client.on_socket_open = self._on_open
        self._client.on_socket_close = self._on_close
        self._client.on_socket_register_write = self._on_register_write
        self._client.on_socket_unregister_write = self._on_unregister_write
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._connack: asyncio.Future[int] | None = None
        self.closed = asyncio.Event()
        self.connected = False

    # paho callbacks, all called from the event loop's thread
    def _on_open(self, client: mqtt.Client, _ud: object, sock: Any) -> None:
        self._loop.add_reader(sock, client.loop_read)

    def _on_close(self, _client: mqtt.Client, _ud: object, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _on_register_write(self, client: mqtt.Client, _ud: object, sock: Any) -> None:
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _client: mqtt.Client, _ud: object, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _on_connect(self, _c: mqtt.Client, _ud: object, _flags: object, rc: object, _p: object) -> None:
        code = int(getattr(rc, "value", rc))  # type: ignore[call-overload]
        if code == 0:
            self.connected = True
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(code)

    def _on_disconnect(self, _c: mqtt.Client, _ud: object, _flags: object, _rc: object, _p: object) -> None:
        self.connected = False
        self.closed.set()
        if self._on_close_cb is not None:
            self._on_close_cb()
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(-1)

    async def connect(self, timeout_s: float = 10) -> None:
        """TCP connect and wait for CONNACK."""
        self._connack = self._loop.create_future()
        try:
            # A blocking TCP connect; brokers for simulations are on loopback or the LAN.
            self._client.connect(self.broker.host, self.broker.port, keepalive=self.keepalive_s)
        except OSError as err:
            raise LinkError(f"cannot reach {self.broker.host}:{self.broker.port}: {err}") from err
        try:
            async with asyncio.timeout(timeout_s):
                code = await self._connack
        except TimeoutError as err:
            self.abort()
            raise LinkError("no CONNACK from the broker") from err
        if code != 0:
            self.abort()
            raise LinkError(f"broker refused the connection (code {code})")

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        if self.connected:
            self._client.publish(topic, payload, qos=1, retain=retain)

    def subscribe(self, topic: str, on_message: Callable[[bytes], None]) -> None:
        """Receive the payloads of `topic` (QoS 1) for as long as this session lasts."""
        self._client.on_message = lambda _c, _u, m: on_message(bytes(m.payload))
        self._client.subscribe(topic, qos=1)

    def misc(self) -> None:
        """Keepalive pings and timeouts; call about once a second."""
        if self._client.socket() is not None:
            self._client.loop_misc()

    def abort(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a power cut or crash would:
        the broker publishes the last will."""
        sock: Any = self._client.socket()
        self.connected = False
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            # paho reads EOF on the next loop turn, closes its side and calls on_disconnect.
        else:
            self.closed.set()

    async def close(self, timeout_s: float = 3) -> None:
        """A clean goodbye: DISCONNECT, so the broker drops the will."""
        if self._client.socket() is None:
            return
        self._client.disconnect()
        try:
            async with asyncio.timeout(timeout_s):
                await self.closed.wait()
        except TimeoutError:
            self.abort()
