"""The poll scheduler on real components: PostgreSQL, the IOC's Mosquitto, the ingest pipeline and
the alert engine; devices are TCP listeners and HTTP servers on loopback that the test opens and
closes, and ICMP to 127.0.0.0/8. Partition and failover with two schedulers on one database, one of
them a separate process killed with SIGKILL."""

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.service import IngestService, IngestSettings
from ingest.sources.poll import PollScheduler, next_slot, owner, phase
from tests.alerts.conftest import running, write_config
from tests.alerts.conftest import settings as alert_settings
from tests.sources import stack
from tests.sources.stack import SECRET, load
from tests.sources.test_probes import Server
from tests.support import scalar, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Listener:
    """A TCP port on loopback that a device 'is': open answers, closed refuses."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock: socket.socket | None = None

    def open(self) -> "Listener":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.sock = s
        return self

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def rows(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def state(db_url: str, device_id: str) -> str | None:
    return scalar(db_url, "SELECT state FROM device_state WHERE device_id = %s", (device_id,))  # type: ignore[no-any-return]


def states(db_url: str, ids: tuple[str, ...]) -> list[str | None]:
    return [state(db_url, i) for i in ids]


# -- pure parts ----------------------------------------------------------------------------


def test_rendezvous_owner_is_shared_and_moves_only_the_dead_members_devices() -> None:
    ids = [f"dev-{i}" for i in range(2000)]
    three = ("a", "b", "c")
    split = {i: owner(i, three) for i in ids}
    counts = {m: sum(1 for o in split.values() if o == m) for m in three}
    assert all(500 < n < 833 for n in counts.values())  # about a third each
    after = {i: owner(i, ("a", "c")) for i in ids}
    # only b's devices move; a's and c's stay where they were
    assert all(after[i] == split[i] for i in ids if split[i] != "b")
    assert owner("dev-1", ()) is None


def test_slots_are_the_same_everywhere_and_spread_over_the_period() -> None:
    p = phase("gw-trung-binh", 30)
    assert 0 <= p < 30 and p == phase("gw-trung-binh", 30)
    s = next_slot("gw-trung-binh", 30, 1_000_000.0)
    assert 1_000_000.0 < s <= 1_000_030.0 and (s - p) % 30 == pytest.approx(0, abs=1e-6)
    assert next_slot("gw-trung-binh", 30, s) == pytest.approx(s + 30)
    phases = sorted(phase(f"dev-{i}", 30) for i in range(1000))
    assert phases[0] < 1 and phases[-1] > 29


# -- end to end ----------------------------------------------------------------------------


def registry_text(gw: Listener, ap: Listener, web: Server, auth_port: int) -> str:
    return f"""\
commune: {{id: thoai-giang, name: "Xã Thoại Giang"}}
villages:
  - {{id: bac-thanh, name: "Ấp Bắc Thạnh"}}
devices:
  - {{id: gw-bac-thanh, kind: gateway, village: bac-thanh, name: "Router ấp Bắc Thạnh",
     source: {{tcp: {{host: 127.0.0.1, port: {gw.port}, poll_s: 5, timeout_s: 1}}}}}}
  - {{id: ap-bac-thanh, kind: wifi, village: bac-thanh, parent: gw-bac-thanh,
     source: {{tcp: {{host: 127.0.0.1, port: {ap.port}, poll_s: 5, timeout_s: 1}}}}}}
  - {{id: eb-bac-thanh, kind: eboard, village: bac-thanh, parent: gw-bac-thanh,
     source: {{http: {{url: "{web.url("/json")}", poll_s: 5, timeout_s: 2,
                      fields: {{screen_on: display.on, brightness_pct: display.brightness}}}}}}}}
  - {{id: eb-cho, kind: eboard, village: bac-thanh,
     source: {{http: {{url: "http://admin:wrong@127.0.0.1:{auth_port}/auth", poll_s: 5, timeout_s: 2}}}}}}
  - {{id: gw-loopback, kind: gateway, village: bac-thanh,
     source: {{ping: {{host: 127.0.0.9, poll_s: 5}}}}}}
"""


def ingest_settings(db_url: str, mqtt_url: str) -> IngestSettings:
    return stack.ingest_settings(db_url, mqtt_url, "ingest-poll-test", poll=True)


@pytest.mark.slow
def test_polled_devices_go_online_offline_after_fail_after_and_back_through_the_pipeline(
    db_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    gw, ap = Listener().open(), Listener().open()
    web = Server()
    try:
        load(db_url, registry_text(gw, ap, web, web.port))
        # `for` longer than the spread of the village's polls: the children may fail a poll or two
        # before their router does (as with the default `for` of a deployment)
        alerts_file = write_config(tmp_path, {"rules": {"offline": {"for_s": 15}}})
        village = ("gw-bac-thanh", "ap-bac-thanh", "eb-bac-thanh")
        with (
            IngestService(ingest_settings(db_url, mqtt_url)) as svc,
            running(alert_settings(db_url, alerts_file)),
        ):
            wait_for(lambda: svc.health.check())
            wait_for(lambda: states(db_url, village) == ["online"] * 3, timeout=60)
            wait_for(lambda: state(db_url, "gw-loopback") == "online", timeout=60)
            metrics = scalar(db_url, "SELECT metrics FROM device_state WHERE device_id = 'eb-bac-thanh'")
            assert metrics["screen_on"] is True and metrics["brightness_pct"] == 80
            assert metrics["http_status"] == 200 and metrics["probe_ok"] is True
            assert metrics["probe_error"] is None and metrics["reachable"] is True
            ping_metrics = scalar(db_url, "SELECT metrics FROM device_state WHERE device_id = 'gw-loopback'")
            assert ping_metrics["loss_pct"] == 0.0 and ping_metrics["rtt_ms"] >= 0
            # wrong credentials: the device answers and refuses them, whatever its kind
            wait_for(lambda: state(db_url, "eb-cho") == "auth_failed", timeout=60)
            assert (
                scalar(db_url, "SELECT metrics->>'probe_error' FROM device_state WHERE device_id = 'eb-cho'")
                == "auth"
            )

            # The router alone stops answering: offline after two failed polls, not one.
            gw.close()
            wait_for(lambda: state(db_url, "gw-bac-thanh") == "offline", timeout=60)
            samples = rows(
                db_url,
                "SELECT metrics FROM status_samples WHERE device_id = 'gw-bac-thanh'"
                " AND metrics->>'probe_ok' = 'false' ORDER BY ts",
            )
            first, second = samples[0][0], samples[1][0]
            assert (first["probe_fails"], first["reachable"], first["probe_error"]) == (1, True, "refused")
            assert (second["probe_fails"], second["reachable"]) == (2, False)
            # the state changed once, on the second failure
            changes = rows(
                db_url,
                "SELECT state, reason FROM state_changes WHERE device_id = 'gw-bac-thanh' ORDER BY seq",
            )
            assert changes[-1] == ("offline", "device does not answer its polls")
            assert [c[0] for c in changes].count("offline") == 1

            # It answers again: online at the first success.
            gw.open()
            wait_for(lambda: state(db_url, "gw-bac-thanh") == "online", timeout=60)

            # The village loses power: router and children; one alert, the children in it.
            gw.close()
            ap.close()
            web.close()
            wait_for(lambda: states(db_url, village) == ["offline"] * 3, timeout=60)
            alert = wait_for(
                lambda: rows(
                    db_url,
                    "SELECT device_id, affected FROM alerts WHERE rule = 'offline' AND state = 'open'"
                    " AND device_id = 'gw-bac-thanh' AND cardinality(affected) = 2",
                ),
                timeout=60,
            )
            assert alert[0][1] == ["ap-bac-thanh", "eb-bac-thanh"]
            assert (
                scalar(
                    db_url,
                    "SELECT count(*) FROM alerts WHERE rule = 'offline' AND state = 'open'"
                    " AND device_id IN ('ap-bac-thanh', 'eb-bac-thanh')",
                )
                == 0
            )
    finally:
        gw.close()
        ap.close()
        web.close()


# -- partition and failover ------------------------------------------------------------------

N_DEVICES = 40


def ping_registry(n: int = N_DEVICES) -> str:
    lines = [
        'commune: {id: thoai-giang, name: "Xã Thoại Giang"}',
        "villages:",
        "  - {id: bac-thanh, name: Ấp Bắc Thạnh}",
        "devices:",
    ]
    for i in range(n):
        lines.append(
            f"  - {{id: gw-{i}, kind: gateway, village: bac-thanh,"
            f" source: {{ping: {{host: 127.0.2.{i + 1}, poll_s: 5, count: 1}}}}}}"
        )
    return "\n".join(lines) + "\n"


ALL = {f"gw-{i}" for i in range(N_DEVICES)}


@contextmanager
def scheduler(db_url: str, mqtt_url: str, name: str, **kw: Any) -> Iterator[PollScheduler]:
    s = PollScheduler(db_url, mqtt_url, SECRET, name, profiles_dir=None, **kw)
    stop = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            s.run(stop)
        except BaseException as err:  # noqa: BLE001 - reported to the test below
            failure.append(err)

    t = threading.Thread(target=main, name=f"test.poll.{name}", daemon=True)
    t.start()
    try:
        yield s
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    if failure:
        raise failure[0]


def polled_since(s: PollScheduler, before: dict[str, int]) -> set[str]:
    return {d for d, n in dict(s.started).items() if n > before.get(d, 0)}


@pytest.mark.slow
def test_two_schedulers_split_the_devices_without_overlap_and_a_survivor_takes_over(
    db_url: str, mqtt_url: str
) -> None:
    load(db_url, ping_registry())
    with scheduler(db_url, mqtt_url, "a", members_s=0.5) as a:
        with scheduler(db_url, mqtt_url, "b", members_s=0.5) as b:
            wait_for(lambda: a.members == ("a", "b") and b.members == ("a", "b"), timeout=30)
            wait_for(lambda: a.owned() | b.owned() == ALL and not a.owned() & b.owned(), timeout=30)
            assert a.owned() and b.owned()
            # Steady state: over more than a full period every device is polled, by one of them.
            base_a, base_b = dict(a.started), dict(b.started)
            wait_for(lambda: polled_since(a, base_a) | polled_since(b, base_b) == ALL, timeout=60)
            assert not polled_since(a, base_a) & polled_since(b, base_b)
            assert polled_since(a, base_a) <= a.owned() and polled_since(b, base_b) <= b.owned()
        # b stopped on purpose (it leaves at once): a polls everything.
        base_a = dict(a.started)
        wait_for(lambda: a.owned() == ALL, timeout=60)
        wait_for(lambda: polled_since(a, base_a) == ALL, timeout=60)


RUNNER = """
import sys, threading, time
from ingest.sources.poll import PollScheduler
s = PollScheduler(sys.argv[1], sys.argv[2], None, "doomed", profiles_dir=None, members_s=0.5)
threading.Thread(target=s.run, args=(threading.Event(),), daemon=True).start()
while True:
    print("owned", len(s.owned()), flush=True)
    time.sleep(0.2)
"""


@pytest.mark.slow
def test_a_scheduler_killed_with_sigkill_is_taken_over_by_the_survivor(db_url: str, mqtt_url: str) -> None:
    load(db_url, ping_registry())
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, db_url, mqtt_url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("owned") and int(line.split()[1]) > 0:
                break
        with scheduler(db_url, mqtt_url, "survivor", members_s=0.5) as s:
            wait_for(lambda: s.members == ("doomed", "survivor"), timeout=30)
            wait_for(lambda: 0 < len(s.owned()) < N_DEVICES, timeout=30)
            base = dict(s.started)
            proc.send_signal(signal.SIGKILL)
            # SPEC §8: a survivor takes over a dead one's devices within 60 s. Its row ages out
            # (15 s), then the survivor owns every device and has polled each, all counted from
            # the kill: one bound, not one per step.
            wait_for(lambda: s.owned() == ALL and polled_since(s, base) == ALL, timeout=60)
            assert s.members == ("survivor",)
            proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.slow
def test_an_snmp_agent_is_polled_by_the_scheduler_through_the_pipeline(
    db_url: str, mqtt_url: str, snmpd: Any
) -> None:
    from tests.fix_snmp import COMMUNITY

    load(
        db_url,
        f"""\
commune: {{id: thoai-giang, name: "Xã Thoại Giang"}}
villages:
  - {{id: bac-thanh, name: "Ấp Bắc Thạnh"}}
devices:
  - {{id: ap-bac-thanh, kind: wifi, village: bac-thanh,
     source: {{snmp: {{host: 127.0.0.1, port: {snmpd.port}, community: {COMMUNITY}, poll_s: 5,
                      extra: {{sys_location: 1.3.6.1.2.1.1.6.0, cpu_pct: 1.3.6.1.2.1.1.4.0}}}}}}}}
""",
    )
    with IngestService(ingest_settings(db_url, mqtt_url)) as svc:
        wait_for(lambda: svc.health.check())
        wait_for(lambda: state(db_url, "ap-bac-thanh") == "online", timeout=60)
        metrics = scalar(db_url, "SELECT metrics FROM device_state WHERE device_id = 'ap-bac-thanh'")
        assert metrics["probe_ok"] is True and metrics["reachable"] is True
        assert metrics["uptime_s"] >= 0 and isinstance(metrics.get("interfaces"), list)
        # an extra OID stored under its name; one answering text where the kind's cpu_pct wants a
        # number (sysContact) is dead-lettered alone, and the device stays online
        assert metrics["sys_location"] == "test" and "cpu_pct" not in metrics
        wait_for(
            lambda: (
                scalar(
                    db_url,
                    "SELECT count(*) FROM dead_letters WHERE device_id = 'ap-bac-thanh' AND detail LIKE %s",
                    ("%cpu_pct%",),
                )
                > 0
            ),
            timeout=30,
        )
