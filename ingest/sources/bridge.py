"""The vendor MQTT bridge of one broker: subscribe to the topics of its devices' profiles (QoS 1,
persistent session), map each message (`services.sources.vendor`) and republish it on the device's
IOC topics; acknowledge the vendor message only once the IOC broker has acknowledged what it became.

Threads: paho's network thread only queues messages; the bridge's worker maps, publishes and
acknowledges in arrival order. A message the profile cannot map is dead-lettered (reason
`unmappable`, naming profile and field) before it is acknowledged.
"""

import logging
import queue
import random
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.mqtt import ReceiveClock
from ingest.sources.publish import IocPublisher
from services.db import connect, first_line
from services.errors import Unavailable
from services.mapping import MappingError
from services.sources import store
from services.sources.model import Broker
from services.sources.vendor import Route, Router, translate

log = logging.getLogger(__name__)

# Unacknowledged vendor messages the broker may send us (MQTT 5 receive maximum).
RECEIVE_MAXIMUM = 100
# CONNACK reasons that mean "your credentials are wrong" (MQTT 5 0x86 bad user name or password,
# 0x87 not authorized; paho maps MQTT 3.1.1's return codes 4 and 5 onto them).
_REFUSED_CREDENTIALS = frozenset({0x86, 0x87})
_SUBSCRIBE_CHUNK = 100


@dataclass(slots=True)
class _Msg:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retained: bool
    generation: int
    received_at: datetime


@dataclass
class _Inflight:
    mid: int
    qos: int
    generation: int
    waiting: set[int] = field(default_factory=set)  # IOC message ids not yet acknowledged


@dataclass
class Counts:
    republished: int = 0
    dead: int = 0
    replays_skipped: int = 0
    foreign: int = 0


class VendorBridge:
    """One broker's bridge; `start`, `set_routes` (on registry changes), `close`."""

    def __init__(
        self,
        broker: Broker,
        password: str | None,
        publisher: IocPublisher,
        db_url: str,
    ) -> None:
        self.broker = broker
        self._publisher = publisher
        self._db_url = db_url
        self._conn: psycopg.Connection | None = None
        self._queue: queue.Queue[_Msg] = queue.Queue()
        self._inflight: deque[_Inflight] = deque()
        self._router = Router([])
        self._subscribed: set[str] = set()
        self._lock = threading.Lock()
        self._generation = 0
        self._clock = ReceiveClock()
        self._stop = threading.Event()
        self.counts = Counts()
        self.listening_since: datetime | None = None
        self.error: str | None = None
        # the broker answers but refuses our user name or password (SPEC §8: its devices are
        # auth_failed); cleared by the next accepted connection
        self.refused = False
        # set when the worker died of something unexpected: the owner fails the process
        self.failure: BaseException | None = None
        self._client = self._make_client(password)
        self._worker = threading.Thread(target=self._work, name=f"sources[{broker.id}].bridge", daemon=True)

    def _make_client(self, password: str | None) -> mqtt.Client:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.broker.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.broker.username:
            c.username_pw_set(self.broker.username, password)
        if self.broker.tls:
            # A private CA (ca_file) or the system's; the broker's name is always checked.
            c.tls_set(ca_certs=self.broker.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        c.max_inflight_messages_set(RECEIVE_MAXIMUM)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_connect_fail = self._on_connect_fail
        self._jitter(c)
        return c

    @staticmethod
    def _jitter(c: mqtt.Client) -> None:
        # paho doubles the delay up to the maximum; a random start spreads reconnects of many IOCs
        c.reconnect_delay_set(random.randint(1, 3), 30)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.broker.session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self._worker.start()
        self._client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=self.broker.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def close(self) -> None:
        """Stop: what is not acknowledged yet stays with the vendor broker (it redelivers it)."""
        self._stop.set()
        self._worker.join(timeout=10)
        self._client.disconnect()
        self._client.loop_stop()
        if self._conn is not None:
            self._conn.close()

    def set_routes(self, routes: list[Route]) -> None:
        """The topics of this broker's devices now; subscribes to new ones, drops the others."""
        router = Router(routes)
        with self._lock:
            self._router = router
            wanted = router.filters
            if self.listening_since is not None:
                self._subscribe(sorted(wanted - self._subscribed))
                gone = sorted(self._subscribed - wanted)
                if gone:
                    self._client.unsubscribe(gone)
                self._subscribed = set(wanted)

    def _subscribe(self, filters: list[str]) -> None:
        for i in range(0, len(filters), _SUBSCRIBE_CHUNK):
            chunk = filters[i : i + _SUBSCRIBE_CHUNK]
            self._client.subscribe([(f, SubscribeOptions(qos=1)) for f in chunk])

    # -- paho thread ---------------------------------------------------------------------

    def _on_connect(self, c: mqtt.Client, _u: object, flags: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            self.refused = getattr(reason, "value", None) in _REFUSED_CREDENTIALS
            self.error = f"refused: {reason}"
            if self.refused:
                log.warning(
                    "vendor broker %s refuses the bridge's credentials (%s): check the broker's"
                    " user name and password in the registry",
                    self.broker.id,
                    reason,
                )
            else:
                log.warning("vendor broker %s refused the bridge: %s", self.broker.id, reason)
            return
        with self._lock:
            self._generation += 1
            # Subscribing again is harmless with a resumed session; retained messages come again
            # and change nothing (see _handle).
            self._subscribed = set(self._router.filters)
            self._subscribe(sorted(self._subscribed))
            self.listening_since = datetime.now(UTC)
        self.error = None
        self.refused = False
        log.info(
            "bridge connected to %s %s:%s (session %s)",
            self.broker.id,
            self.broker.host,
            self.broker.port,
            "resumed" if getattr(flags, "session_present", False) else "new",
        )

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        if self.error is None:
            log.warning(
                "bridge cannot reach vendor broker %s %s:%s",
                self.broker.id,
                self.broker.host,
                self.broker.port,
            )
        self.error = "cannot connect"
        self.refused = False  # not answering is a lost broker, not a refusal

    def _on_disconnect(self, c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if self.listening_since is not None and not self._stop.is_set():
            log.warning("bridge lost vendor broker %s (%s); reconnecting", self.broker.id, reason)
        self.listening_since = None
        if not self._stop.is_set() and not self.refused:
            # after a refused CONNACK the broker closes the connection: the refusal is the news
            self.error = f"disconnected: {reason}"
        self._jitter(c)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(
            _Msg(
                msg.topic,
                bytes(msg.payload),
                msg.mid,
                msg.qos,
                bool(msg.retain),
                self._generation,
                self._clock.take(1),
            )
        )

    # -- worker --------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    m = self._queue.get(timeout=0.02 if self._inflight else 0.5)
                except queue.Empty:
                    m = None
                if m is not None:
                    self._handle(m)
                self._ack_ready()
        except BaseException as err:  # a bug: the owner fails the process (services.workers)
            self.failure = err
            raise

    def _handle(self, m: _Msg) -> None:
        with self._lock:
            found = self._router.match(m.topic)
        item = _Inflight(m.mid, m.qos, m.generation)
        if not found:
            self.counts.foreign += 1  # unsubscribed since, or another client's topic
            self._inflight.append(item)
            return
        dead: list[store.Unmappable] = []
        for route in found:
            if m.retained and route.channel != "availability":
                # A retained status or event is a replay of something old: it would make a silent
                # device look alive. Availability replays are idempotent (ingest ignores repeats).
                self.counts.replays_skipped += 1
                continue
            try:
                pub = translate(route, m.payload, m.received_at)
            except MappingError as err:
                dead.append(
                    store.Unmappable(
                        m.received_at,
                        m.topic,
                        f"broker {self.broker.id}, {route.where()}, field {err.field}: {err.detail}",
                        route.device.id,
                        m.payload,
                    )
                )
                continue
            info = self._publisher.publish(pub.topic, pub.payload)
            item.waiting.add(info.mid)
            self.counts.republished += 1
        if dead:
            self._dead_letters(dead)
            self.counts.dead += len(dead)
        self._inflight.append(item)

    def _dead_letters(self, items: list[store.Unmappable]) -> None:
        """Stored before the vendor message is acknowledged; retried while the database is away."""
        backoff = 0.5
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self._db_url, name=f"ioc-bridge-{self.broker.id}")
                store.dead_letters(self._conn, items)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as err:
                log.warning("bridge %s: cannot store a dead letter: %s", self.broker.id, first_line(err))
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if self._stop.wait(backoff * random.uniform(0.5, 1.5)):
                    raise Unavailable("stopping with a dead letter unstored") from err
                backoff = min(backoff * 2, 10.0)

    def _ack_ready(self) -> None:
        """Acknowledge, in arrival order, the vendor messages whose IOC messages are acknowledged."""
        while self._inflight:
            head = self._inflight[0]
            head.waiting = {mid for mid in head.waiting if not self._publisher.take_ack(mid)}
            if head.waiting:
                return
            self._inflight.popleft()
            # A message of an earlier connection is redelivered on the new one; acking its old
            # id there could acknowledge another message.
            if head.qos > 0 and head.generation == self._generation:
                self._client.ack(head.mid, head.qos)
