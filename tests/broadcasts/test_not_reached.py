"""`broadcast_not_reached`: an emergency that has not reached every village within 2 minutes."""

from datetime import timedelta

import psycopg

from services.broadcasts import store
from tests.broadcasts.test_delivery import SPK, T0, conn, result, send, tick  # noqa: F401

__all__ = ["conn"]


def alerts(conn: psycopg.Connection) -> list[tuple[str, str, list[str], str]]:
    return conn.execute("SELECT rule, message, affected, severity FROM alerts ORDER BY id").fetchall()


def test_an_emergency_not_reaching_a_village_in_2_minutes_raises_one_alert_naming_it(
    conn: psycopg.Connection,
) -> None:
    conn.execute("UPDATE device_state SET state = 'offline' WHERE device_id = 'spk-tay-binh-1'")
    b = send(conn, communes=["thoai-giang"], kinds=["speaker"])
    (cmd,) = tick(conn)
    result(conn, [{"id": cmd["id"], "status": "done"}])
    tick(conn, T0 + timedelta(seconds=119))
    assert alerts(conn) == []
    tick(conn, T0 + timedelta(seconds=120))
    ((rule, message, affected, severity),) = alerts(conn)
    assert rule == "broadcast_not_reached" and severity == "critical"
    assert "Ấp Tây Bình" in message and "Trung Bình" not in message and "1/2" in message
    assert affected == ["spk-tay-binh-1"]
    assert conn.execute("SELECT event, status FROM alert_outbox").fetchall() == [("open", "route")]
    tick(conn, T0 + timedelta(seconds=180))
    assert len(alerts(conn)) == 1
    cov = {c["village"]: c for c in store.coverage(conn, store.get(conn, b.id))}
    assert cov["tay-binh"] == {
        "commune": "thoai-giang",
        "village": "tay-binh",
        "reached": False,
        "reason": "offline",
    }


def test_an_emergency_that_reached_every_village_raises_nothing(conn: psycopg.Connection) -> None:
    send(conn)
    (cmd,) = tick(conn)
    result(conn, [{"id": cmd["id"], "status": "done"}])
    tick(conn, T0 + timedelta(minutes=5))
    assert alerts(conn) == []


def test_a_normal_bulletin_not_reaching_a_village_raises_nothing(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE device_state SET state = 'offline'")
    send(conn, "normal")
    tick(conn, T0 + timedelta(minutes=5))
    assert alerts(conn) == []
