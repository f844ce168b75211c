"""Camera status and events onto MQTT (QoS 1), so they flow through the one ingest pipeline."""

import logging
import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as mqtt

from services import topics
from services.errors import ConfigError

log = logging.getLogger(__name__)


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None, bool]:
    """host, port, username, password, tls from `mqtt[s]://[user:pass@]host:port`."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ConfigError("IOC_MQTT_URL must be mqtt://[user:pass@]host:port")
    tls = u.scheme == "mqtts"
    return (
        u.hostname,
        u.port or (8883 if tls else 1883),
        unquote(u.username) if u.username else None,
        unquote(u.password) if u.password else None,
        tls,
    )


def iso_ms(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MqttPublisher:
    """One paho client on its own network thread; `publish` may be called from the event loop."""

    def __init__(self, mqtt_url: str, client_id: str | None = None) -> None:
        self._host, self._port, user, password, tls = parse_mqtt_url(mqtt_url)
        cid = client_id or f"ioc-onvif-{socket.gethostname()}-{os.getpid()}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
        if user:
            self._client.username_pw_set(user, password)
        if tls:
            self._client.tls_set()
        self._client.reconnect_delay_set(1, 15)
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()
        self.published = 0
        self._stopping = False

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc == 0:
            if not self.connected.is_set():
                log.info("ONVIF poller connected to MQTT %s:%s", self._host, self._port)
            self.connected.set()
        else:
            log.warning("ONVIF poller: MQTT broker refused the connection: %s", rc)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("ONVIF poller lost MQTT %s:%s (%s); reconnecting", self._host, self._port, rc)
        self.connected.clear()

    def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, commune_id: str, device_id: str, channel: str, payload: dict[str, Any]) -> None:
        """QoS 1; paho queues it while the broker is away and sends it on reconnect."""
        topic = topics.device_topic(commune_id, "camera", device_id, channel)
        self._client.publish(topic, orjson.dumps(payload), qos=1)
        self.published += 1
