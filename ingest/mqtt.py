"""The MQTT consumer: paho with manual acknowledgement, one writer thread, ack after commit.

Why threads and not asyncio here: paho's own loop is the fastest consumer measured on this
machine (30k msg/s at QoS 1 against aiomqtt's 19k), and ingest must sustain 20k msg/s end
to end. The paho network thread (`FastClient`: buffered reads, a lean QoS 1 path) only appends
to a deque; the writer thread classifies, writes one transaction per batch and then
acknowledges the batch in arrival order. A message is never acknowledged before its batch is
committed.
"""

import logging
import random
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.client import PUBACK
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.paho_fast import FastClient
from ingest.paho_private import HookedClient
from services import storage, topics
from services.broadcasts import results as broadcast_results
from services.db import connect, first_line
from services.errors import Unavailable
from services.intake import Raw, classify
from services.mqtt_url import parse as parse_mqtt_url
from services.registry_cache import RegistryCache
from services.workers import Threads

log = logging.getLogger(__name__)

SHARE_GROUP = "ioc-ingest"
# A week: the broker keeps our session (and queues messages for it) across restarts of ingest.
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass
class IngestConfig:
    client_id: str
    batch_max: int = 20000
    # How long the writer gathers messages after the first one arrives at an idle writer.
    # Under load no wait is added: a batch is whatever arrived while the last one committed.
    linger_s: float = 0.005
    # The lean paho path (ingest.paho_fast, on paho internals fenced in ingest.paho_private); False:
    # plain paho.Client, every message through on_message and acked with client.ack().
    fast: bool = True

    @property
    def queue_max(self) -> int:
        """Messages held in memory before ingest stops reading from the broker for a moment."""
        return 3 * self.batch_max

    @property
    def receive_maximum(self) -> int:
        """Unacknowledged messages the broker may send us: two batches, so the broker keeps
        sending while a batch commits (MQTT caps it at 65535)."""
        return min(2 * self.batch_max, 65535)


_US = timedelta(microseconds=1)
_STEP_BACK = timedelta(seconds=1)


class ReceiveClock:
    """Receive times, strictly increasing, for the paho thread.

    Messages decoded from one read arrive together; a status without `ts` is stored at its
    receive time, and two statuses of one device at the same time would be taken for one
    message redelivered (the second is dropped as a duplicate). So each message gets its own
    microsecond, in arrival order, and no time is handed out twice.
    """

    def __init__(self) -> None:
        self._last = datetime.min.replace(tzinfo=UTC)

    def take(self, n: int) -> datetime:
        """The first of `n` consecutive microseconds, none earlier than now."""
        now = datetime.now(UTC)
        # After the wall clock is stepped back (by more than any read's span), follow it: receive
        # times feed liveness, and holding them ahead would keep silent devices online.
        first = now if now + _STEP_BACK < self._last else max(now, self._last + _US)
        self._last = first + _US * (n - 1)
        return first


@dataclass(slots=True)
class _Msg:
    raw: Raw
    mid: int
    qos: int
    generation: int


class MqttIngest:
    """Owns the paho client and the writer thread; use as a context manager."""

    def __init__(
        self,
        db_url: str,
        mqtt_url: str,
        cfg: IngestConfig,
        registry: RegistryCache,
        health: "BrokerHealth",
        workers: Threads | None = None,
    ) -> None:
        self._db_url = db_url
        self._target = parse_mqtt_url(mqtt_url)
        self._cfg = cfg
        self._registry = registry
        self._health = health
        self._queue: deque[_Msg] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._generation = 0
        self._conn: psycopg.Connection | None = None
        # The writer and the network thread are workers of the process (services.workers).
        self._workers = workers or Threads()
        self._writer: threading.Thread | None = None
        self._network: threading.Thread | None = None
        self.committed = 0
        # UTC wall clock of the last commit (None before the first), and the batch being
        # written: read by health checks from other threads without a lock (plain stores).
        self.last_commit_at: datetime | None = None
        self._in_hand = 0
        self.max_queued = 0  # the most messages held at once (memory bound; see FastClient)
        self._throttle = storage.FeedThrottle()
        self._clock = ReceiveClock()
        self.client = self._make_client()

    def _make_client(self) -> paho.Client:
        c: paho.Client
        if self._cfg.fast:
            c = FastClient(
                paho.CallbackAPIVersion.VERSION2,
                client_id=self._cfg.client_id,
                protocol=paho.MQTTv5,
                manual_ack=True,
                on_qos1=self._on_qos1,
                paused=self._full,
            )
        else:
            c = paho.Client(
                paho.CallbackAPIVersion.VERSION2,
                client_id=self._cfg.client_id,
                protocol=paho.MQTTv5,
                manual_ack=True,
            )
        if self._target.username:
            c.username_pw_set(self._target.username, self._target.password)
        if self._target.tls:
            c.tls_set()
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def __enter__(self) -> "MqttIngest":
        self._writer = self._workers.start("ingest.writer", self._write_loop)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self._cfg.receive_maximum
        self.client.connect_async(
            self._target.host, self._target.port, keepalive=15, clean_start=False, properties=props
        )
        before = set(threading.enumerate())
        self.client.loop_start()
        # paho's network thread dies when a callback raises: watched as a worker, it ends the process.
        network = [t for t in threading.enumerate() if t not in before and t.name.startswith("paho-mqtt")]
        if network:
            self._network = self._workers.start("ingest.mqtt", network[0].join)
        return self

    def __exit__(self, *exc: object) -> None:
        self._workers.stop.set()
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()
        if self._network is not None:
            self._network.join(timeout=5)
        if self._conn is not None:
            self._conn.close()

    # -- paho thread ---------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused ingest connection: %s", reason)
            return
        self._generation += 1
        log.info(
            "connected to broker %s:%s (session %s)",
            self._target.host,
            self._target.port,
            "resumed" if _f.session_present else "new",
        )
        client.subscribe(topics.shared(SHARE_GROUP), qos=1)
        client.subscribe(self._health.topic, qos=0)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._health.lost()
        if not self._stop.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_qos1(self, msgs: list[tuple[str, bytes, int]]) -> None:
        first, gen = self._clock.take(len(msgs)), self._generation  # arrived in one read
        self._queue.extend(
            [
                _Msg(Raw(topic, payload, first + _US * i), mid, 1, gen)
                for i, (topic, payload, mid) in enumerate(msgs)
            ]
        )
        self._queued(len(msgs))

    def _queued(self, n: int) -> None:
        """Wake the writer when it may be idle (the queue was empty) or a batch is full."""
        size = len(self._queue)
        self.max_queued = max(self.max_queued, size)
        if size == n or size >= self._cfg.batch_max:
            self._wake.set()

    def _full(self) -> bool:
        return len(self._queue) >= self._cfg.queue_max

    @property
    def waiting(self) -> int:
        """Messages received and not yet committed (queued, and the batch being written)."""
        return len(self._queue) + self._in_hand

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        """QoS 0 messages (our probe, devices publishing at QoS 0); QoS 1 takes `_on_qos1`
        (on plain paho, QoS 1 comes here too)."""
        now = self._clock.take(1)
        if msg.topic == self._health.topic:
            self._health.heard(now)
            return
        self._queue.append(_Msg(Raw(msg.topic, bytes(msg.payload), now), msg.mid, msg.qos, self._generation))
        self._queued(1)
        # Plain paho cannot stop reading between packets: hold its thread here while the writer
        # catches up (the broker then keeps the rest; a commit takes far less than the keepalive).
        while self._full() and not self._stop.is_set():
            time.sleep(0.01)

    # -- writer thread -------------------------------------------------------------------

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._db_url, name="ioc-ingest")
            storage.prepare(self._conn)
        return self._conn

    def _write_loop(self) -> None:
        backoff = 0.5
        pending: list[_Msg] = []
        while True:
            if not pending:
                pending = self._take()
                self._in_hand = len(pending)
                self._publish_owed()
                if not pending:
                    if self._stop.is_set():
                        return
                    continue
            try:
                self._commit(pending)
            except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as err:
                # Nothing was acknowledged: the batch stays ours (and the broker's) until a
                # commit succeeds. Retry the same batch after a jittered backoff.
                log.warning("database unavailable, retrying %d messages: %s", len(pending), first_line(err))
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if self._stop.wait(backoff * random.uniform(0.5, 1.5)) and self._stop.is_set():
                    return
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            self.last_commit_at = datetime.now(UTC)
            self._ack(pending)
            self.committed += len(pending)
            self._in_hand = 0
            pending = []

    def _take(self) -> list[_Msg]:
        """The next batch: what is queued; at an idle writer, what arrives within `linger_s`.

        Messages that queued while the previous batch committed have waited already, so
        they are taken at once; that is what lets batches grow with the load.
        """
        if not self._queue:
            self._wake.clear()
            # Re-check after clearing: a message queued in between set the event before the clear.
            if not self._queue:
                self._wake.wait(1.0)
            if not self._queue:
                return []
            if len(self._queue) < self._cfg.batch_max:
                time.sleep(self._cfg.linger_s)
        n = min(len(self._queue), self._cfg.batch_max)
        return [self._queue.popleft() for _ in range(n)]

    def _commit(self, msgs: list[_Msg]) -> None:
        conn = self._db()
        self._registry.refresh_if_due(conn)
        now = datetime.now(UTC)
        batch = classify([m.raw for m in msgs], self._registry.devices)
        if batch.cmd_results:
            batch.dead += broadcast_results.apply(conn, batch.cmd_results, now)
        storage.write_batch(conn, batch, now, self._health.listening_since, self._throttle)

    def _publish_owed(self) -> None:
        """Readings the feed throttle held back, once their window has passed (at most ~1 s late)."""
        owed = self._throttle.due()
        if not owed:
            return
        try:
            storage.publish_latest(self._db(), owed, self._registry.devices)
        except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as err:
            # The commit path reconnects; these go out with a later attempt.
            log.warning("could not publish %d held-back readings: %s", len(owed), first_line(err))
            self._throttle.owe(owed)
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def _ack(self, msgs: list[_Msg]) -> None:
        gen = self._generation
        # A message from an earlier connection is redelivered by the broker on the new one;
        # acking its old id there could ack a different message.
        ack_all(self.client, [m.mid for m in msgs if m.qos == 1 and m.generation == gen])


_PUBACK = struct.Struct("!BBH")


def ack_all(client: paho.Client, mids: list[int]) -> None:
    """PUBACK many QoS 1 messages, in order, as one write.

    paho's `ack()` queues one packet and wakes its network thread once per message; at tens
    of thousands of messages a second that wake-up ping-pong costs more than the rest of
    ingest. The PUBACKs are packed back to back into one queued write instead (paho 2.x
    writes a queued packet's bytes as they are).
    """
    if not mids:
        return
    if not isinstance(client, HookedClient):  # plain paho (IOC_INGEST_FAST=false)
        for mid in mids:
            client.ack(mid, 1)
        return
    client.queue_bytes(PUBACK, b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids]))


class BrokerHealth:
    """Whether the IOC hears its broker: our own probe, published and received back."""

    def __init__(self, client_id: str) -> None:
        self.topic = f"{topics.PROBE}/{client_id}"
        self._last_heard: float | None = None
        self._since: datetime | None = None
        self._lock = threading.Lock()

    def heard(self, now: datetime) -> None:
        with self._lock:
            self._last_heard = time.monotonic()
            if self._since is None:
                self._since = now

    def lost(self) -> None:
        with self._lock:
            self._last_heard = None
            self._since = None

    def check(self, max_age_s: float = 5.0) -> bool:
        with self._lock:
            ok = self._last_heard is not None and time.monotonic() - self._last_heard < max_age_s
            if not ok:
                self._since = None
            return ok

    @property
    def listening_since(self) -> datetime | None:
        """Since when the broker path has worked without a gap; None while it does not."""
        with self._lock:
            return self._since
