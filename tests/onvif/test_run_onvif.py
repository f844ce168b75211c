"""`run_onvif` end to end: registry in PostgreSQL, cameras simulated, status and events
published to a real Mosquitto on the cameras' own topics; one active poller per deployment."""

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from ingest.onvif import run_onvif
from ingest.onvif.publisher import parse_mqtt_url
from services import cameras, registry, registry_file
from services.vault import Vault
from simulator.onvif import CameraFarm, CameraSpec
from tests.onvif.conftest import PASSWORD, QUICK

SECRET = "test-secret-key-0123456789"


def registry_yaml(port: int, cams: dict[str, str]) -> str:
    rows = "\n".join(
        f"  - {{id: {cam}, kind: camera, village: trung-binh, onvif: {{host: 127.0.0.1, port: {port}, "
        f"username: admin, password: '{pw}', path: /onvif/{cam}/device_service, poll_s: 1}}}}"
        for cam, pw in cams.items()
    )
    return (
        "commune: {id: thoai-giang, name: Thoai Giang}\nvillages:\n  - {id: trung-binh, name: Trung Binh}\n"
        f"devices:\n{rows}\n"
    )


def import_cameras(db_url: str, port: int, cams: dict[str, str]) -> None:
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(registry_yaml(port, cams)), Vault(SECRET))


class Subscriber:
    """A real MQTT client on the camera topics, collecting (topic, payload, qos)."""

    def __init__(self, url: str) -> None:
        host, port, user, password, _ = parse_mqtt_url(url)
        self.messages: list[tuple[str, dict[str, Any], int]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-onvif-sub")
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = lambda c, *a: c.subscribe("ioc/v1/+/camera/+/+", qos=1)
        self.c.on_subscribe = lambda *a: self._subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(host, port)
        self.c.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, orjson.loads(msg.payload), msg.qos))
            self._cond.notify_all()

    def of(self, topic: str) -> list[dict[str, Any]]:
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def wait_for(self, pred: Callable[[], Any], timeout_s: float = 20.0) -> Any:
        with self._cond:
            result = self._cond.wait_for(pred, timeout_s)
        assert result, "timed out"
        return result

    async def until(self, pred: Callable[[], Any], timeout_s: float = 20.0) -> Any:
        return await asyncio.to_thread(self.wait_for, pred, timeout_s)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def topic(cam: str, channel: str = "status") -> str:
    return f"ioc/v1/thoai-giang/camera/{cam}/{channel}"


def test_run_onvif_publishes_status_and_events_on_camera_topics(
    db_url: str, mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.onvif")
    sub = Subscriber(mqtt_url)

    async def main() -> None:
        specs = [CameraSpec(c, "admin", PASSWORD) for c in ("cam-a", "cam-b", "cam-c")]
        async with CameraFarm(specs, discovery=False) as farm:
            import_cameras(db_url, farm.port, {"cam-a": PASSWORD, "cam-b": "wrong-password"})
            stop = asyncio.Event()
            task = asyncio.create_task(run_onvif(db_url, mqtt_url, SECRET, stop, tuning=QUICK, reload_s=0.3))
            try:
                await sub.until(lambda: [p for p in sub.of(topic("cam-a")) if p.get("events")])
                await sub.until(lambda: [p for p in sub.of(topic("cam-b")) if p.get("auth_failed")])
                farm.set_faults("cam-a", {"tamper"})
                ev = (await sub.until(lambda: sub.of(topic("cam-a", "event"))))[0]
                assert ev["type"] == "tamper" and ev["severity"] == "warning" and "camera_ts" in ev
                # a registry change is picked up without a restart
                import_cameras(db_url, farm.port, {"cam-c": PASSWORD})
                await sub.until(lambda: [p for p in sub.of(topic("cam-c")) if p.get("reachable")])
                with psycopg.connect(db_url) as conn:
                    media = cameras.get(conn, "cam-a")
                    registry.retire(conn, "cam-b")
                assert media and media.stream_uri == "rtsp://127.0.0.1:554/cam-a/main" and media.events
                await sub.until(
                    lambda: any("ONVIF poller: 2 camera(s)" in r.getMessage() for r in caplog.records)
                )
            finally:
                stop.set()
                await task

    try:
        asyncio.run(main())
    finally:
        sub.close()
    assert all(qos == 1 for _, _, qos in sub.messages)
    assert PASSWORD not in caplog.text and PASSWORD not in repr(sub.messages)


def test_one_poller_active_and_a_standby_takes_over(
    db_url: str, mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.onvif")
    sub = Subscriber(mqtt_url)

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    async def main() -> None:
        async with CameraFarm([CameraSpec("cam-a", "admin", PASSWORD)], discovery=False) as farm:
            import_cameras(db_url, farm.port, {"cam-a": PASSWORD})
            stops = [asyncio.Event(), asyncio.Event()]
            tasks: list[asyncio.Task[None]] = []

            def start(stop: asyncio.Event) -> None:
                tasks.append(
                    asyncio.create_task(
                        run_onvif(
                            db_url, mqtt_url, SECRET, stop, tuning=QUICK, lock_retry_s=0.2, reload_s=0.3
                        )
                    )
                )

            try:
                start(stops[0])
                await sub.until(lambda: len(sub.of(topic("cam-a"))) >= 2)
                start(stops[1])
                await sub.until(lambda: said("standing by") >= 1)
                assert said("ONVIF poller active") == 1
                stops[0].set()
                await tasks[0]
                n = len(sub.of(topic("cam-a")))
                await sub.until(
                    lambda: said("ONVIF poller active") == 2 and len(sub.of(topic("cam-a"))) > n + 1
                )
            finally:
                for s in stops:
                    s.set()
                await asyncio.gather(*tasks)

    try:
        asyncio.run(main())
    finally:
        sub.close()


def test_poller_stands_down_when_its_lock_connection_dies_and_resumes(
    db_url: str, mqtt_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.onvif")
    sub = Subscriber(mqtt_url)

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    async def main() -> None:
        async with CameraFarm([CameraSpec("cam-a", "admin", PASSWORD)], discovery=False) as farm:
            import_cameras(db_url, farm.port, {"cam-a": PASSWORD})
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_onvif(db_url, mqtt_url, SECRET, stop, tuning=QUICK, lock_retry_s=0.2, reload_s=0.3)
            )
            try:
                await sub.until(lambda: len(sub.of(topic("cam-a"))) >= 2)
                # What a database restart or a network cut does to the connection holding the lock.
                with psycopg.connect(db_url, autocommit=True) as conn:
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'ioc-onvif-poller'"
                    )
                await sub.until(lambda: said("lost its database connection") == 1)
                n = len(sub.of(topic("cam-a")))
                await sub.until(
                    lambda: said("ONVIF poller active") == 2 and len(sub.of(topic("cam-a"))) > n + 1
                )
            finally:
                stop.set()
                await task

    try:
        asyncio.run(main())
    finally:
        sub.close()
