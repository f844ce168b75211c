"""How a simulated device speaks: the IOC's own MQTT (SPEC §4), a vendor's MQTT (SPEC §8, the
shipped profile's topics and JSON, to the vendor's broker), or nothing at all (a device the IOC
polls: SNMP, ping, TCP, HTTP; the simulator answers those probes, `simulator.probed`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from services.models import Device
from services.sources.model import HttpSource, MqttSource, PingSource, SnmpSource, TcpSource
from services.topics import device_topic

Message = tuple[str, bytes]  # (topic, payload)

POLLED = (HttpSource, PingSource, SnmpSource, TcpSource)


class IocDialect:
    """SPEC §4: `ioc/v1/...` topics, `online`/`offline` availability, JSON status and events."""

    broker_id: str | None = None

    def __init__(self, device: Device) -> None:
        self.device = device

    def client_id(self) -> str:
        return f"sim-{self.device.id}"

    def topic(self, channel: str) -> str:
        d = self.device
        return device_topic(d.commune_id, d.kind, d.id, channel)

    def will(self) -> Message:
        return self.topic("availability"), b"offline"

    def online(self) -> Message:
        return self.topic("availability"), b"online"

    def status(self, doc: dict[str, Any], local: datetime) -> list[Message]:
        return [(self.topic("status"), orjson.dumps(doc))]

    def event(self, doc: dict[str, Any]) -> list[Message]:
        return [(self.topic("event"), orjson.dumps(doc))]


class TasmotaDialect(IocDialect):
    """Tasmota firmware (services/profiles/tasmota.yaml): `tele/{id}/LWT` Online/Offline, STATE and
    SENSOR every TelePeriod, the device's local time in "Time" and no time zone, as Tasmota sends."""

    def __init__(self, device: Device, source: MqttSource) -> None:
        super().__init__(device)
        self.tid = source.id
        self.broker_id = source.broker

    def client_id(self) -> str:
        return f"DVES_{self.tid}"[:23]

    def will(self) -> Message:
        return f"tele/{self.tid}/LWT", b"Offline"

    def online(self) -> Message:
        return f"tele/{self.tid}/LWT", b"Online"

    def status(self, doc: dict[str, Any], local: datetime) -> list[Message]:
        now = local.replace(tzinfo=None).isoformat(timespec="seconds")
        uptime = int(doc.get("uptime_s", 0))
        rssi = int(doc.get("rssi_dbm", -70))
        power = "ON" if doc.get("playing", doc.get("screen_on", True)) else "OFF"
        state = {
            "Time": now,
            "Uptime": f"{uptime // 86400}T{uptime % 86400 // 3600:02}:{uptime % 3600 // 60:02}:{uptime % 60:02}",
            "UptimeSec": uptime,
            "Heap": 25,
            "SleepMode": "Dynamic",
            "Sleep": 50,
            "LoadAvg": 19,
            "MqttCount": 1,
            "POWER": power,
            "Wifi": {
                "AP": 1,
                "SSId": "loa-xa",
                "Channel": 6,
                "Mode": "11n",
                "RSSI": max(0, min(100, 2 * (rssi + 100))),
                "Signal": rssi,
            },
        }
        out = [(f"tele/{self.tid}/STATE", orjson.dumps(state))]
        if "temperature_c" in doc:
            sensor = {"Time": now, "ANALOG": {"Temperature": doc["temperature_c"]}, "TempUnit": "C"}
            out.append((f"tele/{self.tid}/SENSOR", orjson.dumps(sensor)))
        return out

    def event(self, doc: dict[str, Any]) -> list[Message]:
        return []  # Tasmota says nothing of its own accord but telemetry; a reboot shows in UptimeSec


VENDOR = {"tasmota": TasmotaDialect}


def dialect(device: Device) -> IocDialect | None:
    """How `device` speaks over MQTT; None for a polled device or a profile the simulator cannot speak."""
    src = device.source
    if src is None:
        return IocDialect(device)
    if isinstance(src, MqttSource):
        cls = VENDOR.get(src.profile)
        return cls(device, src) if cls else None
    return None


def polled(device: Device) -> bool:
    return isinstance(device.source, POLLED)
