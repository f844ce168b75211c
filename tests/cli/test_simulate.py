"""`ioc simulate` in a subprocess against a real Mosquitto."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli.embedded import Mosquitto
from services import registry_file
from tests.fix_pg import private_dir
from tests.simulator.recorder import Recorder, availability

REGISTRY = """
commune: {id: long-thanh, name: "Xã Long Thành", district: "Huyện Yên Thành", province: "Nghệ An"}
villages:
  - {id: xom-4, name: "Xóm 4"}
devices:
  - {id: gw-xom-4, kind: gateway, village: xom-4, heartbeat_s: 30}
  - {id: spk-xom-4, kind: speaker, village: xom-4, parent: gw-xom-4, heartbeat_s: 30}
  - {id: wifi-chua-lang, kind: wifi, village: xom-4, parent: gw-xom-4, heartbeat_s: 30}
  - {id: eb-cho, kind: eboard, village: xom-4, parent: gw-xom-4, heartbeat_s: 30}
"""
IDS = ("gw-xom-4", "spk-xom-4", "wifi-chua-lang", "eb-cho")


def simulate(broker: Mosquitto, *args: str, data_dir: Path | None = None) -> subprocess.Popen[bytes]:
    d = data_dir or private_dir("ioc-sim-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env["IOC_MQTT_URL"] = broker.url()
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "simulate", *args, "--data-dir", str(d)],
        env=env,
        cwd=d,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.timeout(60)
def test_killed_simulator_leaves_every_device_offline_by_last_will(broker: Mosquitto, tmp_path: Path) -> None:
    reg = tmp_path / "registry.yaml"
    reg.write_text(REGISTRY, encoding="utf-8")
    rec = Recorder(broker.host, broker.port or 0)
    proc = simulate(broker, str(reg), "--rate-scale", "30", "--quiet-faults")
    try:
        rec.wait_for(lambda ms: all(any(m.device_id == d and m.channel == "status" for m in ms) for d in IDS))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        msgs = rec.wait_for(lambda ms: all(availability(ms, d)[-1:] == ["offline"] for d in IDS))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rec.close()
    assert rec.bad == []
    for d in IDS:
        assert availability(msgs, d) == ["online", "offline"]


@pytest.mark.timeout(60)
def test_simulate_demo_writes_the_demo_registry_and_stops_on_sigterm(broker: Mosquitto) -> None:
    rec = Recorder(broker.host, broker.port or 0)
    d = private_dir("ioc-sim-")
    proc = simulate(broker, "--demo", "--rate-scale", "10", "--seed", "2", data_dir=d)
    try:
        msgs = rec.wait_for(
            lambda ms: (
                {m.device_id for m in ms if m.channel == "status"}
                >= {"tg-gw-trung-binh", "lt-spk-xom-11", "lt-eb-cho"}
            )
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        # a clean stop says goodbye: `offline`, not left to the will
        msgs = rec.wait_for(lambda ms: availability(ms, "lt-eb-cho")[-1:] == ["offline"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rec.close()
    assert rec.bad == []
    assert not any(m.kind == "camera" for m in msgs)
    written = registry_file.read(d / "demo-registry.yaml")
    port = json.loads((d / "demo.json").read_text())["onvif_port"]
    assert {dev.onvif.port for dev in written.devices if dev.onvif} == {port}
