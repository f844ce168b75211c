"""What simulated devices report, as pure functions of the local time; and the demo registry."""

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from services import payloads
from services.models import Device
from services.registry_file import read
from simulator import demo
from simulator.behaviour import Model, events_between
from simulator.cameras import camera_specs
from simulator.scenario import Scenario, Window, pick

VN = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=VN)  # a Tuesday


def at(hour: int, minute: int = 0, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=VN)


def model(kind: str, device_id: str = "dev-1", **kw: object) -> Model:
    return Model(Device(device_id, "thoai-giang", kind), random.Random(1), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hour", "minute", "playing"), [(6, 10, True), (17, 30, True), (12, 0, False), (5, 59, False)]
)
def test_speakers_play_the_commune_broadcast_at_six_and_seventeen(
    hour: int, minute: int, playing: bool
) -> None:
    s = model("speaker").status(at(hour, minute), 0)
    assert s["playing"] is playing
    assert ("source" in s) is playing


def test_broadcast_start_and_end_are_events() -> None:
    m = model("speaker")
    before, during, after = (m.status(at(5, 59), 0), m.status(at(6, 1), 120), m.status(at(6, 50), 3000))
    assert [e["type"] for e in events_between("speaker", before, during)] == ["broadcast_started"]
    assert [e["type"] for e in events_between("speaker", during, after)] == ["broadcast_ended"]


def test_eboard_screen_is_on_by_day_and_dark_at_night_or_on_fault() -> None:
    m = model("eboard")
    assert m.status(at(10), 0)["screen_on"] is True
    assert m.status(at(23, 30), 0)["screen_on"] is False
    fault = m.status(at(10), 0, screen_fault=True)
    assert fault["screen_on"] is False and fault["errors"]


def test_school_wifi_fills_in_class_hours() -> None:
    m = model("wifi", "tg-wifi-thcs")
    assert m.status(at(9), 0)["clients"] > 20 > m.status(at(21), 60)["clients"]


def test_failing_speaker_battery_drains_below_twenty_percent() -> None:
    m = model("speaker", battery_low=True)
    first = m.status(at(20), 0)
    later = m.status(at(20, 30), 1800)
    assert first["power"] == "solar" and first["battery_pct"] > 20 > later["battery_pct"]
    assert "battery_low" in [e["type"] for e in events_between("speaker", first, later)]


def test_gateway_on_4g_backup_reports_uplink_down() -> None:
    m = model("gateway")
    s = m.status(NOW, 0, uplink_backup=True)
    assert s["uplink_up"] is False
    assert model("gateway").status(NOW, 0)["uplink_up"] is True


@pytest.mark.parametrize("kind", ["speaker", "eboard", "wifi", "gateway"])
def test_readings_over_a_day_are_valid_payloads(kind: str) -> None:
    m = model(kind, battery_low=kind == "speaker")
    for minute in range(0, 24 * 60, 7):
        doc = m.status(at(minute // 60, minute % 60), minute * 60.0)
        payloads.parse_status(kind, orjson.dumps(doc), NOW)


def test_window_repeats() -> None:
    w = Window(first_s=10, duration_s=5, period_s=100)
    assert [w.active(t) for t in (9, 10, 14.9, 15, 110, 116)] == [False, True, True, False, True, False]


def test_demo_registry_models_thoai_giang_and_long_thanh() -> None:
    reg = read(demo.TEMPLATE)
    communes = {c.id: c for c in reg.communes}
    assert communes["thoai-giang"].name == "Xã Thoại Sơn" and communes["thoai-giang"].province == "An Giang"
    assert (
        communes["long-thanh"].district == "Huyện Yên Thành" and communes["long-thanh"].province == "Nghệ An"
    )
    villages = {v.commune_id: set() for v in reg.villages}
    for v in reg.villages:
        villages[v.commune_id].add(v.name)
    assert {"Ấp Trung Bình", "Ấp Bắc Thạnh"} <= villages["thoai-giang"] and len(villages["thoai-giang"]) == 4
    # the 2025 reform: Thoại Giang's ấp keep the name of the commune they belonged to
    assert {v.former_commune for v in reg.villages if v.commune_id == "thoai-giang"} == {"Xã Thoại Giang"}
    assert len(villages["long-thanh"]) == 11
    devs = {d.id: d for d in reg.devices}
    tg_cams = [d for d in reg.devices if d.commune_id == "thoai-giang" and d.kind == "camera"]
    assert len(tg_cams) == 16
    lt_speaker_villages = {
        d.village_id for d in reg.devices if d.commune_id == "long-thanh" and d.kind == "speaker"
    }
    assert len(lt_speaker_villages) == 11, "loudspeakers cover every xóm"
    for d in reg.devices:
        if d.kind != "gateway":
            parent = devs[d.parent_id or ""]
            assert parent.kind == "gateway" and parent.village_id == d.village_id
        assert d.lat and d.lon
        assert (10.2 < d.lat < 10.35) if d.commune_id == "thoai-giang" else (18.9 < d.lat < 19.05)
        if d.kind == "camera":
            assert d.onvif and d.onvif.path == f"/onvif/{d.id}/device_service" and reg.passwords[d.id]
    for role in (
        demo.SCENARIO.router_outage
        + demo.SCENARIO.flapping
        + demo.SCENARIO.screen_fault
        + demo.SCENARIO.battery_low
        + demo.SCENARIO.unscheduled_play
        + tuple(demo.SCENARIO.camera_faults)
    ):
        assert role in devs


def test_demo_render_puts_every_camera_on_the_given_port(tmp_path: object) -> None:
    from pathlib import Path

    path = demo.write(Path(str(tmp_path)) / "demo.yaml", 41234)
    reg = read(path)
    cams = [d for d in reg.devices if d.kind == "camera"]
    assert cams and {d.onvif.port for d in cams if d.onvif} == {41234}
    specs = camera_specs(reg, demo.SCENARIO)
    assert list(specs) == [41234] and len(specs[41234]) == len(cams)
    wrong = next(s for s in specs[41234] if s["device_id"] == "lt-cam-mieu-ba")
    assert wrong["password"] != reg.passwords["lt-cam-mieu-ba"]


def test_pick_chooses_roles_by_seed() -> None:
    reg = read(demo.TEMPLATE)
    a, b = pick(reg, 1), pick(reg, 1)
    assert a == b and a.router_outage and a.flapping and a.clock_skew_s
    assert not Scenario.quiet().random_outages
