"""End to end on the real broker, database and gateway: an emergency to a village's speakers is
delivered by `ioc ingest`'s worker, played by simulated speakers (media fetched by the signed
URL, sha256 checked), reported back through ingest, and the village is `reached`."""

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ingest.service import IngestService, IngestSettings
from services.registry_file import parse_yaml
from simulator.devices import Simulator
from simulator.scenario import Scenario
from tests.broadcasts.conftest import SECRET, wav
from tests.dashboard.serve import gateway
from tests.gateway.conftest import THOAI_GIANG, headers_for, seed
from tests.support import scalar, wait_for


@pytest.fixture
def base(db_url: str) -> Iterator[str]:
    seed(db_url)
    with gateway(db_url, secret_key=SECRET) as url:
        yield url


@pytest.fixture
def ingest(db_url: str, mqtt_url: str, base: str) -> Iterator[IngestService]:
    settings = IngestSettings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=db_url,
        mqtt_url=mqtt_url,
        ingest_id="ingest-broadcasts",
        ingest_onvif=False,
        ingest_sources=False,
        secret_key=SECRET,
        public_url=base,
    )
    with IngestService(settings) as svc:
        wait_for(lambda: svc.health.check())
        yield svc


def run_sim(sim: Simulator, body: Callable[[], Any]) -> None:
    async def main() -> None:
        async def drive() -> None:
            try:
                await sim.ready.wait()
                await asyncio.to_thread(body)
            finally:
                sim.stop()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(sim.run())
            tg.create_task(drive())

    asyncio.run(main())


@pytest.mark.timeout(180)
def test_an_emergency_to_a_village_ends_done_and_the_village_reached(
    db_url: str, mqtt_url: str, base: str, ingest: IngestService
) -> None:
    sim = Simulator(parse_yaml(THOAI_GIANG), mqtt_url, rate_scale=10, seed=3, scenario=Scenario.quiet())
    sim.cmd_fault_p = 0.0  # type: ignore[attr-defined]
    auth = headers_for(db_url)("op-tg")
    seen: dict[str, Any] = {}

    def body() -> None:
        speakers = ("spk-trung-binh-1", "spk-tay-binh-1")
        wait_for(
            lambda: (
                scalar(
                    db_url,
                    "SELECT count(*) FROM device_state WHERE state = 'online' AND device_id = ANY(%s)",
                    (list(speakers),),
                )
                == 2
            ),
            timeout=60,
        )
        with httpx.Client(base_url=base, headers=auth, timeout=30) as http:
            r = http.post("/api/v1/media", files={"file": ("canh-bao.wav", wav(2.0), "audio/wav")})
            assert r.status_code == 201, r.text
            body = {
                "title": "Cảnh báo lũ",
                "priority": "emergency",
                "risk_level": 3,
                "media_id": r.json()["id"],
                "targets": {"villages": ["trung-binh"], "kinds": ["speaker"]},
            }
            r = http.post("/api/v1/broadcasts", json=body)
            assert r.status_code == 201, r.text
            bid = r.json()["id"]

            def done() -> dict[str, Any] | None:
                b = http.get(f"/api/v1/broadcasts/{bid}").json()
                return b if b["deliveries"] and all(d["state"] == "done" for d in b["deliveries"]) else None

            seen["broadcast"] = wait_for(done, timeout=60, interval=0.2)
            seen["dead"] = scalar(db_url, "SELECT count(*) FROM dead_letters WHERE topic LIKE '%%cmd_result'")

    run_sim(sim, body)
    b = seen["broadcast"]
    assert [(d["device_id"], d["state"]) for d in b["deliveries"]] == [("spk-trung-binh-1", "done")]
    assert b["coverage"] == [
        {"commune": "thoai-giang", "village": "trung-binh", "reached": True, "reason": None}
    ]
    assert seen["dead"] == 0
