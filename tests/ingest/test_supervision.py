"""A worker of `ioc ingest` that fails ends the process with a non-zero exit (its supervisor starts it
again), logged once with the worker's name; a planned stop exits 0 and says so in process_health;
the ONVIF poller's stop is never lost, however early it comes."""

import json
import re
import signal
import subprocess
import threading
from pathlib import Path

import psycopg

from ingest.service import IngestService, IngestSettings
from services.topics import device_topic
from tests.gateway.test_cmd_gateway import clean_env, ioc
from tests.ingest.conftest import Publisher, load_registry
from tests.support import scalar, wait_for


def _ingest(db_url: str, mqtt_url: str, tmp_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = clean_env(tmp_path, IOC_DATABASE_URL=db_url, IOC_MQTT_URL=mqtt_url)
    with log.open("wb") as f:
        return ioc(
            ["ingest", "--id", "ingest-sup", "--no-onvif"], env, tmp_path, stdout=f, stderr=subprocess.STDOUT
        )


def _hears(db_url: str) -> bool:
    return bool(scalar(db_url, "SELECT count(*) FROM process_health WHERE name = 'ingest-sup'"))


def _stopped(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    try:
        return proc.wait(timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_liveness_worker_failing_ends_ingest_with_exit_1(db_url: str, mqtt_url: str, tmp_path: Path) -> None:
    load_registry(db_url)
    log = tmp_path / "ingest.log"
    proc = _ingest(db_url, mqtt_url, tmp_path, log)
    try:
        wait_for(lambda: _hears(db_url), timeout=60)
        # The schema changed under a running ingest (a migration gone wrong): not a lost database.
        with psycopg.connect(db_url) as conn:
            conn.execute("ALTER TABLE process_health RENAME TO process_health_gone")
    finally:
        code = _stopped(proc)
    text = log.read_text()
    assert code == 1, text[-2000:]
    # the liveness sweep or the poll scheduler (both report in process_health) meets it first
    assert re.search(r"worker ingest\.(liveness|poll) failed: UndefinedTable", text), text[-2000:]
    assert text.count("Traceback") == 1


def test_writer_failing_ends_ingest_with_exit_1_and_acks_nothing(
    db_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    load_registry(db_url)
    log = tmp_path / "ingest.log"
    proc = _ingest(db_url, mqtt_url, tmp_path, log)
    pub = Publisher(mqtt_url)
    try:
        wait_for(lambda: _hears(db_url), timeout=60)
        with psycopg.connect(db_url) as conn:
            conn.execute("ALTER TABLE device_state RENAME TO device_state_gone")
        pub.publish(device_topic("thoai-giang", "speaker", "spk-1", "status"), json.dumps({"volume": 5}))
    finally:
        code = _stopped(proc)
        pub.close()
    text = log.read_text()
    assert code == 1, text[-2000:]
    assert "worker ingest.writer failed: UndefinedTable" in text
    assert text.count("Traceback") == 1


def test_a_planned_stop_exits_0_and_is_written_down(db_url: str, mqtt_url: str, tmp_path: Path) -> None:
    load_registry(db_url)
    log = tmp_path / "ingest.log"
    proc = _ingest(db_url, mqtt_url, tmp_path, log)
    try:
        wait_for(lambda: _hears(db_url), timeout=60)
        proc.send_signal(signal.SIGTERM)
    finally:
        code = _stopped(proc)
    assert code == 0, log.read_text()[-2000:]
    info = scalar(db_url, "SELECT info FROM process_health WHERE name = 'ingest-sup'")
    assert info["stopped"] == "planned" and info["stopped_at"]


def test_onvif_poller_stops_even_when_stopped_before_its_loop_runs(db_url: str, mqtt_url: str) -> None:
    # The stop used to be sent to the poller's event loop only if its thread had made the loop
    # already; a stop right after the start was lost and the thread ran on.
    load_registry(db_url)
    s = IngestSettings(
        _env_file=None,
        database_url=db_url,
        mqtt_url=mqtt_url,  # type: ignore[call-arg]
        ingest_id="ingest-race",
        ingest_onvif=True,
    )
    for _ in range(5):
        svc = IngestService(s)
        with svc:
            pass
        assert not [t.name for t in threading.enumerate() if t.name == "ingest.onvif"]
        assert svc.workers.failure is None
