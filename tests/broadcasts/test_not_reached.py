"""`broadcast_not_reached`: an emergency that has not reached every village within 2 minutes."""

from datetime import timedelta

import psycopg

from services.alerts import messages
from services.alerts import store as alert_store
from services.broadcasts import store
from services.models import Device
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
    assert "Ấp Tây Bình" in message and "Trung Bình" not in message
    assert "chưa đến 1/2 ấp sau 2 phút" in message  # the commune's word for its villages
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


TAY_BINH = Device("spk-tay-binh-1", "thoai-giang", "speaker", "tay-binh")


def outcome(conn: psycopg.Connection) -> list[tuple[str, str | None, str | None]]:
    return conn.execute(
        "SELECT state, details->>'outcome', details->>'not_reached' FROM alerts ORDER BY id"
    ).fetchall()


def missed_tay_binh(conn: psycopg.Connection) -> store.Broadcast:
    """An emergency to both villages whose Tây Bình speaker is offline: alerted at 2 minutes."""
    conn.execute("UPDATE device_state SET state = 'offline' WHERE device_id = 'spk-tay-binh-1'")
    b = send(conn, communes=["thoai-giang"], kinds=["speaker"])
    (cmd,) = tick(conn)
    result(conn, [{"id": cmd["id"], "status": "done"}])
    tick(conn, T0 + timedelta(seconds=120))
    assert outcome(conn) == [("open", None, None)]
    return b


def test_the_alert_resolves_when_the_village_is_reached_later(conn: psycopg.Connection) -> None:
    missed_tay_binh(conn)
    back = T0 + timedelta(minutes=5)
    conn.execute(
        "UPDATE device_state SET state = 'online', since = %s WHERE device_id = 'spk-tay-binh-1'", (back,)
    )
    (cmd,) = tick(conn, back)
    assert cmd["topic"].endswith("/spk-tay-binh-1/cmd")
    tick(conn, back + timedelta(seconds=1))
    assert outcome(conn) == [("open", None, None)]
    result(conn, [{"id": cmd["id"], "status": "done"}], TAY_BINH)
    tick(conn, back + timedelta(seconds=40))
    assert outcome(conn) == [("resolved", "reached", None)]
    assert conn.execute("SELECT action, details->>'reason' FROM alert_history ORDER BY id").fetchall() == [
        ("opened", None),
        ("resolved", "reached"),
    ]
    # The evaluator tells the channels that heard of it (the open request is still unrouted here:
    # nobody was told, so only the resolve request stays).
    assert conn.execute("SELECT event, status FROM alert_outbox ORDER BY id").fetchall() == [
        ("resolve", "route")
    ]


def test_the_alert_resolves_when_the_broadcast_is_cancelled(conn: psycopg.Connection) -> None:
    b = missed_tay_binh(conn)
    with conn.transaction():
        store.cancel(conn, b.id, "admin", "admin", None, T0 + timedelta(minutes=3))
    tick(conn, T0 + timedelta(minutes=3))
    assert outcome(conn) == [("resolved", "cancelled", None)]


def test_the_alert_resolves_at_expiry_naming_the_villages_never_reached(conn: psycopg.Connection) -> None:
    missed_tay_binh(conn)
    tick(conn, T0 + timedelta(minutes=59))
    assert outcome(conn) == [("open", None, None)]
    tick(conn, T0 + timedelta(hours=1))
    assert outcome(conn) == [("resolved", "expired", "Ấp Tây Bình")]


def test_two_emergencies_missing_villages_at_once_are_two_alerts_each_resolving_alone(
    conn: psycopg.Connection,
) -> None:
    """During a storm the second warning's unreached villages must not wait for the first alert."""
    first = missed_tay_binh(conn)
    second = send(conn, communes=["thoai-giang"], kinds=["speaker"], now=T0 + timedelta(minutes=1))
    tick(conn, T0 + timedelta(minutes=4))
    assert outcome(conn) == [("open", None, None), ("open", None, None)]
    by_broadcast = dict(conn.execute("SELECT (details->>'broadcast')::int, message FROM alerts").fetchall())
    assert set(by_broadcast) == {first.id, second.id}
    assert all("Ấp Tây Bình" in m for m in by_broadcast.values())
    tick(conn, T0 + timedelta(minutes=5))
    assert len(outcome(conn)) == 2  # still one each, not one more per tick
    with conn.transaction():
        store.cancel(conn, first.id, "admin", "admin", None, T0 + timedelta(minutes=5))
    tick(conn, T0 + timedelta(minutes=5))
    assert outcome(conn) == [("resolved", "cancelled", None), ("open", None, None)]


def test_the_logs_counts_in_one_query_agree_with_each_broadcasts_coverage(conn: psycopg.Connection) -> None:
    missed_tay_binh(conn)
    send(conn, "normal", T0 + timedelta(minutes=3), villages=["tay-binh"], kinds=["eboard"])
    (show,) = [c for c in tick(conn, T0 + timedelta(minutes=3)) if c["type"] == "show"]
    result(
        conn,
        [{"id": show["id"], "status": "accepted"}],
        Device("eb-tay-binh", "thoai-giang", "eboard", "tay-binh"),
    )
    send(conn, "priority", T0 + timedelta(hours=5), communes=["long-thanh"])
    bs = [store.get(conn, i) for (i,) in conn.execute("SELECT id FROM broadcasts ORDER BY id")]
    counted = [
        (r["villages_targeted"], r["villages_reached"], r["devices_targeted"], r["devices_done"])
        for r in store.share_rows(conn, bs)
    ]
    expected = []
    for b in bs:
        ds = store.deliveries(conn, b)
        cov = store.coverage(conn, b, ds)
        expected.append(
            (len(cov), sum(c["reached"] for c in cov), len(ds), sum(d.state == "done" for d in ds))
        )
    assert counted == expected == [(2, 1, 2, 1), (1, 1, 1, 0), (1, 0, 0, 0)]


def test_the_notification_links_to_the_broadcasts_page(conn: psycopg.Connection) -> None:
    b = missed_tay_binh(conn)
    alert = alert_store.get(conn, conn.execute("SELECT id FROM alerts").fetchone()[0])  # type: ignore[index]
    title, body, data = messages.notification(
        "open", alert, messages.Place(), public_url="http://ioc.example:8000/"
    )
    assert f"http://ioc.example:8000/#/broadcasts/{b.id}" in body.splitlines()[-1]
    assert data["link"] == f"http://ioc.example:8000/#/broadcasts/{b.id}"
    assert "Ấp Tây Bình" in title


def test_the_resolve_notification_says_how_the_broadcast_ended(conn: psycopg.Connection) -> None:
    missed_tay_binh(conn)
    tick(conn, T0 + timedelta(hours=1))
    alert = alert_store.get(conn, conn.execute("SELECT id FROM alerts").fetchone()[0])  # type: ignore[index]
    title, body, _ = messages.notification("resolve", alert, messages.Place())
    assert title.startswith("[KẾT THÚC] ")
    assert "Bản tin đã hết hạn; chưa đến: Ấp Tây Bình." in body
    assert "Kết thúc lúc: " in body and "Đã khắc phục" not in body
    conn.execute('UPDATE alerts SET details = details || \'{"outcome": "reached"}\'')
    title, body, _ = messages.notification("resolve", alert_store.get(conn, alert["id"]), messages.Place())
    assert title.startswith("[ĐÃ KHẮC PHỤC] ") and "Bản tin đã đến đủ mọi nơi được gửi." in body
    assert "Đã khắc phục lúc: " in body


def test_emergencies_in_two_communes_both_not_reached_are_two_alerts_each_resolving_by_itself(
    conn: psycopg.Connection,
) -> None:
    """A storm over two communes: each warning's unreached village has its own open alert, in its
    commune, and one commune's speaker coming back resolves only its own."""
    conn.execute(
        "UPDATE device_state SET state = 'offline' WHERE device_id IN ('spk-tay-binh-1', 'spk-xom-1')"
    )
    tg = send(conn, communes=["thoai-giang"], kinds=["speaker"])
    lt = send(conn, communes=["long-thanh"], kinds=["speaker"])
    (cmd,) = tick(conn)  # only Trung Bình's speaker is online
    result(conn, [{"id": cmd["id"], "status": "done"}])
    tick(conn, T0 + timedelta(seconds=121))
    rows = conn.execute(
        "SELECT (details->>'broadcast')::int, commune_id, state, message FROM alerts ORDER BY id"
    ).fetchall()
    assert [(b, c, s) for b, c, s, _ in rows] == [
        (tg.id, "thoai-giang", "open"),
        (lt.id, "long-thanh", "open"),
    ]
    assert "Ấp Tây Bình" in rows[0][3] and "Xóm 1" in rows[1][3]

    conn.execute(
        "UPDATE device_state SET state = 'online', since = %s WHERE device_id = 'spk-xom-1'",
        (T0 + timedelta(minutes=3),),
    )
    (back,) = tick(conn, T0 + timedelta(minutes=3))
    assert "spk-xom-1" in back["topic"]
    xom = Device("spk-xom-1", "long-thanh", "speaker", "xom-1")
    assert result(conn, [{"id": back["id"], "status": "done"}], xom) == []
    tick(conn, T0 + timedelta(minutes=4))
    assert outcome(conn) == [("open", None, None), ("resolved", "reached", None)]
