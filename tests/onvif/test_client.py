"""The ONVIF client wrapper against the simulator over real HTTP: every misbehaviour becomes
one of our three errors (unreachable / auth / protocol), or is worked around."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ingest.onvif.client import CameraAuthError, CameraClient, CameraProtocolError, CameraUnreachable
from simulator.onvif import CameraFarm, CameraSpec
from simulator.onvif.camera import CLOCK_SKEW_S
from tests.onvif.conftest import PASSWORD


def with_camera(
    faults: set[str] = frozenset(),
    password: str = PASSWORD,  # type: ignore[assignment]
    timeout_s: float = 2.0,
    clock_offset_s: float = 0.0,
) -> Callable[[Callable[[CameraFarm, CameraClient], Awaitable[Any]]], Any]:
    """Run `body(farm, client)` against one simulated camera `cam-1`."""

    def run(body: Callable[[CameraFarm, CameraClient], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            spec = CameraSpec("cam-1", "admin", PASSWORD, frozenset(faults), clock_offset_s)
            async with CameraFarm([spec], discovery=False) as farm:
                c = CameraClient(
                    farm.host,
                    farm.port,
                    "/onvif/cam-1/device_service",
                    "admin",
                    password,
                    timeout_s=timeout_s,
                )
                await c.open()
                try:
                    return await body(farm, c)
                finally:
                    await c.close()

        return asyncio.run(main())

    return run


def test_clock_gives_offset_and_rtt_without_credentials() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        clock = await c.clock()
        assert abs(clock.offset_s - 42) < 2 and clock.rtt_ms >= 0

    with_camera(password="wrong", clock_offset_s=42)(body)


def test_wrong_password_is_an_auth_error_not_unreachable() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        await c.clock()  # PRE_AUTH: still answers
        with pytest.raises(CameraAuthError):
            await c.device_info()

    with_camera(password="not-the-password")(body)


def test_clock_years_off_refuses_digests_until_compensated() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        clock = await c.clock()
        assert abs(clock.offset_s - CLOCK_SKEW_S) < 2
        with pytest.raises(CameraAuthError):
            await c.device_info()
        assert await c.compensate(clock.offset_s)
        info = await c.device_info()
        assert info.manufacturer == "Commune IOC"
        assert not await c.compensate(clock.offset_s + 1)  # small drift keeps the session

    with_camera({"clock_skew"})(body)


def test_http_401_on_pre_auth_calls_retries_with_credentials() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        clock = await c.clock()
        assert abs(clock.offset_s) < 2

    with_camera({"preauth_401"})(body)


def test_soap_fault_with_http_200_is_still_a_fault() -> None:
    async def refused(farm: CameraFarm, c: CameraClient) -> None:
        with pytest.raises(CameraAuthError):
            await c.device_info()

    with_camera({"soap_fault_200", "auth_fail"})(refused)

    async def unsupported(farm: CameraFarm, c: CameraClient) -> None:
        # GetServices answers a fault with HTTP 200: the client falls back to GetCapabilities.
        xaddrs = await c.discover_services()
        assert any(x.endswith("/media_service") for x in xaddrs.values())

    with_camera({"soap_fault_200", "no_getservices"})(unsupported)


def test_malformed_xml_is_a_protocol_error() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        await c.discover_services()
        with pytest.raises(CameraProtocolError, match="malformed"):
            await c.device_info()
        with pytest.raises(CameraProtocolError, match="malformed"):
            await c.profiles()

    with_camera({"malformed_xml"})(body)


def test_private_lan_xaddrs_are_rewritten_to_the_configured_host() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        xaddrs = await c.discover_services()
        assert xaddrs and all(x.startswith(f"http://{farm.host}:{farm.port}/") for x in xaddrs.values())
        profiles = await c.profiles()
        assert profiles[0].snapshot_uri and profiles[0].snapshot_uri.startswith(
            f"http://{farm.host}:{farm.port}/"
        )
        assert profiles[0].stream_uri == f"rtsp://{farm.host}:554/cam-1/main"
        sub = await c.subscribe(60)
        assert sub.address.startswith(f"http://{farm.host}:{farm.port}/")
        assert await c.pull(0.2)  # the initial states, fetched through the rewritten address

    with_camera({"nat_xaddrs"})(body)


def test_snapshot_with_basic_only_endpoint_falls_back_to_basic() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        await c.discover_services()
        uri = (await c.profiles())[0].snapshot_uri
        assert uri
        jpeg, scheme = await c.snapshot(uri)
        assert jpeg.startswith(b"\xff\xd8") and scheme == "basic"
        farm.set_faults("cam-1", set())
        jpeg, scheme = await c.snapshot(uri)
        assert jpeg.startswith(b"\xff\xd8") and scheme == "digest"

    with_camera({"basic_only_snapshot"})(body)


def test_stream_uri_credentials_are_stripped() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        await c.discover_services()
        profiles = await c.profiles()
        assert profiles[0].stream_uri == f"rtsp://{farm.host}:554/cam-1/main"
        assert PASSWORD not in repr(profiles) and PASSWORD not in repr(c)

    with_camera({"uri_credentials"})(body)


def test_down_and_hung_cameras_are_unreachable() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        with pytest.raises(CameraUnreachable):
            await c.clock()
        farm.set_faults("cam-1", {"hang"})
        await c.open()
        with pytest.raises(CameraUnreachable, match="no answer in time"):
            await c.clock()

    with_camera({"down"}, timeout_s=0.5)(body)


def test_pullpoint_delivers_changes_and_renews() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        await c.discover_services()
        assert c.has_events
        await c.subscribe(60)
        initial = await c.pull(0.2)
        assert {m.Message._value_1.PropertyOperation for m in initial} == {"Initialized"}
        farm.set_faults("cam-1", {"tamper"})
        changed = await c.pull(2)
        assert [m.Topic._value_1 for m in changed] == ["tns1:VideoSource/GlobalSceneChange/ImagingService"]
        await c.renew(60)
        farm.set_faults("cam-1", {"down"})  # a reboot loses the subscription
        with pytest.raises(CameraUnreachable):
            await c.pull(0.2)
        farm.set_faults("cam-1", set())
        await c.open()
        await c.discover_services()
        await c.subscribe(60)
        assert await c.pull(0.2)

    with_camera()(body)


def test_camera_without_event_service_has_no_events() -> None:
    async def body(farm: CameraFarm, c: CameraClient) -> None:
        await c.discover_services()
        assert not c.has_events

    with_camera({"no_events"})(body)
