"""WS-Discovery against the simulator on loopback: unicast, multicast, and `ioc cameras discover`."""

import asyncio
import csv
import io

import psycopg
import pytest

from cli.main import main as ioc
from ingest.onvif.discovery import probe
from services import registry, registry_file
from simulator.onvif import CameraFarm, CameraSpec
from simulator.onvif.discovery import endpoint_uuid

SPECS = [CameraSpec(f"cam-d{i}", "admin", "pw") for i in range(3)]


def test_unicast_probe_finds_every_answering_camera() -> None:
    async def main() -> None:
        async with CameraFarm(
            [*SPECS, CameraSpec("cam-off", "admin", "pw", frozenset({"down"}))], multicast=False
        ) as farm:
            found = await probe(address=(farm.host, farm.discovery_port), timeout_s=0.5)
            assert [f.name for f in found] == ["cam-d0", "cam-d1", "cam-d2"]
            f = found[0]
            assert f.location == (farm.host, farm.port, "/onvif/cam-d0/device_service")
            assert f.endpoint == endpoint_uuid("cam-d0") and f.hardware == "SimCam_1080p"
            assert "dn:NetworkVideoTransmitter" in f.types

    asyncio.run(main())


def test_multicast_probe_on_loopback_finds_the_farm() -> None:
    async def main() -> None:
        async with CameraFarm(SPECS) as farm:
            found = await probe(interface="127.0.0.1", timeout_s=1.0)
            # other farms on this machine may answer too: ours must be among them
            mine = {f.location for f in found if f.location and f.location[1] == farm.port}
            assert mine == {(farm.host, farm.port, f"/onvif/{s.device_id}/device_service") for s in SPECS}

    asyncio.run(main())


def test_cli_discover_lists_only_cameras_not_in_the_registry(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IOC_DATABASE_URL", db_url)

    async def main() -> int:
        async with CameraFarm(SPECS, multicast=False) as farm:
            yaml = (
                "commune: {id: thoai-giang, name: T}\ndevices:\n"
                f"  - {{id: cam-d1, kind: camera, onvif: {{host: 127.0.0.1, port: {farm.port}, "
                "path: /onvif/cam-d1/device_service}}\n"
            )
            with psycopg.connect(db_url) as conn:
                registry.import_registry(conn, registry_file.parse_yaml(yaml), None)
            args = [
                "cameras",
                "discover",
                "--address",
                f"127.0.0.1:{farm.discovery_port}",
                "--timeout",
                "0.5",
            ]
            return await asyncio.to_thread(ioc, args)

    assert asyncio.run(main()) == 0
    out = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert [r["name"] for r in rows] == ["cam-d0", "cam-d2"]
    assert rows[0]["path"] == "/onvif/cam-d0/device_service" and rows[0]["host"] == "127.0.0.1"
    assert "3 ONVIF device(s) answered, 2 not in the registry" in out.err


def test_cli_discover_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ioc(["cameras", "discover", "--help"])
    text = capsys.readouterr().out
    assert "--interface" in text and "--timeout" in text and "--address" in text
