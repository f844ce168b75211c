"""ONVIF cameras of a registry, served on loopback by the ONVIF simulator (`simulator.onvif`)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from services.models import Registry
from simulator.scenario import Scenario

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _onvif_module() -> Any | None:
    try:
        import simulator.onvif as onvif
    except ImportError:
        return None
    return onvif if hasattr(onvif, "CameraFarm") and hasattr(onvif, "CameraSpec") else None


def camera_specs(reg: Registry, scenario: Scenario) -> dict[int, list[dict[str, Any]]]:
    """Keyword arguments of a `CameraSpec` per camera, grouped by the loopback port they answer on."""
    by_port: dict[int, list[dict[str, Any]]] = {}
    for d in reg.devices:
        if d.kind != "camera" or d.onvif is None or d.onvif.host not in LOOPBACK or d.retired_at:
            continue
        password = reg.passwords.get(d.id, "")
        if d.id in scenario.camera_wrong_password:
            # the camera was reset in the field: the IOC's stored password no longer works
            password = password + "-reset"
        by_port.setdefault(d.onvif.port, []).append(
            {
                "device_id": d.id,
                "username": d.onvif.username or "admin",
                "password": password,
                "faults": scenario.camera_faults.get(d.id, frozenset()),
                "clock_offset_s": scenario.camera_clock_offset_s.get(d.id, 0.0),
            }
        )
    return by_port


async def start_farms(
    stack: AsyncExitStack,
    reg: Registry,
    scenario: Scenario,
    host: str = "127.0.0.1",
    *,
    sockets: dict[int, socket.socket] | None = None,
    off_air: Callable[[str], object] | None = None,
) -> int:
    """Serve every loopback camera of `reg` (one farm per port) until `stack` closes; returns how many.

    A port found in `sockets` is served on that already-listening socket (bound by `ioc up`
    before it wrote the port into the registry), the others are bound here. A camera for which
    `off_air(device_id)` is true (`Simulator.off_air`: its router lost power) stops answering.
    """
    specs = camera_specs(reg, scenario)
    total = sum(len(v) for v in specs.values())
    if not total:
        return 0
    onvif = _onvif_module()
    if onvif is None:
        log.warning("simulator.onvif is not available: %d simulated camera(s) will not answer", total)
        return 0
    for port, cams in sorted(specs.items()):
        farm = await stack.enter_async_context(
            onvif.CameraFarm(
                [onvif.CameraSpec(**c) for c in cams],
                host=host,
                port=port,
                sock=(sockets or {}).get(port),
                off_air=(lambda device_id: bool(off_air(device_id))) if off_air else None,
            )
        )
        log.info("%d ONVIF camera(s) answer on %s:%s", len(cams), host, farm.port)
    return total
