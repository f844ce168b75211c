"""Several evaluators: exactly one is active; when its lock connection dies a standby takes
over within seconds, and no notification is lost or sent twice."""

from pathlib import Path

import psycopg

from services.alerts.engine import Engine
from tests.alerts.conftest import (
    Receiver,
    alerts,
    all_online,
    base_config,
    load_registry,
    running,
    set_state,
    settings,
    write_config,
)
from tests.support import wait_for


def _kill(url: str, engine: Engine) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (engine.lock_pid,)).fetchone() == (True,)


def _messages(receiver: Receiver, device_id: str) -> list[str]:
    return [m["title"].split("]")[0].strip("[") for m in receiver.json() if f"({device_id}," in m["message"]]


def test_standby_takes_over_when_the_active_loses_its_lock(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    load_registry(db_url)
    all_online(db_url)
    cfg = write_config(tmp_path, base_config(receiver, offline={"for_s": 0}))
    with (
        running(settings(db_url, cfg, alerts_name="a")) as a,
        running(settings(db_url, cfg, alerts_name="b")) as b,
    ):
        first = wait_for(lambda: a if a.active else b if b.active else None)
        other = b if first is a else a
        set_state(db_url, "spk-tay-binh-1", "offline")
        wait_for(lambda: _messages(receiver, "spk-tay-binh-1") == ["CẢNH BÁO"])
        assert not other.active

        # The active dies right as a device goes down: the alert and its notification happen once.
        set_state(db_url, "eb-tay-binh", "offline")
        _kill(db_url, first)
        wait_for(lambda: other.active, timeout=10)
        wait_for(lambda: _messages(receiver, "eb-tay-binh") == ["CẢNH BÁO"])
        set_state(db_url, "spk-tay-binh-1", "online")
        wait_for(lambda: _messages(receiver, "spk-tay-binh-1") == ["CẢNH BÁO", "ĐÃ KHẮC PHỤC"])
        # The one that lost its lock is a standby now, not a second active evaluator.
        wait_for(lambda: first.lock_pid is not None and not first.active)
        assert (a.active, b.active).count(True) == 1

        # And back again.
        _kill(db_url, other)
        wait_for(lambda: first.active, timeout=10)
        set_state(db_url, "eb-tay-binh", "online")
        wait_for(lambda: _messages(receiver, "eb-tay-binh") == ["CẢNH BÁO", "ĐÃ KHẮC PHỤC"])
    assert [(x["device_id"], x["state"]) for x in alerts(db_url)] == [
        ("spk-tay-binh-1", "resolved"),
        ("eb-tay-binh", "resolved"),
    ]
    assert len(receiver.requests) == 4
