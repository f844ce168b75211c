"""A camera whose poller fails unexpectedly is polled again (not left to drift offline unpolled)."""

import asyncio
import logging

import pytest

from ingest.onvif import poller as poller_module
from ingest.onvif.camera import CameraPoller
from ingest.onvif.poller import Poller
from simulator.onvif import CameraFarm, CameraSpec
from tests.onvif.conftest import PASSWORD, QUICK, Collector, target


def test_a_camera_poller_that_fails_is_started_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(poller_module, "RESTART_S", 0.05)
    real_run = CameraPoller.run
    runs = {"n": 0}

    async def failing_once(self: CameraPoller) -> None:
        runs["n"] += 1
        if runs["n"] == 1:
            raise RuntimeError("a firmware answer nobody foresaw")
        await real_run(self)

    monkeypatch.setattr(CameraPoller, "run", failing_once)

    async def main() -> None:
        out = Collector()
        async with CameraFarm([CameraSpec("cam-1", "admin", PASSWORD, frozenset())], discovery=False) as farm:
            # Only the camera supervision of the poller is used here: no database, no lock.
            p = Poller(None, out.publish, None, QUICK)  # type: ignore[arg-type]
            p.save_media = out.save_media  # type: ignore[method-assign]
            task = asyncio.create_task(p._guarded(target(farm, "cam-1")), name="onvif[cam-1]")  # noqa: SLF001
            try:
                await out.wait_for(lambda: out.of("cam-1"))
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        assert runs["n"] == 2
        assert out.of("cam-1")[0]["reachable"] is True

    with caplog.at_level(logging.ERROR, logger="ingest.onvif.poller"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records if "poller failed" in r.getMessage()] == [
        "camera cam-1: poller failed; starting it again in ~0 s"
    ]
