"""WS /ws/live on a real gateway process: auth, snapshot, ordered feed, resume, scope, slow clients."""

import json
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from starlette.testclient import WebSocketDenialResponse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gateway.live import Client, Message
from services import auth, feed
from tests.dashboard.pipeline import set_state
from tests.dashboard.serve import gateway

Headers = Callable[..., dict[str, str]]
DEVICES = {
    "gw-trung-binh": "thoai-giang",
    "cam-ubnd-1": "thoai-giang",
    "spk-trung-binh-1": "thoai-giang",
    "spk-tay-binh-1": "thoai-giang",
    "eb-tay-binh": "thoai-giang",
    "wifi-xom-1": "long-thanh",
    "spk-xom-1": "long-thanh",
}


def event(db_url: str, device_id: str, n: int, size: int = 0) -> None:
    # Random text: compression must not shrink what a slow client has to take.
    with psycopg.connect(db_url) as conn:
        feed.publish(
            conn,
            [
                {
                    "type": "event",
                    "device_id": device_id,
                    "commune": DEVICES[device_id],
                    "event_type": "test",
                    "severity": "info",
                    "message": secrets.token_hex(size // 2),
                    "i": i,
                }
                for i in range(n)
            ],
        )


def recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=10))


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/ws/live" + query


@pytest.fixture
def gw(seeded: str) -> Iterator[str]:
    with gateway(seeded) as base:
        yield base


def test_handshake_without_valid_token_is_refused(gw: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-session"}):
        with pytest.raises(InvalidStatus) as exc, connect(ws_url(gw), additional_headers=headers):
            pass
        assert exc.value.response.status_code == 401
        assert json.loads(exc.value.response.body)["error"]["code"] == "unauthorized"


def test_snapshot_then_status_messages_in_seq_order(gw: str, seeded: str, as_user: Headers) -> None:
    set_state(seeded, ("spk-xom-1", "online"))
    with connect(ws_url(gw), additional_headers=as_user("admin")) as ws:
        snap = recv(ws)
        assert snap["type"] == "snapshot" and snap["seq"] == 1
        assert snap["alerts"] == []
        states = {d["device_id"]: d["state"] for d in snap["devices"]}
        assert set(states) == set(DEVICES)
        assert states["spk-xom-1"] == "online" and states["cam-ubnd-1"] == "unknown"
        row = next(d for d in snap["devices"] if d["device_id"] == "cam-ubnd-1")
        assert row["commune"] == "thoai-giang" and row["village"] == "trung-binh" and row["kind"] == "camera"
        assert {"since", "last_seen", "metrics"} <= set(row)
        assert [c["device_id"] for c in snap["changes"]] == ["spk-xom-1"]
        set_state(seeded, ("cam-ubnd-1", "online"), ("spk-xom-1", "offline"))
        set_state(seeded, ("cam-ubnd-1", "offline"))
        got = [recv(ws) for _ in range(3)]
    assert [(m["seq"], m["type"], m["device_id"], m["state"]) for m in got] == [
        (2, "status", "cam-ubnd-1", "online"),
        (3, "status", "spk-xom-1", "offline"),
        (4, "status", "cam-ubnd-1", "offline"),
    ]


def test_cookie_and_query_token_authenticate(gw: str, seeded: str) -> None:
    with psycopg.connect(seeded) as conn:
        token, _ = auth.login(conn, "viewer", "correct-horse-1")
    with connect(ws_url(gw), additional_headers={"Cookie": f"ioc_session={token}"}) as ws:
        assert recv(ws)["type"] == "snapshot"
    with connect(ws_url(gw, f"?token={token}")) as ws:
        assert recv(ws)["type"] == "snapshot"


def test_since_resumes_with_every_later_message(gw: str, seeded: str, as_user: Headers) -> None:
    with connect(ws_url(gw), additional_headers=as_user()) as ws:
        seq = recv(ws)["seq"]
        set_state(seeded, ("spk-xom-1", "online"))
        assert recv(ws)["seq"] == seq + 1
    # Missed while disconnected: one transaction of two, then one of one.
    set_state(seeded, ("spk-xom-1", "offline"), ("wifi-xom-1", "online"))
    set_state(seeded, ("eb-tay-binh", "online"))
    with connect(ws_url(gw, f"?since={seq + 1}"), additional_headers=as_user()) as ws:
        got = [recv(ws) for _ in range(3)]
        assert [m["seq"] for m in got] == [seq + 2, seq + 3, seq + 4]
        assert got[0]["type"] == "status" and got[2]["device_id"] == "eb-tay-binh"
        set_state(seeded, ("eb-tay-binh", "offline"))
        assert recv(ws)["seq"] == seq + 5


def test_since_before_the_gateway_started_is_read_from_the_feed_table(seeded: str, as_user: Headers) -> None:
    set_state(seeded, ("spk-xom-1", "online"))
    set_state(seeded, ("wifi-xom-1", "online"), ("spk-tay-binh-1", "offline"))
    with gateway(seeded) as base, connect(ws_url(base, "?since=1"), additional_headers=as_user()) as ws:
        got = [recv(ws) for _ in range(2)]
        assert [(m["seq"], m["device_id"]) for m in got] == [(2, "wifi-xom-1"), (3, "spk-tay-binh-1")]


def test_since_older_than_the_feed_holds_gets_a_new_snapshot(seeded: str, as_user: Headers) -> None:
    set_state(seeded, ("spk-xom-1", "online"))
    set_state(seeded, ("spk-xom-1", "offline"))
    with psycopg.connect(seeded) as conn:
        conn.execute("DELETE FROM feed WHERE seq_first = 1")
    with gateway(seeded) as base, connect(ws_url(base, "?since=0"), additional_headers=as_user()) as ws:
        snap = recv(ws)
        assert snap["type"] == "snapshot" and snap["seq"] == 2
        assert {d["device_id"]: d["state"] for d in snap["devices"]}["spk-xom-1"] == "offline"


def test_user_limited_to_a_commune_sees_only_it(gw: str, seeded: str, as_user: Headers) -> None:
    with connect(ws_url(gw), additional_headers=as_user("op-tg")) as ws:
        snap = recv(ws)
        assert {d["commune"] for d in snap["devices"]} == {"thoai-giang"}
        assert [c["id"] for c in snap["communes"]] == ["thoai-giang"]
        set_state(seeded, ("spk-xom-1", "online"), ("spk-tay-binh-1", "online"))
        set_state(seeded, ("wifi-xom-1", "online"))
        set_state(seeded, ("eb-tay-binh", "online"))
        got = [recv(ws) for _ in range(2)]
    assert [m["device_id"] for m in got] == ["spk-tay-binh-1", "eb-tay-binh"]


def test_two_gateways_serve_the_same_feed(seeded: str, as_user: Headers) -> None:
    with gateway(seeded) as a, gateway(seeded) as b:
        with (
            connect(ws_url(a), additional_headers=as_user()) as wa,
            connect(ws_url(b), additional_headers=as_user()) as wb,
        ):
            assert recv(wa)["seq"] == recv(wb)["seq"] == 0
            set_state(seeded, ("cam-ubnd-1", "online"))
            event(seeded, "cam-ubnd-1", 3)
            got_a = [recv(wa) for _ in range(4)]
            got_b = [recv(wb) for _ in range(4)]
    assert got_a == got_b
    assert [m["seq"] for m in got_a] == [1, 2, 3, 4]
    assert [m["type"] for m in got_a] == ["status", "event", "event", "event"]


def test_a_feed_row_without_notification_arrives_by_polling(gw: str, seeded: str, as_user: Headers) -> None:
    with connect(ws_url(gw), additional_headers=as_user()) as ws:
        recv(ws)
        with psycopg.connect(seeded) as conn:
            conn.execute("UPDATE counters SET value = 1 WHERE name = 'feed'")
            conn.execute(
                "INSERT INTO feed (seq_first, seq_last, items) VALUES (1, 1, %s)",
                (Jsonb([{"type": "registry", "seq": 1}]),),
            )
        assert recv(ws) == {"type": "registry", "seq": 1}


def test_snapshot_lists_unresolved_alerts_in_the_users_scope(gw: str, seeded: str, as_user: Headers) -> None:
    with psycopg.connect(seeded) as conn:
        for rule, device, commune, state in (
            ("offline", "spk-xom-1", "long-thanh", "open"),
            ("offline", "cam-ubnd-1", "thoai-giang", "acked"),
            ("offline", "eb-tay-binh", "thoai-giang", "resolved"),
            ("broker_lost", None, None, "open"),
        ):
            conn.execute(
                "INSERT INTO alerts (rule, device_id, commune_id, severity, state, message, since, opened_at)"
                " VALUES (%s, %s, %s, 'critical', %s, 'm', now(), now())",
                (rule, device, commune, state),
            )
    with connect(ws_url(gw), additional_headers=as_user("admin")) as ws:
        alerts = recv(ws)["alerts"]
    assert sorted((a["device_id"] or "", a["state"]) for a in alerts) == [
        ("", "open"),
        ("cam-ubnd-1", "acked"),
        ("spk-xom-1", "open"),
    ]
    row = next(a for a in alerts if a["device_id"] == "spk-xom-1")
    assert row["commune"] == "long-thanh" and {"id", "rule", "severity", "opened_at", "affected"} <= set(row)
    with connect(ws_url(gw), additional_headers=as_user("op-tg")) as ws:
        scoped = recv(ws)["alerts"]
    assert sorted(a["device_id"] or "" for a in scoped) == ["", "cam-ubnd-1"]


def _msg(seq: int, kind: str, device_id: str) -> Message:
    return Message(seq, kind, "c", device_id, f'{{"seq":{seq}}}')


def test_queued_statuses_of_one_device_coalesce_before_a_client_is_dropped() -> None:
    client = Client(None, limit=5)
    client.offer([_msg(1, "event", "a"), _msg(2, "status", "a"), _msg(3, "status", "b")])
    client.offer([_msg(i, "status", "a") for i in range(4, 10)])
    assert not client.overflowed.is_set()
    assert [m.seq for m in client.queue] == [1, 3, 9]
    client.offer([_msg(i, "event", "a") for i in range(10, 13)])
    assert client.overflowed.is_set() and not client.queue


def test_a_client_that_stops_reading_is_closed_with_1013(seeded: str, as_user: Headers) -> None:
    with gateway(seeded, live_queue="50") as base:
        # A tiny receive window (set before connecting) and no compression: the server's buffers
        # fill after little data, and its sender then waits on this client.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        with (
            connect(
                ws_url(base), additional_headers=as_user(), sock=sock, max_queue=1, compression=None
            ) as slow,
            connect(ws_url(base), additional_headers=as_user()) as fast,
        ):
            recv(slow)
            recv(fast)
            total = 0
            for _ in range(200):
                event(seeded, "spk-xom-1", 20, size=2000)
                total += 20
                last = None
                while last != total:
                    last = recv(fast)["seq"]
            n = 0
            with pytest.raises(ConnectionClosed) as exc:
                while True:
                    slow.recv(timeout=15)
                    n += 1
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 1013
            assert n < total
            # The fast client was never held back.
            event(seeded, "spk-xom-1", 1)
            assert recv(fast)["seq"] == total + 1


def test_in_process_app_serves_the_feed_and_refuses_without_token(
    client: TestClient, as_user: Headers
) -> None:
    with client.websocket_connect("/ws/live", headers=as_user("viewer")) as ws:
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and len(snap["devices"]) == len(DEVICES)
    with pytest.raises(WebSocketDenialResponse) as exc, client.websocket_connect("/ws/live"):
        pass
    assert exc.value.status_code == 401


def test_a_gap_in_the_feed_makes_clients_start_over_from_a_snapshot(
    gw: str, seeded: str, as_user: Headers
) -> None:
    with connect(ws_url(gw), additional_headers=as_user()) as ws:
        assert recv(ws)["seq"] == 0
        # Messages 1..4 were pruned before this gateway read them (it was cut off for too long).
        with psycopg.connect(seeded) as conn:
            conn.execute("UPDATE counters SET value = 5 WHERE name = 'feed'")
            conn.execute(
                "INSERT INTO feed (seq_first, seq_last, items) VALUES (5, 5, %s)",
                (Jsonb([{"type": "registry", "seq": 5}]),),
            )
            conn.execute("SELECT pg_notify('ioc_feed', '5')")
        with pytest.raises(ConnectionClosed) as exc:
            while True:
                recv(ws)
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 1013
    with connect(ws_url(gw, "?since=0"), additional_headers=as_user()) as ws:
        snap = recv(ws)
        assert snap["type"] == "snapshot" and snap["seq"] == 5


def test_batch_mode_sends_arrays_of_messages_in_order(gw: str, seeded: str, as_user: Headers) -> None:
    with connect(ws_url(gw, "?batch=1"), additional_headers=as_user()) as ws:
        assert recv(ws)["type"] == "snapshot"
        set_state(seeded, ("spk-xom-1", "online"), ("wifi-xom-1", "online"))
        event(seeded, "spk-xom-1", 3)
        got: list[dict[str, Any]] = []
        while len(got) < 5:
            frame = json.loads(ws.recv(timeout=10))
            assert isinstance(frame, list)
            got.extend(frame)
    assert [m["seq"] for m in got] == [1, 2, 3, 4, 5]
    assert [m["type"] for m in got] == ["status", "status", "event", "event", "event"]


def test_clients_connecting_together_share_a_snapshot_and_miss_nothing(
    client: TestClient, seeded: str, as_user: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.live.SNAPSHOT_REUSE_S", 60.0)
    with client.websocket_connect("/ws/live", headers=as_user()) as first:
        snap = first.receive_json()
        # Fanned out before the second client subscribes: it must come from the ring.
        set_state(seeded, ("spk-xom-1", "online"))
        assert first.receive_json()["seq"] == snap["seq"] + 1
        with client.websocket_connect("/ws/live", headers=as_user()) as second:
            shared = second.receive_json()
            assert shared == snap  # the same snapshot, not read again
            got = second.receive_json()
            assert (got["seq"], got["device_id"], got["state"]) == (snap["seq"] + 1, "spk-xom-1", "online")
        # A registry change makes clients refetch: they must not be given the older snapshot.
        with psycopg.connect(seeded) as conn:
            feed.publish(conn, [{"type": "registry"}])
        assert first.receive_json()["type"] == "registry"
        with client.websocket_connect("/ws/live", headers=as_user()) as third:
            assert third.receive_json()["seq"] == snap["seq"] + 2
