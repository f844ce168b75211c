"""Publishing what a source heard onto the IOC's broker, as the device's own SPEC §4 messages (QoS 1,
the `ioc` account), so that it flows through the one ingest pipeline: same checks, dedupe, state,
history, alerts and live feed. For the vendor MQTT bridge and for pollers (SNMP, probes):

    pub = IocPublisher(mqtt_url, "ioc-snmp-host-1234"); pub.start()
    info = pub.status(device, {"uptime_s": 12, "rx_bytes": 3}, ts=now)   # MQTTMessageInfo
    pub.event(device, "rebooted", ts=now, severity="warning")
    pub.availability(device, "offline")
    pub.take_ack(info.mid)  # True once the IOC broker has PUBACKed it (it is then in its queue)

A reading that cannot be mapped goes to `services.sources.store.dead_letters`, never nowhere.
"""

import logging
import random
import threading
from datetime import datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from services import topics
from services.models import Device
from services.mqtt_url import parse as parse_mqtt_url

log = logging.getLogger(__name__)


def iso(t: datetime) -> str:
    """`ts` as published: RFC 3339 with microseconds (receive times a microsecond apart stay apart)."""
    return t.isoformat(timespec="microseconds")


class IocPublisher:
    """One paho client on the IOC broker, its own network thread; every method is thread-safe."""

    def __init__(self, mqtt_url: str, client_id: str, *, max_inflight: int = 100) -> None:
        self._target = parse_mqtt_url(mqtt_url)
        self.client_id = client_id
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if self._target.username:
            self._client.username_pw_set(self._target.username, self._target.password)
        if self._target.tls:
            self._client.tls_set()
        self._client.max_inflight_messages_set(max_inflight)
        # Unlimited: a message is dropped by nobody; the caller holds back (its vendor message
        # stays unacknowledged) while the IOC broker is away.
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(random.randint(1, 2), 15)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self.connected = threading.Event()
        # set on every PUBACK: a caller waiting for acknowledgements wakes up
        self.acked = threading.Event()
        # message ids the IOC broker acknowledged and nobody has taken yet. Not MQTTMessageInfo's
        # is_published(): it raises for a message published while disconnected, which paho still
        # queues and sends on reconnect.
        self._acked: set[int] = set()
        self._stopping = False

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if reason.is_failure:
            log.warning("%s: the IOC broker refused the connection: %s", self.client_id, reason)
            return
        if not self.connected.is_set():
            log.info(
                "%s connected to the IOC broker %s:%s", self.client_id, self._target.host, self._target.port
            )
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("%s lost the IOC broker (%s); reconnecting", self.client_id, reason)
        self.connected.clear()
        self._client.reconnect_delay_set(random.randint(1, 2), 15)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        self._acked.add(mid)
        self.acked.set()

    def take_ack(self, mid: int) -> bool:
        """Whether the IOC broker acknowledged this message (True once per acknowledgement)."""
        if mid in self._acked:
            self._acked.discard(mid)
            return True
        return False

    def start(self) -> None:
        self._client.connect_async(self._target.host, self._target.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """QoS 1; queued by paho while the broker is away and sent on reconnect."""
        return self._client.publish(topic, payload, qos=1)

    def status(self, device: Device, metrics: dict[str, Any], *, ts: datetime) -> mqtt.MQTTMessageInfo:
        body = {**metrics, "ts": iso(ts)}
        return self.publish(
            topics.device_topic(device.commune_id, device.kind, device.id, "status"), orjson.dumps(body)
        )

    def event(
        self,
        device: Device,
        event_type: str,
        *,
        ts: datetime,
        severity: str = "info",
        message: str | None = None,
        **fields: Any,
    ) -> mqtt.MQTTMessageInfo:
        body: dict[str, Any] = {**fields, "type": event_type, "severity": severity, "ts": iso(ts)}
        if message is not None:
            body["message"] = message
        return self.publish(
            topics.device_topic(device.commune_id, device.kind, device.id, "event"), orjson.dumps(body)
        )

    def availability(self, device: Device, value: str) -> mqtt.MQTTMessageInfo:
        """`online` or `offline` (not retained: the IOC's copy is in its database)."""
        return self.publish(
            topics.device_topic(device.commune_id, device.kind, device.id, "availability"), value.encode()
        )
