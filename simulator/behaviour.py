"""What each kind of simulated device reports (SPEC §4 fields), following the commune's day.

Loudspeakers play the commune broadcast at 6:00 and 17:00, e-boards are lit by day, Wi-Fi
at schools fills up in class hours and at relic sites at weekends. Values are pure functions
of the device's own random stream, the local time and the simulated seconds elapsed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from services.models import Device

# Commune radio: morning and evening programmes (local time).
BROADCASTS = ((time(6, 0), time(6, 45)), (time(17, 0), time(17, 45)))
SCREEN_HOURS = (time(5, 30), time(22, 0))
# Fields whose change is reported at once, not at the next heartbeat.
# What a speaker's event says of its `source`.
SOURCE_NAMES = {"fm-xa": "Bản tin xã", "vov1": "Tiếp sóng VOV1", "ioc": "bản tin của IOC", "usb": "USB"}
CHANGE_FIELDS = ("playing", "screen_on", "uplink_up", "power", "errors")

_SCHOOL = ("truong", "thcs", "tieu-hoc", "mau-giao", "mam-non", "thpt")
_RELIC = ("dinh", "den-", "chua", "nha-tho", "mieu", "di-tich")


def _hours(t: datetime) -> float:
    return t.hour + t.minute / 60 + t.second / 3600


def _within(t: datetime, start: time, end: time) -> bool:
    return start <= t.time() < end


def ambient_c(local: datetime) -> float:
    """Air temperature: ~26 °C at night, ~34 °C in the early afternoon."""
    h = _hours(local)
    return 26 + 8 * max(0.0, math.sin(math.pi * (h - 7) / 13))


def in_broadcast(local: datetime) -> bool:
    return any(_within(local, a, b) for a, b in BROADCASTS)


def wifi_profile(device_id: str) -> str:
    if any(s in device_id for s in _SCHOOL):
        return "school"
    if "buu-dien" in device_id:
        return "post-office"
    if any(s in device_id for s in _RELIC):
        return "relic"
    return "public"


def wifi_demand(profile: str, local: datetime) -> float:
    """Share of a hotspot's typical peak in use at this local time (0..1)."""
    h = _hours(local)
    weekend = local.weekday() >= 5
    if profile == "school":
        if weekend:
            return 0.05
        return 1.0 if 7 <= h < 11 or 13.5 <= h < 17 else 0.35 if 11 <= h < 13.5 else 0.03
    if profile == "post-office":
        return 0.0 if weekend and h >= 11.5 else 0.9 if 7 <= h < 11.5 or 13.5 <= h < 17 else 0.05
    if profile == "relic":
        base = 0.8 if weekend else 0.3
        return base if 7 <= h < 19 else 0.05
    return 0.7 if 17 <= h < 22 else 0.4 if 7 <= h < 17 else 0.1


@dataclass
class Model:
    """One device's reading state; `status()` advances it to the given time."""

    device: Device
    rng: random.Random
    battery_low: bool = False
    uptime0_s: float = 0.0
    booted_at_t: float = 0.0
    last_t: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.rng
        k = self.device.kind
        self.uptime0_s = r.uniform(3600, 40 * 86400)
        v = self.values
        if k == "speaker":
            v["firmware"] = r.choice(["2.4.1", "2.4.3", "3.0.2"])
            v["volume"] = r.choice([60, 65, 70, 75, 80, 85])
            v["rssi_dbm"] = r.uniform(-97, -65)
            v["power"] = "solar" if self.battery_low or r.random() < 0.3 else "mains"
            v["battery_pct"] = 26.0 if self.battery_low else r.uniform(70, 100)
        elif k == "eboard":
            v["firmware"] = r.choice(["LED-1.8.0", "LED-1.9.2"])
        elif k == "wifi":
            v["firmware"] = r.choice(["OpenWrt 23.05.3", "OpenWrt 23.05.5"])
            v["channel"] = r.choice([1, 6, 11])
            v["peak"] = {"school": 45, "post-office": 12, "relic": 25}.get(wifi_profile(self.device.id), 20)
            v["rx_bytes"] = r.randrange(10**9, 10**11)
            v["tx_bytes"] = r.randrange(10**9, 10**10)
            v["mem"] = r.uniform(30, 55)
        elif k == "gateway":
            v["rtt_base"] = r.uniform(18, 45)
            v["mem"] = r.uniform(25, 50)

    def reboot(self, t: float) -> None:
        """Power came back: uptime restarts."""
        self.uptime0_s = 0.0
        self.booted_at_t = t

    def uptime_s(self, t: float) -> int:
        return int(self.uptime0_s + t - self.booted_at_t)

    def status(
        self, local: datetime, t: float, *, uplink_backup: bool = False, screen_fault: bool = False
    ) -> dict[str, Any]:
        """The status fields at local time `local`, `t` simulated seconds after the start."""
        dt = max(0.0, t - self.last_t)
        self.last_t = t
        k = self.device.kind
        if k == "speaker":
            return self._speaker(local, dt)
        if k == "eboard":
            return self._eboard(local, screen_fault)
        if k == "wifi":
            return self._wifi(local, t, dt)
        if k == "gateway":
            return self._gateway(t, uplink_backup)
        return {}

    def _speaker(self, local: datetime, dt: float) -> dict[str, Any]:
        r, v = self.rng, self.values
        playing = in_broadcast(local)
        out: dict[str, Any] = {
            "volume": v["volume"],
            "playing": playing,
            "rssi_dbm": round(v["rssi_dbm"] + r.gauss(0, 2)),
            "power": v["power"],
            "firmware": v["firmware"],
            "temperature_c": round(ambient_c(local) + 4 + (6 if playing else 0) + r.gauss(0, 0.5), 1),
        }
        if playing:
            # the commune's own bulletin from its FM station, then the VOV1 relay: sources the
            # demo allows (IOC_BROADCAST_ALLOWED_SOURCES), not broadcasts of the IOC
            out["source"] = "fm-xa" if local.minute < 20 else "vov1"
        if v["power"] != "mains":
            h = _hours(local)
            if self.battery_low:
                rate = -0.5 / 60  # a failing cell: it never holds a charge
            elif 8 <= h < 16:
                rate = 4 / 60
            else:
                rate = -(1.5 if playing else 0.4) / 60
            lo = 12.0 if self.battery_low else 15.0
            v["battery_pct"] = min(100.0, max(lo, v["battery_pct"] + rate * dt))
            out["battery_pct"] = round(v["battery_pct"])
        return out

    def _eboard(self, local: datetime, fault: bool) -> dict[str, Any]:
        r, v = self.rng, self.values
        lit = _within(local, *SCREEN_HOURS)
        on = lit and not fault
        day = 7 <= local.hour < 18
        slot = (local.hour * 60 + local.minute) // 15
        return {
            "screen_on": on,
            "brightness_pct": (90 if day else 60) if on else 0,
            "temperature_c": round(ambient_c(local) + (12 if on else 3) + r.gauss(0, 0.5), 1),
            "content_id": f"ban-tin-{local:%Y%m%d}-{slot % 8 + 1}",
            "errors": ["Mất tín hiệu HDMI từ máy phát nội dung"] if fault and lit else [],
            "firmware": v["firmware"],
        }

    def _wifi(self, local: datetime, t: float, dt: float) -> dict[str, Any]:
        r, v = self.rng, self.values
        demand = wifi_demand(wifi_profile(self.device.id), local)
        clients = max(0, round(v["peak"] * demand + r.gauss(0, 1.5)))
        v["rx_bytes"] += int(clients * dt * r.uniform(20_000, 120_000))
        v["tx_bytes"] += int(clients * dt * r.uniform(3_000, 20_000))
        return {
            "clients": clients,
            "uptime_s": self.uptime_s(t),
            "uplink_up": True,
            "rx_bytes": v["rx_bytes"],
            "tx_bytes": v["tx_bytes"],
            "channel": v["channel"],
            "cpu_pct": round(min(100.0, 4 + clients * 1.2 + r.uniform(0, 5)), 1),
            "mem_pct": round(min(100.0, v["mem"] + clients * 0.3), 1),
            "firmware": v["firmware"],
        }

    def _gateway(self, t: float, backup: bool) -> dict[str, Any]:
        r, v = self.rng, self.values
        rtt = v["rtt_base"] * (3.5 if backup else 1) + abs(r.gauss(0, 4))
        if r.random() < 0.03:
            rtt *= r.uniform(3, 8)  # congestion spike
        return {
            "uplink_up": not backup,
            "uptime_s": self.uptime_s(t),
            "rtt_ms": round(rtt, 1),
            "cpu_pct": round(r.uniform(3, 18), 1),
            "mem_pct": round(v["mem"] + r.uniform(-2, 2), 1),
        }


def events_between(kind: str, before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Events a device sends when its readings change (SPEC §4 `event` channel)."""
    out: list[dict[str, Any]] = []
    if not before:
        return out
    if kind == "speaker":
        if after.get("playing") and not before.get("playing"):
            out.append(
                {
                    "type": "broadcast_started",
                    "severity": "info",
                    "message": f"Bắt đầu phát: {SOURCE_NAMES.get(after.get('source', ''), after.get('source', ''))}".strip(),
                }
            )
        if before.get("playing") and not after.get("playing"):
            out.append({"type": "broadcast_ended", "severity": "info", "message": "Kết thúc phát thanh"})
        b0, b1 = before.get("battery_pct"), after.get("battery_pct")
        if b0 is not None and b1 is not None and b0 >= 20 > b1:
            out.append(
                {
                    "type": "battery_low",
                    "severity": "warning",
                    "message": f"Pin yếu: {b1} %",
                    "battery_pct": b1,
                }
            )
    elif kind == "eboard":
        if before.get("content_id") != after.get("content_id") and after.get("screen_on"):
            out.append(
                {
                    "type": "content_changed",
                    "severity": "info",
                    "message": "Chuyển nội dung hiển thị",
                    "content_id": after.get("content_id"),
                }
            )
        if after.get("errors") and not before.get("errors"):
            out.append({"type": "display_fault", "severity": "warning", "message": after["errors"][0]})
    elif kind == "gateway":
        if before.get("uplink_up") and after.get("uplink_up") is False:
            out.append(
                {
                    "type": "uplink_failover",
                    "severity": "warning",
                    "message": "Mất đường truyền cáp quang, chuyển sang 4G dự phòng",
                }
            )
        if before.get("uplink_up") is False and after.get("uplink_up"):
            out.append(
                {
                    "type": "uplink_restored",
                    "severity": "info",
                    "message": "Đường truyền cáp quang đã phục hồi",
                }
            )
    return out


RARE_EVENTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "speaker": (("cabinet_opened", "warning", "Tủ điều khiển cụm loa bị mở"),),
    "eboard": (("pixel_fault", "info", "Phát hiện điểm ảnh lỗi trên module LED"),),
    "wifi": (("dhcp_pool_low", "warning", "Dải địa chỉ DHCP sắp hết"),),
    "gateway": (("config_saved", "info", "Cấu hình router đã được lưu"),),
}
