"""The demo deployment: Xã Thoại Sơn (tỉnh An Giang; the ấp of the former Xã Thoại Giang) and Xã Long
Thành (tỉnh Nghệ An), as they are since the 2025 reform (registry.yaml says what is modelled).

`registry.yaml` is a registry file in the SPEC §3 format; its cameras answer on the
simulator's ONVIF port, which is chosen at run time, so the file that is imported is
rendered with that port into the data dir.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from simulator.scenario import CLOCK_SKEW_S, Scenario

TEMPLATE = Path(__file__).with_name("registry.yaml")
TEMPLATE_PORT = 18080
# The "vendor cloud" broker the Tasmota speakers talk to (`ioc up --demo` runs it).
VENDOR_BROKER_PORT = 18883
# Devices the IOC polls: the e-board's HTTP status page, the TCP routers. `ioc up` binds these
# ports before it writes them into the registry and hands the sockets to the simulator.
LISTEN_PORTS = (18081, 18091, 18092, 18161, 18162, 18163)
TCP_PORTS = (18091, 18092)  # of those, the TCP routers' (closed during their outages)
UDP_PORTS = (18161, 18162, 18163)  # and the SNMP agents' (UDP)

# What goes wrong in the demo, by name, so an operator can tell the story.
SCENARIO = Scenario(
    # ấp Bắc Thạnh's router loses power: 3 speakers (one through the vendor cloud, one a smart-radio
    # receiver in its vendor server's list), a Wi-Fi
    # and 4 cameras go with it; xóm 6's takes 2 cameras, a Wi-Fi, a vendor speaker and the HTTP e-board
    router_outage=("tg-gw-bac-thanh", "lt-gw-xom-4", "lt-gw-xom-6"),
    flapping=("lt-spk-xom-10",),
    clock_skew_s={"tg-spk-my-giang-2": CLOCK_SKEW_S},
    uplink_backup=("lt-gw-xom-1",),
    screen_fault=("lt-eb-cho",),
    battery_low=("tg-spk-tay-binh-2",),
    camera_wrong_password=("lt-cam-mieu-ba",),
    camera_clock_offset_s={"tg-cam-ben-do": 3 * 3600.0},
    # fault names of simulator.onvif: a camera turned away, motion at the market
    camera_faults={"tg-cam-cau-tay-binh": frozenset({"tamper"}), "tg-cam-cho": frozenset({"motion"})},
    # a speaker plays a USB stick, later an unknown stream, for two minutes: unscheduled_broadcast
    unscheduled_play=("tg-spk-my-giang-1",),
)


def render(onvif_port: int, ports: Mapping[int, int] | None = None) -> str:
    """The demo registry with every camera on `onvif_port`, and each other template port of
    `ports` (vendor broker, HTTP, TCP) replaced by the port it maps to."""
    text = TEMPLATE.read_text(encoding="utf-8")
    actual = {TEMPLATE_PORT: onvif_port, **(ports or {})}
    # one pass, so a chosen port that happens to equal another template port is not rewritten again
    pattern = "|".join(str(p) for p in actual)
    return re.sub(rf"(\bport: |//127\.0\.0\.1:)({pattern})\b", lambda m: f"{m[1]}{actual[int(m[2])]}", text)


def write(dest: Path, onvif_port: int, ports: Mapping[int, int] | None = None) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render(onvif_port, ports), encoding="utf-8")
    return dest
