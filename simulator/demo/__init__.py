"""The demo deployment: Xã Thoại Giang (An Giang) and Xã Long Thành (Nghệ An).

`registry.yaml` is a registry file in the SPEC §3 format; its cameras answer on the
simulator's ONVIF port, which is chosen at run time, so the file that is imported is
rendered with that port into the data dir.
"""

from __future__ import annotations

import re
from pathlib import Path

from simulator.scenario import CLOCK_SKEW_S, Scenario

TEMPLATE = Path(__file__).with_name("registry.yaml")
TEMPLATE_PORT = 18080

# What goes wrong in the demo, by name, so an operator can tell the story.
SCENARIO = Scenario(
    # ấp Bắc Thạnh's router loses power: 2 speakers, a Wi-Fi and 4 cameras go with it
    router_outage=("tg-gw-bac-thanh", "lt-gw-xom-4"),
    flapping=("lt-spk-xom-10",),
    clock_skew_s={"tg-spk-my-giang-2": CLOCK_SKEW_S},
    uplink_backup=("lt-gw-xom-1",),
    screen_fault=("lt-eb-cho",),
    battery_low=("tg-spk-tay-binh-2",),
    camera_wrong_password=("lt-cam-mieu-ba",),
    camera_clock_offset_s={"tg-cam-ben-do": 3 * 3600.0},
    # fault names of simulator.onvif: a camera turned away, motion at the market
    camera_faults={"tg-cam-cau-tay-binh": frozenset({"tamper"}), "tg-cam-cho": frozenset({"motion"})},
)


def render(onvif_port: int) -> str:
    """The demo registry with every camera on `onvif_port`."""
    text = TEMPLATE.read_text(encoding="utf-8")
    return re.sub(rf"\bport: {TEMPLATE_PORT}\b", f"port: {onvif_port}", text)


def write(dest: Path, onvif_port: int) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render(onvif_port), encoding="utf-8")
    return dest
