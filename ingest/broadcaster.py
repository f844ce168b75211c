"""The delivery worker of broadcasts (SPEC §9): one active per deployment, in `ioc ingest`.

Whoever holds the advisory lock (on a dedicated connection) runs rounds of
`services.broadcasts.delivery.tick`: at once when the gateway says a broadcast was created,
approved or cancelled (NOTIFY), else every `POLL_S` (a device back online, an expiry, a start
time reached). The commands of a round are published (QoS 1, not retained) after its commit.
"""

import logging
import random
import threading
from datetime import UTC, datetime

import paho.mqtt.client as paho
import psycopg

from services.broadcasts import delivery, store
from services.db import connect, first_line
from services.errors import Unavailable
from services.mqtt_url import parse as parse_mqtt_url

log = logging.getLogger(__name__)

POLL_S = 1.0
LOCK_ID = 0x10C_0022


class Broadcaster:
    def __init__(
        self, db_url: str, mqtt_url: str, public_url: str, secret: str, tz: str, client_id: str
    ) -> None:
        self._db_url = db_url
        self._target = parse_mqtt_url(mqtt_url)
        self._public_url = public_url
        self._secret = secret
        self._tz = tz
        self._client_id = client_id
        self.published = 0

    def _client(self) -> paho.Client:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=paho.MQTTv5)
        if self._target.username:
            c.username_pw_set(self._target.username, self._target.password)
        if self._target.tls:
            c.tls_set()
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 10)
        c.connect_async(self._target.host, self._target.port, keepalive=15)
        return c

    def run(self, stop: threading.Event) -> None:
        """Rounds until `stop`; database trouble is retried with a jittered backoff."""
        client = self._client()
        client.loop_start()
        conn: psycopg.Connection | None = None
        backoff = 0.5
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = connect(self._db_url, autocommit=True, name="ioc-broadcasts")
                        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()
                        if not (got and got[0]):
                            conn.close()
                            conn = None
                            stop.wait(5 * POLL_S)
                            continue
                        conn.execute(f"LISTEN {store.CHANNEL}")
                        log.info("delivering broadcasts (this process holds the lock)")
                    self.round(conn, client)
                    backoff = 0.5
                    for _ in conn.notifies(timeout=POLL_S, stop_after=1):
                        pass
                except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as err:
                    log.warning("broadcast delivery: database unavailable: %s", first_line(err))
                    if conn is not None:
                        conn.close()
                    conn = None
                    stop.wait(backoff * random.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, 5.0)
        finally:
            if conn is not None:
                conn.close()
            client.disconnect()
            client.loop_stop()

    def round(self, conn: psycopg.Connection, client: paho.Client) -> None:
        commands = delivery.tick(conn, datetime.now(UTC), self._tz, self._public_url, self._secret)
        for c in commands:
            client.publish(c.topic, c.payload, qos=1, retain=False)
        self.published += len(commands)
