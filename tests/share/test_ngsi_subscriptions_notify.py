"""NGSI-LD notifications end to end: subscriptions made through the gateway, device changes written
as ingest writes them (device_state, state_changes, the live feed), the real push worker (producer
and outbox) POSTing to a loopback receiver that records every request.

Fences, not clocks: "nothing was sent" is checked once the producer's cursor (moved in the
transaction that queues notifications) has passed the change, by counting the outbox rows."""

import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

import services.ngsi_subscriptions as real
from services import feed
from services.ngsi_subscriptions.producer import Producer
from tests.alerts.conftest import Receiver
from tests.share.conftest import hdr
from tests.share.test_upstreams import pushing, settings
from tests.support import scalar, wait_for

BASE = "/ngsi-ld/v1/subscriptions"


@pytest.fixture
def recv() -> Iterator[Receiver]:
    r = Receiver()
    r.answer = (200, {})
    yield r
    r.close()


@contextmanager
def notifying(url: str, module: Any = real) -> Iterator[None]:
    """The push worker with the NGSI-LD producer, once the producer has its cursor (on a first
    start, changes from then on are notified)."""
    with pushing(settings(url), (), ngsi=module):
        wait_for(lambda: scalar(url, "SELECT count(*) FROM ngsi_producer"))
        yield


def report(url: str, device_id: str, state: str | None = None, **metrics: Any) -> None:
    """One status as ingest stores it (services.storage): fields merged into device_state, a
    state change logged, the device's whole row on the live feed, in one transaction."""
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn, conn.transaction():
        commune, village, kind = conn.execute(
            "SELECT commune_id, village_id, kind FROM devices WHERE id = %s", (device_id,)
        ).fetchone()  # type: ignore[misc]
        old_state, since, old_metrics = conn.execute(
            "SELECT state, since, metrics FROM device_state WHERE device_id = %s FOR UPDATE", (device_id,)
        ).fetchone()  # type: ignore[misc]
        new_state = state or old_state
        merged = {**old_metrics, **metrics}
        if new_state != old_state:
            since = now
        conn.execute(
            "UPDATE device_state SET state = %s, since = %s, last_seen = %s, metrics = %s, metrics_ts = %s,"
            " updated_at = now() WHERE device_id = %s",
            (new_state, since, now, Jsonb(merged), now, device_id),
        )
        if new_state != old_state:
            feed.record_changes(
                conn, [(device_id, commune, village, kind, new_state, old_state, now, "test")]
            )
        item = {
            "type": "status",
            "device_id": device_id,
            "commune": commune,
            "village": village,
            "kind": kind,
            "state": new_state,
            "since": since.isoformat(),
            "last_seen": now.isoformat(),
            "reason": "test",
            "metrics": merged,
        }
        feed.publish(conn, [item])


def subscribe(client: TestClient, key: str, recv: Receiver, path: str, **over: Any) -> str:
    doc: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Device"}],
        "notification": {
            "format": "keyValues",
            "endpoint": {"uri": recv.url(path), "receiverInfo": [{"key": "X-Tinh", "value": "an-giang"}]},
        },
    }
    notification = over.pop("notification", {})
    doc.update(over)
    doc["notification"].update(notification)
    r = client.post(BASE, json=doc, headers=hdr(key))
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def produced(url: str) -> None:
    """Wait until the producer has read the whole feed (what it queues is queued by then)."""
    wait_for(
        lambda: (
            (scalar(url, "SELECT feed_seq FROM ngsi_producer") or -1)
            >= scalar(url, "SELECT value FROM counters WHERE name = 'feed'")
        ),
        timeout=60,
    )


def queued(url: str, sub_id: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM push_outbox WHERE target = %s", (f"ngsi:{sub_id}",)))


def bodies(recv: Receiver, path: str) -> list[dict[str, Any]]:
    with recv.lock:
        return [orjson.loads(r["body"]) for r in recv.requests if r["path"] == path]


def posted(recv: Receiver, path: str, n: int) -> list[dict[str, Any]]:
    wait_for(lambda: len(bodies(recv, path)) >= n, timeout=60)
    got = bodies(recv, path)
    assert len(got) == n, got
    return got


def test_changes_reach_each_subscriber_within_its_keys_scope(
    client: TestClient, db_url: str, key_a: str, key_all: str, recv: Receiver
) -> None:
    a = subscribe(client, key_a, recv, "/a", watchedAttributes=["deviceState"])
    every = subscribe(
        client,
        key_all,
        recv,
        "/all",
        watchedAttributes=["deviceState"],
        notification={
            "format": "normalized",
            "endpoint": {"uri": recv.url("/all"), "accept": "application/ld+json"},
        },
    )
    with notifying(db_url):
        report(db_url, "spk-vt-1", "offline")  # commune vong-the: not key_a's
        report(db_url, "spk-trung-binh-1", "offline")
        (n,) = posted(recv, "/a", 1)
        assert n["type"] == "Notification" and n["subscriptionId"] == a
        assert n["id"].startswith("urn:ngsi-ld:Notification:") and n["notifiedAt"].endswith("Z")
        assert [e["id"] for e in n["data"]] == ["urn:ngsi-ld:Device:thoai-giang:spk-trung-binh-1"]
        assert n["data"][0]["deviceState"] == "offline" and n["data"][0]["type"] == "Device"
        got = wait_for(
            lambda: (
                sorted(e["id"] for b in bodies(recv, "/all") for e in b["data"])
                if len({e["id"] for b in bodies(recv, "/all") for e in b["data"]}) == 2
                else None
            )
        )
        assert got == [
            "urn:ngsi-ld:Device:thoai-giang:spk-trung-binh-1",
            "urn:ngsi-ld:Device:vong-the:spk-vt-1",
        ]
        ld = bodies(recv, "/all")[0]
        assert ld["subscriptionId"] == every and "@context" in ld
        # ETSI NGSI-LD test suite, SubscriptionNotificationBehaviour/046_14.robot (JSON-LD: each
        # entity carries the @context) and 046_10.robot (JSON: none does; it is in the Link header).
        assert all("@context" in e for e in ld["data"])
        assert "@context" not in n["data"][0] and "@context" not in n
        assert ld["data"][0]["deviceState"]["type"] == "Property"
        produced(db_url)
        assert all(
            e["id"].startswith("urn:ngsi-ld:Device:thoai-giang:")
            for b in bodies(recv, "/a")
            for e in b["data"]
        )
        wait_for(lambda: client.get(f"{BASE}/{a}", headers=hdr(key_a)).json()["notification"].get("status"))
    with recv.lock:
        first = next(r for r in recv.requests if r["path"] == "/a")
        json_ld = next(r for r in recv.requests if r["path"] == "/all")
    h = first["headers"]
    assert h["content-type"] == "application/json" and h["x-tinh"] == "an-giang"
    assert h["link"] == (
        "<http://testserver/ngsi-ld/v1/jsonldContexts/commune-ioc.jsonld>;"
        ' rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    )
    assert len(h["idempotency-key"]) == 36
    assert json_ld["headers"]["content-type"] == "application/ld+json" and "link" not in json_ld["headers"]
    s = client.get(f"{BASE}/{a}", headers=hdr(key_a)).json()["notification"]
    assert s["timesSent"] == 1 and s["status"] == "ok" and "lastFailure" not in s
    assert s["lastNotification"] == s["lastSuccess"]


def test_watched_attributes_and_q_choose_what_is_notified(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    report(db_url, "cam-ubnd-1", "online", battery_pct=80, rssi_dbm=-60)
    battery = subscribe(
        client,
        key_a,
        recv,
        "/battery",
        watchedAttributes=["batteryLevel"],
        notification={"attributes": ["batteryLevel", "rssi"]},
    )
    offline = subscribe(
        client,
        key_a,
        recv,
        "/offline",
        q='deviceState=="offline";kind=="camera"',
        watchedAttributes=["deviceState"],
    )
    one = subscribe(
        client,
        key_a,
        recv,
        "/one",
        entities=[{"type": "Device", "id": "urn:ngsi-ld:Device:thoai-giang:spk-tay-binh-1"}],
    )
    with notifying(db_url):
        report(db_url, "cam-ubnd-1", rssi_dbm=-70)  # battery unchanged
        report(db_url, "spk-trung-binh-1", "offline")  # a speaker, not the one named
        produced(db_url)
        assert queued(db_url, battery) == 0 and queued(db_url, offline) == 0 and queued(db_url, one) == 0
        report(db_url, "cam-ubnd-1", battery_pct=40)
        (n,) = posted(recv, "/battery", 1)
        assert n["data"] == [
            {
                "id": "urn:ngsi-ld:Device:thoai-giang:cam-ubnd-1",
                "type": "Device",
                "batteryLevel": 0.4,
                "rssi": -70,
            }
        ]
        report(db_url, "cam-ubnd-1", "offline")
        (n,) = posted(recv, "/offline", 1)
        assert [e["deviceState"] for e in n["data"]] == ["offline"]
        report(db_url, "cam-ubnd-1", "online")  # no longer matches q
        report(db_url, "spk-tay-binh-1", "offline", firmware="2.1")
        (n,) = posted(recv, "/one", 1)
        assert n["data"][0]["id"].endswith(":spk-tay-binh-1") and n["data"][0]["firmwareVersion"] == "2.1"
        produced(db_url)
        assert queued(db_url, offline) == 1 and queued(db_url, battery) == 1


def test_numeric_q_and_sys_attrs_in_notifications(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    # q with a numeric comparison (CIM 009 §4.9) and notification.sysAttrs (ETSI NGSI-LD test
    # suite, SubscriptionNotificationBehaviour/046_17.robot: data[0] has createdAt and modifiedAt).
    report(db_url, "spk-trung-binh-1", "online", battery_pct=80)
    low = subscribe(
        client,
        key_a,
        recv,
        "/low",
        q="batteryLevel<0.2",
        watchedAttributes=["batteryLevel"],
        notification={"format": "normalized", "sysAttrs": True, "attributes": ["batteryLevel"]},
    )
    got = client.get(f"{BASE}/{low}", headers=hdr(key_a)).json()
    assert got["q"] == "batteryLevel<0.2" and got["notification"]["sysAttrs"] is True
    with notifying(db_url):
        report(db_url, "spk-trung-binh-1", battery_pct=50)  # not below 20 %
        produced(db_url)
        assert queued(db_url, low) == 0
        report(db_url, "spk-trung-binh-1", battery_pct=15)
        wait_for(lambda: bodies(recv, "/low"), timeout=60)
    (n,) = bodies(recv, "/low")
    (e,) = n["data"]
    assert e["id"] == "urn:ngsi-ld:Device:thoai-giang:spk-trung-binh-1"
    assert e["batteryLevel"]["value"] == 0.15
    for stamp in (e["createdAt"], e["modifiedAt"], e["batteryLevel"]["createdAt"]):
        assert datetime.fromisoformat(stamp).tzinfo is not None


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_throttling_coalesces_changes_and_sends_the_latest_when_the_window_ends(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    clock = Clock()
    mod = types.SimpleNamespace(
        notification_target=real.notification_target,
        record_delivery=real.record_delivery,
        run_producer=lambda pool, stop: Producer(pool, clock=clock).run(stop),
    )
    sid = subscribe(client, key_a, recv, "/t", watchedAttributes=["deviceState", "rssi"], throttling=60)
    with notifying(db_url, mod):
        report(db_url, "spk-trung-binh-1", "offline")
        (first,) = posted(recv, "/t", 1)
        assert first["data"][0]["deviceState"] == "offline"
        report(db_url, "spk-trung-binh-1", "online", rssi_dbm=-71)
        report(db_url, "spk-tay-binh-1", "offline")
        report(db_url, "spk-trung-binh-1", rssi_dbm=-72)
        produced(db_url)
        pending = scalar(db_url, "SELECT pending FROM ngsi_subscriptions WHERE id = %s", (sid,))
        assert sorted(pending) == ["spk-tay-binh-1", "spk-trung-binh-1"] and queued(db_url, sid) == 1
        clock.now += timedelta(seconds=61)
        _, second = posted(recv, "/t", 2)
        latest = {e["id"].rsplit(":", 1)[1]: e for e in second["data"]}
        assert set(latest) == {"spk-tay-binh-1", "spk-trung-binh-1"}
        assert (
            latest["spk-trung-binh-1"]["deviceState"] == "online"
            and latest["spk-trung-binh-1"]["rssi"] == -72
        )
        assert latest["spk-tay-binh-1"]["deviceState"] == "offline"
        wait_for(lambda: scalar(db_url, "SELECT pending FROM ngsi_subscriptions WHERE id = %s", (sid,)) == [])
        report(db_url, "spk-trung-binh-1", rssi_dbm=-73)  # within the new window
        produced(db_url)
        assert queued(db_url, sid) == 2
        # Throttling removed: what waited goes at once, and only once.
        assert client.patch(f"{BASE}/{sid}", json={"throttling": None}, headers=hdr(key_a)).status_code == 204
        _, _, third = posted(recv, "/t", 3)
        assert [e["rssi"] for e in third["data"]] == [-73]
        wait_for(lambda: scalar(db_url, "SELECT pending FROM ngsi_subscriptions WHERE id = %s", (sid,)) == [])
        client.patch(f"{BASE}/{sid}", json={"subscriptionName": "again"}, headers=hdr(key_a))
        report(db_url, "cam-vt-1", "offline")  # another commune: nothing for this key
        produced(db_url)
        assert queued(db_url, sid) == 3


def test_a_periodic_subscription_sends_every_matching_entity_each_time_interval(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    # timeInterval (CIM 009 §5.8.6; ETSI NGSI-LD test suite, SubscriptionNotificationBehaviour/
    # 046_02.robot): notified on the interval with the matching entities, changed or not, and
    # never on a change in between. The producer's clock is the test's.
    clock = Clock()
    mod = types.SimpleNamespace(
        notification_target=real.notification_target,
        record_delivery=real.record_delivery,
        run_producer=lambda pool, stop: Producer(pool, clock=clock).run(stop),
    )
    report(db_url, "spk-tay-binh-1", "offline")
    sid = subscribe(client, key_a, recv, "/p", timeInterval=10, q='kind=="speaker"')
    assert client.get(f"{BASE}/{sid}", headers=hdr(key_a)).json()["timeInterval"] == 10
    with notifying(db_url, mod):
        (first,) = posted(recv, "/p", 1)  # at once: it was never notified
        assert first["subscriptionId"] == sid
        speakers = ["spk-tay-binh-1", "spk-trung-binh-1"]
        assert [e["id"].rsplit(":", 1)[1] for e in first["data"]] == speakers
        report(db_url, "spk-trung-binh-1", "offline")  # a change: nothing until the interval
        produced(db_url)
        assert queued(db_url, sid) == 1
        clock.now += timedelta(seconds=11)
        _, second = posted(recv, "/p", 2)
        states = {e["id"].rsplit(":", 1)[1]: e["deviceState"] for e in second["data"]}
        assert states == {"spk-tay-binh-1": "offline", "spk-trung-binh-1": "offline"}


def test_paused_and_expired_subscriptions_are_not_notified(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    paused = subscribe(client, key_a, recv, "/p", watchedAttributes=["deviceState"], isActive=False)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    expiring = subscribe(client, key_a, recv, "/e", watchedAttributes=["deviceState"], expiresAt=later)
    with psycopg.connect(db_url) as conn:  # a day later: its expiresAt has passed
        conn.execute(
            "UPDATE ngsi_subscriptions SET expires_at = now() - interval '1 second' WHERE id = %s",
            (expiring,),
        )
    assert client.get(f"{BASE}/{expiring}", headers=hdr(key_a)).json()["status"] == "expired"
    with notifying(db_url):
        report(db_url, "spk-trung-binh-1", "offline")
        produced(db_url)
        assert queued(db_url, paused) == 0 and queued(db_url, expiring) == 0
        r = client.patch(f"{BASE}/{paused}", json={"isActive": True}, headers=hdr(key_a))
        assert r.status_code == 204
        wait_for(lambda: client.get(f"{BASE}/{paused}", headers=hdr(key_a)).json()["status"] == "active")
        report(db_url, "spk-trung-binh-1", "online")
        (n,) = posted(recv, "/p", 1)
        assert n["data"][0]["deviceState"] == "online"  # not the change made while it was paused
    assert bodies(recv, "/e") == []


def test_a_receiver_down_then_up_gets_every_notification_in_order(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    sid = subscribe(client, key_a, recv, "/d", watchedAttributes=["deviceState"])
    recv.answer = (503, {"error": "maintenance"})
    with notifying(db_url):
        for state in ("offline", "online", "offline"):
            report(db_url, "gw-trung-binh", state)
            produced(db_url)
        wait_for(lambda: len(bodies(recv, "/d")) >= 3)  # the first, tried again and again
        s = client.get(f"{BASE}/{sid}", headers=hdr(key_a)).json()["notification"]
        assert s["status"] == "failed" and "lastFailure" in s and "lastSuccess" not in s
        recv.answer = (200, {})
        wait_for(
            lambda: (
                scalar(
                    db_url,
                    "SELECT count(*) FROM push_outbox WHERE target = %s AND status = 'delivered'",
                    (f"ngsi:{sid}",),
                )
                == 3
            )
        )
    with recv.lock:
        requests = [r for r in recv.requests if r["path"] == "/d"]
    states = [orjson.loads(r["body"])["data"][0]["deviceState"] for r in requests]
    keys = [r["headers"]["idempotency-key"] for r in requests]
    # The first notification was tried until the receiver took it; then the others, in order.
    firsts = [k for k in keys if k == keys[0]]
    assert states[len(firsts) - 1 :] == ["offline", "online", "offline"] and len(set(keys)) == 3
    s = client.get(f"{BASE}/{sid}", headers=hdr(key_a)).json()["notification"]
    assert s["timesSent"] == len(requests) and s["status"] == "ok" and s["lastSuccess"] > s["lastFailure"]


def test_a_restart_of_the_pusher_neither_loses_nor_repeats_a_change(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    sid = subscribe(client, key_a, recv, "/r", watchedAttributes=["deviceState", "rssi"])
    report(db_url, "spk-tay-binh-1", "online", rssi_dbm=-50)
    with notifying(db_url):
        report(db_url, "spk-trung-binh-1", "offline")
        posted(recv, "/r", 1)
    # While no pusher runs: one device changes, another reports what it said before.
    report(db_url, "spk-trung-binh-1", "online")
    report(db_url, "spk-tay-binh-1", rssi_dbm=-50)
    with notifying(db_url):
        _, n = posted(recv, "/r", 2)
        produced(db_url)
        assert queued(db_url, sid) == 2
    assert [e["id"].rsplit(":", 1)[1] for e in n["data"]] == ["spk-trung-binh-1"]
    assert n["data"][0]["deviceState"] == "online"


def test_a_deleted_subscription_or_a_revoked_key_gets_nothing_more(
    client: TestClient, conn: psycopg.Connection, db_url: str, key_a: str, key_all: str, recv: Receiver
) -> None:
    from services import keys

    gone = subscribe(client, key_a, recv, "/gone", watchedAttributes=["deviceState"])
    revoked = subscribe(client, key_all, recv, "/revoked", watchedAttributes=["deviceState"])
    recv.answer = (503, {})
    with notifying(db_url):
        report(db_url, "spk-trung-binh-1", "offline")
        wait_for(lambda: bodies(recv, "/gone") and bodies(recv, "/revoked"))
        assert client.delete(f"{BASE}/{gone}", headers=hdr(key_a)).status_code == 204
        key_id = next(k.id for k in keys.list_keys(conn) if k.name == "tinh-an-giang")
        keys.revoke(conn, key_id)
        conn.commit()
        wait_for(lambda: queued(db_url, gone) == 0 and queued(db_url, revoked) == 0)  # queued rows dropped
        report(db_url, "spk-trung-binh-1", "online")
        produced(db_url)
        assert queued(db_url, gone) == 0 and queued(db_url, revoked) == 0


def test_after_a_stop_longer_than_the_feed_keeps_each_changed_device_is_sent_once(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    sid = subscribe(client, key_a, recv, "/long", watchedAttributes=["deviceState"])
    with notifying(db_url):
        report(db_url, "spk-trung-binh-1", "offline")
        posted(recv, "/long", 1)
    report(db_url, "spk-trung-binh-1", "online")
    report(db_url, "cam-ubnd-1", "offline")
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM feed")  # what the housekeeper prunes after an hour
    with notifying(db_url):
        _, n = posted(recv, "/long", 2)
        produced(db_url)
        assert queued(db_url, sid) == 2
        report(db_url, "cam-ubnd-1", "online")  # and then on from the feed as usual
        posted(recv, "/long", 3)
    # The devices written since the producer's position, with their current values; the others not.
    assert {e["id"].rsplit(":", 1)[1]: e["deviceState"] for e in n["data"]} == {
        "spk-trung-binh-1": "online",
        "cam-ubnd-1": "offline",
    }


def test_without_subscriptions_the_feed_is_skipped_and_a_new_one_starts_exactly(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    with notifying(db_url):
        report(db_url, "spk-trung-binh-1", "offline")
        produced(db_url)  # passed over: no one subscribed
        sid = subscribe(client, key_a, recv, "/new", watchedAttributes=["deviceState"])
        report(db_url, "spk-trung-binh-1", "offline", rssi_dbm=-60)  # its state did not change
        report(db_url, "spk-tay-binh-1", "offline")
        (n,) = posted(recv, "/new", 1)
        produced(db_url)
        assert queued(db_url, sid) == 1
    assert [e["id"].rsplit(":", 1)[1] for e in n["data"]] == ["spk-tay-binh-1"]


def test_a_pattern_that_backtracks_for_ever_in_python_matches_in_linear_time(
    client: TestClient, db_url: str, key_a: str, recv: Receiver
) -> None:
    # With Python's re, this pattern takes ~2^40 steps on an id of ~40 letters that ends in a digit:
    # the producer (and the alert engine beside it in ioc alerts) would never get past it.
    hostile = subscribe(
        client, key_a, recv, "/hostile", entities=[{"type": "Device", "idPattern": "^([A-Za-z:-]+)*$"}]
    )
    subscribe(
        client, key_a, recv, "/plain", entities=[{"type": "Device", "idPattern": "spk-trung-binh-[0-9]+$"}]
    )
    with notifying(db_url):
        report(db_url, "spk-trung-binh-1", "offline")
        (n,) = posted(recv, "/plain", 1)
        assert [e["id"] for e in n["data"]] == ["urn:ngsi-ld:Device:thoai-giang:spk-trung-binh-1"]
        produced(db_url)
        assert queued(db_url, hostile) == 0  # it matched nothing (the id has digits), and said so at once
