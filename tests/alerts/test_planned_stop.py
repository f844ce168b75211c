"""A planned stop is not an incident: the real `ioc ingest` and `ioc alerts` stopped with SIGTERM and
started again (in either order) notify nobody; a kill -9 of ingest still raises "IOC lost its
broker". And `ioc alerts` whose tables change under it exits 1, named, for its supervisor."""

import signal
import subprocess
import time
from pathlib import Path

import psycopg

from tests.alerts.conftest import Receiver, alerts, base_config, load_registry, write_config
from tests.gateway.test_cmd_gateway import clean_env, ioc
from tests.support import scalar, wait_for


class Stack:
    """`ioc ingest` and `ioc alerts` as `ioc up` runs them: child processes, logs in files."""

    def __init__(self, db_url: str, mqtt_url: str, alerts_file: Path, tmp_path: Path) -> None:
        self.env = clean_env(
            tmp_path,
            IOC_DATABASE_URL=db_url,
            IOC_MQTT_URL=mqtt_url,
            IOC_ALERTS_FILE=str(alerts_file),
            IOC_ALERTS_TICK_S="0.2",
        )
        self.db_url, self.tmp = db_url, tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.runs = 0

    def start(self, name: str) -> None:
        self.runs += 1
        args = ["ingest", "--id", "ingest-p", "--no-onvif"] if name == "ingest" else ["alerts"]
        with (self.tmp / f"{name}-{self.runs}.log").open("wb") as f:
            self.procs[name] = ioc(args, self.env, self.tmp, stdout=f, stderr=subprocess.STDOUT)
        if name == "ingest":
            wait_for(self.ingest_fresh, timeout=60)
        else:
            wait_for(lambda: scalar(self.db_url, "SELECT count(*) FROM process_health WHERE kind = 'alerts'"))

    def ingest_fresh(self) -> bool:
        return bool(
            scalar(
                self.db_url,
                "SELECT count(*) FROM process_health WHERE name = 'ingest-p'"
                " AND seen_at > now() - interval '2 s' AND info->>'stopped' IS NULL",
            )
        )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        return proc.wait(60)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()
        self.procs.clear()


def test_a_planned_restart_notifies_nobody_and_a_kill_still_does(
    db_url: str, mqtt_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    cfg = write_config(tmp_path, base_config(receiver, broker_lost={"stale_s": 2}))
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM alerts")  # the ones a clean database may hold: none
    stack = Stack(db_url, mqtt_url, cfg, tmp_path)
    try:
        stack.start("ingest")
        stack.start("alerts")
        # `ioc up` stopped with Ctrl-C: alerts first, then ingest (each exits 0).
        assert stack.stop("alerts") == 0
        assert stack.stop("ingest") == 0
        # Started again the other way round, with ingest's report long stale: alerts first, then
        # ingest, then a restart of ingest alone under a running alerts.
        time.sleep(3)
        stack.start("alerts")
        time.sleep(3)
        stack.start("ingest")
        assert stack.stop("ingest") == 0
        time.sleep(4)  # twice the rule's stale_s with no ingest at all
        stack.start("ingest")
        time.sleep(2)
        assert alerts(db_url) == [] and receiver.requests == []
        # Not planned: ingest killed. One alert, one notification.
        stack.stop("ingest", signal.SIGKILL)
        lost = wait_for(lambda: alerts(db_url, "rule = 'broker_lost'"), timeout=30)
        wait_for(lambda: len(receiver.requests) == 1)
    finally:
        stack.close()
    assert len(lost) == 1 and lost[0]["device_id"] is None
    assert receiver.json()[0]["title"] == (
        "[CẢNH BÁO] Trung tâm mất kết nối với máy chủ nhận tin thiết bị (MQTT): trạng thái thiết bị tạm dừng cập nhật"
    )


def test_ioc_alerts_exits_1_naming_its_worker_when_its_tables_change(
    db_url: str, mqtt_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    stack = Stack(db_url, mqtt_url, write_config(tmp_path, base_config(receiver)), tmp_path)
    try:
        stack.start("alerts")
        wait_for(lambda: scalar(db_url, "SELECT bool_or((info->>'active')::bool) FROM process_health"))
        with psycopg.connect(db_url) as conn:
            conn.execute("ALTER TABLE alerts RENAME TO alerts_gone")
        code = stack.procs["alerts"].wait(60)
    finally:
        stack.close()
    text = (tmp_path / "alerts-1.log").read_text()
    assert code == 1, text[-2000:]
    assert "worker alerts.engine failed" in text
