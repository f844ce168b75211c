"""The evaluator's tick on an idle commune: device state is read in full only on takeover, on a
registry or configuration change and now and then; otherwise only the rows written since the last
read are read and only the devices that changed or have something pending are evaluated."""

import time

import psycopg
import pytest

from services.alerts import config, statecache
from services.alerts.evaluator import Evaluator
from tests.alerts.conftest import add_event, alerts, all_online, load_registry, set_state

DEVICES = 6  # in conftest.REGISTRY


def evaluator(conn: psycopg.Connection, rules: dict[str, object]) -> Evaluator:
    cfg = config.build({"rules": rules})
    ev = Evaluator(conn, lambda: cfg, public_url="http://ioc.example:8000")
    ev.load()
    return ev


def test_idle_tick_reads_no_device_row_and_a_change_reads_only_that_device(db_url: str) -> None:
    load_registry(db_url)
    all_online(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ev = evaluator(conn, {"temperature_high": {"for_s": 0, "threshold": 70}})
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (DEVICES, DEVICES)  # takeover: everything
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (0, 0)
        set_state(db_url, "spk-tay-binh-1", "online", metrics={"battery_pct": 50})
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (1, 1)
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (0, 0)

        # A writer whose transaction began before the last read committed after it: its row is
        # stamped before that read (updated_at is the transaction's start time) and still counts.
        with psycopg.connect(db_url, autocommit=True) as other:
            other.execute(
                "UPDATE device_state SET metrics = '{\"temperature_c\": 80}',"
                " updated_at = now() - interval '5 seconds' WHERE device_id = 'eb-tay-binh'"
            )
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (1, 1)
        assert [(a["rule"], a["device_id"]) for a in alerts(db_url)] == [("temperature_high", "eb-tay-binh")]
        # The open alert keeps its device evaluated (it resolves when the reading drops), no other.
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (0, 1)
        set_state(db_url, "eb-tay-binh", "online", metrics={"temperature_c": 40})
        ev.tick()
        assert [a["state"] for a in alerts(db_url)] == ["resolved"]
        ev.tick()  # forgets the track of the resolved alert
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (0, 0)

        conn.execute("UPDATE registry_version SET version = version + 1")
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (DEVICES, DEVICES)


def test_time_alone_still_opens_and_resolves_on_idle_ticks(db_url: str) -> None:
    load_registry(db_url)
    all_online(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ev = evaluator(conn, {"offline": {"for_s": 2}, "camera_signal_loss": {"for_s": 0, "hold_s": 1}})
        ev.tick()
        set_state(db_url, "spk-tay-binh-1", "offline")
        add_event(db_url, "cam-ubnd-1", "signal_loss")
        ev.tick()
        assert ev.evaluated == 2
        assert [a["rule"] for a in alerts(db_url)] == ["camera_signal_loss"]
        time.sleep(2.1)
        ev.tick()
        # nothing was written: the `for` of the offline speaker ran out, the event's hold_s too
        assert ev.cache.fetched == 0
        assert {(a["rule"], a["state"]) for a in alerts(db_url)} == {
            ("camera_signal_loss", "resolved"),
            ("offline", "open"),
        }


def test_a_row_the_incremental_read_missed_is_caught_by_the_periodic_full_read(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_registry(db_url)
    all_online(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ev = evaluator(conn, {"temperature_high": {"for_s": 0, "threshold": 70}})
        ev.tick()
        # stamped far before the last read, as no writer ever does: only a full read sees it
        conn.execute(
            "UPDATE device_state SET metrics = '{\"temperature_c\": 80}',"
            " updated_at = now() - interval '1 hour' WHERE device_id = 'eb-tay-binh'"
        )
        ev.tick()
        assert ev.cache.fetched == 0
        monkeypatch.setattr(statecache, "FULL_EVERY_S", 0.0)
        ev.tick()
        assert (ev.cache.fetched, ev.evaluated) == (DEVICES, DEVICES)
        assert [a["device_id"] for a in alerts(db_url)] == ["eb-tay-binh"]
