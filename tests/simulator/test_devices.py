"""Simulated MQTT devices against a real Mosquitto: payloads, last wills, router outages."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import orjson
import pytest

from cli.embedded import Mosquitto
from services import payloads
from services.registry_file import parse_yaml, read
from simulator import demo
from simulator.devices import Simulator
from simulator.scenario import CLOCK_SKEW_S, Scenario
from tests.simulator.recorder import Recorder, availability

SMALL = """
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages:
  - {id: bac-thanh, name: "Ấp Bắc Thạnh"}
  - {id: trung-binh, name: "Ấp Trung Bình"}
devices:
  - {id: gw-bac-thanh, kind: gateway, village: bac-thanh, heartbeat_s: 30}
  - {id: spk-bac-thanh-1, kind: speaker, village: bac-thanh, parent: gw-bac-thanh, heartbeat_s: 30}
  - {id: wifi-mau-giao, kind: wifi, village: bac-thanh, parent: gw-bac-thanh, heartbeat_s: 30}
  - {id: eb-ubnd, kind: eboard, village: trung-binh, heartbeat_s: 30}
"""
CHILDREN = ("spk-bac-thanh-1", "wifi-mau-giao")


@pytest.fixture
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    r = Recorder(broker.host, broker.port or 0)
    yield r
    r.close()


def run_sim(sim: Simulator, body: Callable[[Simulator], Awaitable[None]]) -> None:
    """Run the simulator while `body` drives and checks it; then stop it."""

    async def main() -> None:
        async def drive() -> None:
            try:
                await sim.ready.wait()
                await body(sim)
            finally:
                sim.stop()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(sim.run())
            tg.create_task(drive())

    asyncio.run(main())


async def until(pred: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_every_kind_publishes_valid_payloads(broker: Mosquitto, recorder: Recorder) -> None:
    reg = read(demo.TEMPLATE)
    # cameras speak ONVIF; devices with a `source` speak a vendor's MQTT or are polled
    mqtt_ids = {d.id for d in reg.devices if d.kind != "camera" and d.source is None}
    sim = Simulator(reg, broker.url(), rate_scale=30, seed=7, scenario=Scenario.quiet())

    def every_device_sent_two_statuses() -> bool:
        seen: dict[str, int] = {}
        for m in recorder.snapshot():
            if m.channel == "status":
                seen[m.device_id] = seen.get(m.device_id, 0) + 1
        return set(seen) == mqtt_ids and min(seen.values()) >= 2

    async def body(sim: Simulator) -> None:
        await until(every_device_sent_two_statuses)

    run_sim(sim, body)
    msgs = recorder.wait_for(
        lambda ms: sum(m.channel == "availability" and m.payload == b"offline" for m in ms) >= len(mqtt_ids)
    )
    assert recorder.bad == []
    assert not any(m.device_id.startswith(("tg-cam", "lt-cam")) for m in msgs), (
        "cameras speak ONVIF, not MQTT"
    )
    for dev_id in mqtt_ids:
        # online on connect (retained), offline when switched off cleanly
        assert availability(msgs, dev_id)[0] == "online"
        assert availability(msgs, dev_id)[-1] == "offline"
    fields = {kind: set(payloads.FIELDS[kind]) for kind in ("speaker", "eboard", "wifi", "gateway")}
    for m in msgs:
        if m.channel == "status":
            doc = orjson.loads(m.payload)
            doc.pop("ts", None)
            assert set(doc) <= fields[m.kind], f"{m.device_id}: unexpected fields {set(doc) - fields[m.kind]}"
    by_kind = {m.kind: orjson.loads(m.payload) for m in msgs if m.channel == "status"}
    assert {"volume", "playing", "rssi_dbm", "power"} <= set(by_kind["speaker"])
    assert {"screen_on", "brightness_pct", "content_id", "errors"} <= set(by_kind["eboard"])
    assert {"clients", "uptime_s", "uplink_up", "rx_bytes"} <= set(by_kind["wifi"])
    assert {"uplink_up", "rtt_ms", "uptime_s"} <= set(by_kind["gateway"])


def test_killed_device_leaves_its_last_will_offline(broker: Mosquitto, recorder: Recorder) -> None:
    reg = parse_yaml(SMALL)
    sim = Simulator(reg, broker.url(), rate_scale=10, seed=1, scenario=Scenario.quiet())

    async def body(sim: Simulator) -> None:
        await until(lambda: availability(recorder.snapshot(), "eb-ubnd") == ["online"])
        sim.outage("eb-ubnd", 1.5)
        # the device said nothing: the broker published its will
        await until(lambda: availability(recorder.snapshot(), "eb-ubnd") == ["online", "offline"])
        assert sim.devices["eb-ubnd"].link is None
        await until(lambda: availability(recorder.snapshot(), "eb-ubnd") == ["online", "offline", "online"])

    run_sim(sim, body)
    assert recorder.bad == []
    boots = [
        orjson.loads(m.payload)
        for m in recorder.snapshot()
        if m.channel == "event" and m.device_id == "eb-ubnd"
    ]
    assert [e["type"] for e in boots] == ["boot"]


def test_router_outage_takes_its_children_silent(broker: Mosquitto, recorder: Recorder) -> None:
    reg = parse_yaml(SMALL)
    # the router's scheduled power cut: from 180 s to 420 s simulated, i.e. 1.8 s to 4.2 s at x100
    scenario = Scenario(router_outage=("gw-bac-thanh",), random_outages=False)
    sim = Simulator(reg, broker.url(), rate_scale=100, seed=3, scenario=scenario)
    marks: dict[str, float] = {}

    async def body(sim: Simulator) -> None:
        await until(lambda: availability(recorder.snapshot(), "gw-bac-thanh")[-2:] == ["offline", "online"])
        await until(
            lambda: all(availability(recorder.snapshot(), c)[-2:] == ["offline", "online"] for c in CHILDREN)
        )
        marks["back"] = time.monotonic()

    run_sim(sim, body)
    msgs = recorder.snapshot()
    assert recorder.bad == []
    offline_at: dict[str, float] = {}
    for m in msgs:
        if m.channel == "availability" and m.payload == b"offline":
            offline_at.setdefault(m.device_id, m.at)
    assert set(CHILDREN) | {"gw-bac-thanh"} <= set(offline_at)
    assert "eb-ubnd" not in offline_at or offline_at["eb-ubnd"] > marks["back"], (
        "outside the ấp nothing failed"
    )
    went_down = min(offline_at[d] for d in ("gw-bac-thanh", *CHILDREN))
    # the router's own return, as the broker delivered it
    marks["back"] = next(
        m.at
        for m in msgs
        if m.device_id == "gw-bac-thanh"
        and m.channel == "availability"
        and m.payload == b"online"
        and m.at > offline_at["gw-bac-thanh"]
    )
    for child in CHILDREN:
        silent = [
            m
            for m in msgs
            if m.device_id == child and m.channel == "status" and offline_at[child] < m.at < marks["back"]
        ]
        assert silent == [], f"{child} published while its router was down"
    elsewhere = [
        m
        for m in msgs
        if m.device_id == "eb-ubnd" and m.channel == "status" and went_down < m.at < marks["back"]
    ]
    assert elsewhere, "devices outside the ấp kept publishing"


def test_skewed_clock_stays_within_five_minutes(broker: Mosquitto, recorder: Recorder) -> None:
    reg = parse_yaml(SMALL)
    scenario = Scenario(clock_skew_s={"spk-bac-thanh-1": CLOCK_SKEW_S}, random_outages=False)
    sim = Simulator(reg, broker.url(), rate_scale=30, seed=1, scenario=scenario)

    async def body(sim: Simulator) -> None:
        await until(
            lambda: any(
                m.device_id == "spk-bac-thanh-1" and m.channel == "status" for m in recorder.snapshot()
            )
        )

    run_sim(sim, body)
    status = next(
        m for m in recorder.snapshot() if m.device_id == "spk-bac-thanh-1" and m.channel == "status"
    )
    ts = datetime.fromisoformat(orjson.loads(status.payload)["ts"])
    ahead = (ts - datetime.now(UTC)).total_seconds()
    assert 60 < ahead < 300
    assert recorder.bad == []


def test_same_seed_same_devices() -> None:
    reg = read(demo.TEMPLATE)

    async def first_readings(seed: int) -> dict[str, object]:
        sim = Simulator(reg, "mqtt://127.0.0.1:1", seed=seed)
        from simulator.devices import SimDevice

        out = {}
        for d in reg.devices:
            if d.kind != "camera":
                dev = SimDevice(sim, d)
                out[d.id] = (dev.ts_style, dev.model.values.get("volume"), dev.outage_at)
        return out

    a = asyncio.run(first_readings(5))
    assert a == asyncio.run(first_readings(5))
    assert a != asyncio.run(first_readings(6))


def test_a_speaker_now_and_then_plays_what_nobody_scheduled(broker: Mosquitto, recorder: Recorder) -> None:
    reg = parse_yaml(SMALL)
    # simulated 300-420 s: 3 to 4.2 s at x100
    scenario = Scenario(unscheduled_play=("spk-bac-thanh-1",), random_outages=False)
    # at noon in the commune, away from the speakers' own 6:00 and 17:00 programmes
    noon, t0 = datetime(2026, 11, 24, 5, 0, tzinfo=UTC).timestamp(), time.time()
    sim = Simulator(
        reg, broker.url(), rate_scale=100, seed=1, scenario=scenario, clock=lambda: noon + time.time() - t0
    )

    def playing() -> list[tuple[bool, str | None]]:
        out = []
        for m in recorder.snapshot():
            if m.device_id == "spk-bac-thanh-1" and m.channel == "status":
                doc = orjson.loads(m.payload)
                out.append((doc["playing"], doc.get("source")))
        return out

    async def body(sim: Simulator) -> None:
        await until(lambda: (True, "usb") in playing() and playing()[-1][0] is False)

    run_sim(sim, body)
    seen = playing()
    first = seen.index((True, "usb"))
    assert set(seen[:first]) == {(False, None)} and (False, None) in seen[first:]
    messages = [
        orjson.loads(m.payload)["message"]
        for m in recorder.snapshot()
        if m.device_id == "spk-bac-thanh-1" and m.channel == "event"
    ]
    assert messages[:2] == ["Bắt đầu phát: USB", "Kết thúc phát thanh"]
    assert recorder.bad == []
