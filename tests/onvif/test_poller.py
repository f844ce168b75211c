"""One camera poller (poll loop + PullPoint loop) against simulated cameras over real HTTP."""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from ingest.onvif.camera import CameraPoller, Tuning
from simulator.onvif import CameraFarm, CameraSpec
from simulator.onvif.camera import CLOCK_SKEW_S
from tests.onvif.conftest import PASSWORD, QUICK, Collector, poller


def spec(device_id: str, *faults: str) -> CameraSpec:
    return CameraSpec(device_id, "admin", PASSWORD, frozenset(faults))


@contextlib.asynccontextmanager
async def running(*pollers: CameraPoller) -> AsyncIterator[None]:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(p.run(), name=f"onvif[{p.t.device_id}]") for p in pollers]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()


def parse_ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_healthy_camera_status_has_spec_fields_and_uris_once() -> None:
    async def main() -> None:
        out = Collector()
        async with CameraFarm([spec("cam-1")], discovery=False) as farm, running(poller(farm, "cam-1", out)):
            await out.wait_for(lambda: len(out.of("cam-1")) >= 3 and out.of("cam-1")[-1].get("events"))
            first, *rest = out.of("cam-1")
            last = rest[-1]
            assert first["reachable"] is True and first["auth_failed"] is False
            assert abs(first["clock_offset_s"]) < 2 and first["rtt_ms"] >= 0
            assert (last["manufacturer"], last["model"], last["firmware"]) == (
                "Commune IOC",
                "SimCam 1080p",
                "2.4.1",
            )
            assert last["tamper"] is False and last["motion"] is False and last["recording"] is True
            assert first["stream_uri"] == "rtsp://127.0.0.1:554/cam-1/main"
            assert first["snapshot_uri"].endswith("/onvif/cam-1/snapshot.jpg?profile=main")
            assert not any("stream_uri" in p for p in rest)
            assert len(out.media) == 1 and out.media[0].snapshot_auth == "digest" and out.media[0].events
            assert [p["token"] for p in out.media[0].profiles] == ["main", "sub"]

    asyncio.run(main())


def test_dead_camera_never_delays_the_others() -> None:
    async def main() -> None:
        out = Collector()
        slow = Tuning(**{**QUICK.__dict__, "timeout_s": 30.0})
        sem = asyncio.Semaphore(2)  # fewer permits than cameras: the hung one holds one of them
        specs = [spec("cam-hung", "hang"), spec("cam-a"), spec("cam-b"), spec("cam-c")]
        async with CameraFarm(specs, discovery=False) as farm:
            pollers = [poller(farm, s.device_id, out, sem, tuning=slow) for s in specs]
            async with running(*pollers):
                await out.wait_for(lambda: all(len(out.of(d)) >= 2 for d in ("cam-a", "cam-b", "cam-c")))
                assert out.of("cam-hung") == []

    asyncio.run(main())


def test_unreachable_logged_once_and_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest.onvif")

    async def main() -> None:
        out = Collector()
        async with CameraFarm([spec("cam-1")], discovery=False) as farm, running(poller(farm, "cam-1", out)):
            await out.wait_for(lambda: out.of("cam-1"))
            farm.set_faults("cam-1", {"down"})
            await out.wait_for(lambda: [p for p in out.of("cam-1") if p["reachable"] is False][2:])
            assert out.of("cam-1")[-1] == {
                "ts": out.of("cam-1")[-1]["ts"],
                "reachable": False,
                "auth_failed": False,
            }
            farm.set_faults("cam-1", set())
            await out.wait_for(lambda: out.of("cam-1")[-1]["reachable"] and out.of("cam-1")[-1].get("events"))

    asyncio.run(main())
    msgs = [r.getMessage() for r in caplog.records if "cam-1" in r.getMessage()]
    assert len([m for m in msgs if "unreachable" in m]) == 1
    assert len([m for m in msgs if "reachable again" in m]) == 1


def test_wrong_credentials_are_auth_failed_not_offline(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ingest.onvif")

    async def main() -> None:
        out = Collector()
        async with CameraFarm([spec("cam-1")], discovery=False) as farm:
            async with running(poller(farm, "cam-1", out, password="wrong-password")):
                await out.wait_for(lambda: len(out.of("cam-1")) >= 3)
            assert all(p["reachable"] is True and p["auth_failed"] is True for p in out.of("cam-1"))
            assert "manufacturer" not in out.of("cam-1")[-1]

    asyncio.run(main())
    assert len([r for r in caplog.records if "refuses our credentials" in r.getMessage()]) == 1


def test_password_changed_on_camera_while_subscribed_becomes_auth_failed() -> None:
    async def main() -> None:
        out = Collector()
        async with CameraFarm([spec("cam-1")], discovery=False) as farm, running(poller(farm, "cam-1", out)):
            await out.wait_for(lambda: out.of("cam-1") and out.of("cam-1")[-1].get("events"))
            farm.set_faults("cam-1", {"auth_fail"})
            await out.wait_for(lambda: out.of("cam-1")[-1]["auth_failed"])

    asyncio.run(main())


def test_clock_years_off_is_compensated_and_events_keep_camera_time() -> None:
    async def main() -> None:
        out = Collector()
        async with CameraFarm([spec("cam-1", "clock_skew")], discovery=False) as farm:
            async with running(poller(farm, "cam-1", out)):
                await out.wait_for(lambda: out.of("cam-1") and out.of("cam-1")[-1].get("events"))
                farm.set_faults("cam-1", {"clock_skew", "tamper"})
                ev = (await out.wait_for(lambda: out.of("cam-1", "event")))[0]
        st = out.of("cam-1")[-1]
        assert st["auth_failed"] is False and st["manufacturer"] == "Commune IOC"
        assert abs(st["clock_offset_s"] - CLOCK_SKEW_S) < 2
        assert ev["type"] == "tamper" and ev["severity"] == "warning" and ev["active"] is True
        now = datetime.now(UTC)
        assert abs(parse_ts(ev["ts"]) - now) < timedelta(minutes=1)
        assert parse_ts(ev["camera_ts"]) - now > timedelta(days=3 * 365 - 1)

    asyncio.run(main())


def test_tamper_storage_and_motion_events_update_status() -> None:
    async def main() -> None:
        out = Collector()
        async with CameraFarm([spec("cam-1")], discovery=False) as farm, running(poller(farm, "cam-1", out)):
            await out.wait_for(lambda: out.of("cam-1") and out.of("cam-1")[-1].get("events"))
            farm.set_faults("cam-1", {"tamper", "storage_failure", "motion", "signal_loss"})
            await out.wait_for(
                lambda: out.of("cam-1")[-1].get("tamper") and out.of("cam-1")[-1].get("storage_failure")
            )
            await out.wait_for(lambda: len(out.of("cam-1", "event")) >= 5)
            farm.set_faults("cam-1", set())
            await out.wait_for(lambda: out.of("cam-1")[-1].get("tamper") is False)
        evs = {(e["type"], e["active"]): e for e in out.of("cam-1", "event")}
        assert evs[("storage_failure", True)]["severity"] == "critical"
        assert evs[("signal_loss", True)]["severity"] == "critical"
        assert evs[("recording", False)]["severity"] == "warning"
        assert evs[("motion", True)]["severity"] == "info"
        assert evs[("tamper", False)]["severity"] == "info"
        assert len({e["ts"] for e in out.of("cam-1", "event")}) == len(out.of("cam-1", "event"))

    asyncio.run(main())


def test_events_come_back_after_the_camera_reboots() -> None:
    async def main() -> None:
        out = Collector()
        async with CameraFarm([spec("cam-1")], discovery=False) as farm, running(poller(farm, "cam-1", out)):
            await out.wait_for(lambda: out.of("cam-1") and out.of("cam-1")[-1].get("events"))
            farm.set_faults("cam-1", {"down"})
            await out.wait_for(lambda: out.of("cam-1")[-1]["reachable"] is False)
            farm.set_faults("cam-1", set())
            await out.wait_for(lambda: out.of("cam-1")[-1]["reachable"] and out.of("cam-1")[-1].get("events"))
            farm.set_faults("cam-1", {"tamper"})
            await out.wait_for(lambda: out.of("cam-1", "event"))

    asyncio.run(main())


def test_camera_without_events_is_polled_only() -> None:
    async def main() -> None:
        out = Collector()
        async with CameraFarm([spec("cam-1", "no_events")], discovery=False) as farm:
            async with running(poller(farm, "cam-1", out)):
                await out.wait_for(lambda: len(out.of("cam-1")) >= 3)
        last = out.of("cam-1")[-1]
        assert last["reachable"] is True and last["events"] is False and "tamper" not in last
        assert out.media[0].events is False

    asyncio.run(main())


def test_misbehaving_firmware_stays_reachable_and_says_why() -> None:
    async def main() -> None:
        out = Collector()
        specs = [
            spec("cam-xml", "malformed_xml"),
            spec("cam-200", "soap_fault_200", "no_getservices"),
            spec("cam-nat", "nat_xaddrs", "basic_only_snapshot", "preauth_401"),
        ]
        async with CameraFarm(specs, discovery=False) as farm:
            async with running(*(poller(farm, s.device_id, out) for s in specs)):
                await out.wait_for(lambda: all(len(out.of(s.device_id)) >= 2 for s in specs))
                await out.wait_for(lambda: out.of("cam-nat")[-1].get("events"))
        xml = out.of("cam-xml")[-1]
        assert xml["reachable"] is True and xml["auth_failed"] is False and "malformed" in xml["error"]
        assert out.of("cam-200")[-1]["manufacturer"] == "Commune IOC"
        nat = next(m for m in out.media if m.device_id == "cam-nat")
        assert nat.snapshot_auth == "basic"
        assert all(f"{farm.host}:{farm.port}" in x for x in nat.xaddrs.values())

    asyncio.run(main())


def test_credentials_never_logged_nor_published(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> Collector:
        out = Collector()
        specs = [spec("cam-1", "uri_credentials"), spec("cam-2", "basic_only_snapshot"), spec("cam-3")]
        async with CameraFarm(specs, discovery=False) as farm:
            pollers = [
                poller(farm, "cam-1", out),
                poller(farm, "cam-2", out),
                poller(farm, "cam-3", out, password=PASSWORD + "-typo"),
            ]
            async with running(*pollers):
                await out.wait_for(lambda: all(len(out.of(s.device_id)) >= 2 for s in specs))
                farm.set_faults("cam-1", {"down"})
                await out.wait_for(lambda: out.of("cam-1")[-1]["reachable"] is False)
        return out

    out = asyncio.run(main())
    assert PASSWORD not in caplog.text
    assert PASSWORD not in json.dumps(out.messages)
    assert PASSWORD not in repr(out.media)
    assert out.of("cam-1")[0]["stream_uri"] == "rtsp://127.0.0.1:554/cam-1/main"
