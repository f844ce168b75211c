"""A real MQTT subscriber that records what simulated devices publish."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from services import payloads, topics


@dataclass(frozen=True)
class Msg:
    at: float  # monotonic receive time
    device_id: str
    kind: str
    channel: str
    payload: bytes
    retain: bool


class Recorder:
    def __init__(self, host: str, port: int) -> None:
        self.msgs: list[Msg] = []
        self.bad: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-recorder")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: subscribed.set()
        self._client.connect(host, port)
        self._client.subscribe(f"{topics.ROOT}/#", qos=1)
        self._client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, _c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        t = topics.parse(m.topic)
        now = datetime.now(UTC)
        try:
            assert t is not None, f"not a device topic: {m.topic}"
            if t.channel == "status":
                payloads.parse_status(t.kind, m.payload, now)
            elif t.channel == "event":
                payloads.parse_event(m.payload, now)
            else:
                payloads.parse_availability(m.payload)
        except (AssertionError, payloads.BadPayload) as err:
            with self._lock:
                self.bad.append((m.topic, str(err)))
            return
        with self._lock:
            self.msgs.append(Msg(time.monotonic(), t.device_id, t.kind, t.channel, m.payload, m.retain))

    def snapshot(self) -> list[Msg]:
        with self._lock:
            return list(self.msgs)

    def wait_for(self, pred: Callable[[list[Msg]], bool], timeout_s: float = 20) -> list[Msg]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msgs = self.snapshot()
            if pred(msgs):
                return msgs
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout_s}s; got {len(self.snapshot())} messages")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def availability(msgs: list[Msg], device_id: str) -> list[str]:
    return [m.payload.decode() for m in msgs if m.device_id == device_id and m.channel == "availability"]
