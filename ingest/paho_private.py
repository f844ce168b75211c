"""Every private name of paho-mqtt that ingest uses, in one place, checked at import.

The fast path (`ingest.paho_fast`) replaces three private steps of paho 2.2 and reads a little of
its state; `ack_all` queues ready-made bytes. None of that is paho's API: a paho release may
rename or reshape any of it. So this module names each one, checks at import that the methods
exist with the parameters we call them with, and checks a client's attributes when one is built;
a mismatch is one clear error naming the installed paho version, never a misbehaving ingest.
With `IOC_INGEST_FAST=false` ingest uses plain `paho.Client` and none of this.
"""

import inspect
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import __version__ as PAHO_VERSION
from paho.mqtt.enums import MQTTErrorCode

# name -> the parameters (after self) we call it with, as paho 2.2 declares them
_METHODS: dict[str, tuple[str, ...]] = {
    "_sock_recv": ("bufsize",),
    "_create_socket": (),
    "_handle_publish": (),
    "_packet_queue": ("command", "packet", "mid", "qos", "info"),
}
# attributes a client has after __init__, and the keys of the packet being read
_ATTRIBUTES = ("_in_packet", "_msgtime_mutex", "_last_bytes_received", "_protocol", "_sock")
_IN_PACKET_KEYS = ("command", "packet")


class PahoMismatch(RuntimeError):
    """The installed paho does not have the internals the fast path was written for."""


def _fail(what: str) -> PahoMismatch:
    return PahoMismatch(
        f"paho-mqtt {PAHO_VERSION}: {what}; ingest's fast path is written for paho 2.2 internals"
        " (set IOC_INGEST_FAST=false to use plain paho)"
    )


def _check_methods() -> None:
    for name, params in _METHODS.items():
        method = getattr(paho.Client, name, None)
        if not callable(method):
            raise _fail(f"paho.Client.{name} is missing")
        got = tuple(inspect.signature(method).parameters)[1:]
        if got != params:
            raise _fail(f"paho.Client.{name}{got} does not take {params}")
    if not callable(getattr(paho, "time_func", None)):
        raise _fail("paho.mqtt.client.time_func is missing")
    # Behaviour, not a name: paho's loop asks the socket for `pending()` bytes (meant for TLS)
    # before select(); the fast path's buffered socket answers with what it holds.
    try:
        loop_source = inspect.getsource(paho.Client._loop)  # noqa: SLF001
    except (OSError, TypeError):
        return  # no source to read (a frozen install): the tests cover it
    if ".pending()" not in loop_source:
        raise _fail("paho.Client._loop no longer asks the socket for pending() bytes")


def check_client(client: paho.Client) -> None:
    """The attributes the fast path reads, on a constructed client."""
    for name in _ATTRIBUTES:
        if not hasattr(client, name):
            raise _fail(f"a client has no attribute {name}")
    in_packet = client._in_packet  # noqa: SLF001
    if not isinstance(in_packet, dict) or any(k not in in_packet for k in _IN_PACKET_KEYS):
        raise _fail(f"the packet being read is not a dict with {_IN_PACKET_KEYS}")


_check_methods()


class HookedClient(paho.Client):
    """paho.Client whose private steps a subclass replaces under names of our own.

    `recv`, `create_socket` and `handle_publish` default to paho's own steps; the accessors
    below are the only reads of paho's state.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_client(self)

    # -- the replaced steps ----------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        return self.recv(bufsize)

    def _create_socket(self) -> Any:
        return self.create_socket()

    def _handle_publish(self) -> MQTTErrorCode:
        return self.handle_publish()

    def recv(self, bufsize: int) -> bytes:
        """Up to `bufsize` bytes from the socket (BlockingIOError when there are none)."""
        return super()._sock_recv(bufsize)

    def create_socket(self) -> Any:
        """A new connected socket (or TLS wrapper) for a (re)connect."""
        return super()._create_socket()

    def handle_publish(self) -> MQTTErrorCode:
        """Handle the PUBLISH packet just read (`packet_body()`)."""
        return super()._handle_publish()

    # -- paho's state ----------------------------------------------------------------------

    def at_packet_start(self) -> bool:
        """Whether paho is between packets (its next read is a packet's first byte)."""
        return bool(self._in_packet["command"] == 0)

    def packet_command(self) -> int:
        """The first byte of the packet being handled."""
        return int(self._in_packet["command"])

    def packet_body(self) -> bytes | bytearray:
        """The packet being handled, after its fixed header."""
        return self._in_packet["packet"]  # type: ignore[no-any-return]

    def is_mqtt5(self) -> bool:
        return bool(self._protocol == paho.MQTTv5)

    def connected_socket(self) -> bool:
        return self._sock is not None

    def mark_received(self) -> None:
        """Tell paho's keepalive that bytes arrived (what its own read does)."""
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()

    def queue_bytes(self, command: int, blob: bytes) -> None:
        """Queue ready-made packet bytes for the network thread to write as they are."""
        self._packet_queue(command, blob, 0, 0)
