"""Pushes to a province's LGSP (SPEC §10) through the outbox, against a real loopback receiver and
OAuth2 token endpoint: exact requests, token caching and renewal, retries with the same
Idempotency-Key, order, dead letters, and nothing lost while the receiver is down."""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from services import share
from services.push import outbox, upstreams
from services.push.worker import PushSettings, PushWorker
from services.settings import load
from tests.share import lgsp_receiver, world
from tests.share.lgsp_receiver import Lgsp
from tests.support import wait_for

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_TEST_LGSP_SECRET", lgsp_receiver.CLIENT_SECRET)


@pytest.fixture
def seeded(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        world.seed(conn)
    return db_url


@pytest.fixture
def receiver() -> Iterator[Lgsp]:
    with lgsp_receiver.lgsp() as r:
        yield r


def settings(db_url: str, **kw: Any) -> PushSettings:
    kw.setdefault("push_poll_s", 0.1)
    kw.setdefault("push_backoff_s", 0.05)
    kw.setdefault("push_backoff_cap_s", 0.3)
    kw.setdefault("push_lock_poll_s", 0.1)
    return load(PushSettings, _env_file=None, database_url=db_url, **kw)


def ups(receiver: Lgsp, tmp_path: Path, **extra: Any) -> tuple[upstreams.Upstream, ...]:
    path = tmp_path / "upstreams.yaml"
    path.write_text(lgsp_receiver.upstreams_yaml(receiver, **extra))
    return upstreams.load_file(path)


@contextmanager
def pushing(s: PushSettings, u: tuple[upstreams.Upstream, ...], **kw: Any) -> Iterator[PushWorker]:
    """A push worker in a thread of its own, stopped on exit."""
    worker = PushWorker(s, u, ngsi=kw.pop("ngsi", None), **kw)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(worker.run(stop))
        except BaseException as err:  # noqa: BLE001 - reported to the test below
            failure.append(err)

    thread = threading.Thread(target=main, name="pusher", daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.active and worker.terms)  # cursors in place: changes from now are pushed
        yield worker
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        # Raised here too when the test failed: a worker that died is the likelier cause.
        if failure:
            raise failure[0]
    assert not thread.is_alive(), "push worker did not stop"


def changes(db_url: str, n: int, start: int = 0) -> None:
    """n state changes, alternating, on devices of both communes, in one transaction: the pusher
    sees them together, so they go in one push (the tests count pushes and items)."""
    with psycopg.connect(db_url) as conn:
        for i in range(start, start + n):
            dev = ("spk-trung-binh-1", "spk-vt-1", "cam-ubnd-1")[i % 3]
            state = "offline" if (i // 3) % 2 == 0 else "online"
            world.change(conn, dev, state, T0 + timedelta(seconds=i), commit=False)


def share_changes(db_url: str) -> list[dict[str, Any]]:
    """/api/share/v1/changes for a key of thoai-giang, as JSON."""
    with psycopg.connect(db_url) as conn:
        rows, _ = share.changes(conn, share.Scope(("thoai-giang",), None), 10000, None)
    return orjson.loads(orjson.dumps(rows))  # type: ignore[no-any-return]


def row(db_url: str, sql: str, args: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, args).fetchone()  # type: ignore[arg-type]


def test_changes_are_pushed_with_bearer_lgsp_header_key_and_share_rows(
    seeded: str, receiver: Lgsp, tmp_path: Path
) -> None:
    with pushing(settings(seeded), ups(receiver, tmp_path)):
        changes(seeded, 9)
        wait_for(lambda: len(receiver.items()) == 6)
    assert receiver.problems == []
    expected = share_changes(seeded)
    assert receiver.items() == expected  # the rows of /api/share/v1/changes, thoai-giang only
    assert {it["commune"] for it in receiver.items()} == {"thoai-giang"}
    first = receiver.pushes[0]
    h = first["headers"]
    assert h["authorization"] == "Bearer tok-1"
    assert h["lgspaccesstoken"] == lgsp_receiver.LGSP_TOKEN
    assert h["content-type"] == "application/json"
    assert len(h["idempotency-key"]) == 36
    assert set(orjson.loads(first["body"])) == {"type", "items"}
    # the token request: client credentials, HTTP Basic, the scope
    tok = receiver.tokens_issued[0]
    assert tok["form"] == {"grant_type": "client_credentials", "scope": "ioc"}
    # each push its own key
    keys = [p["headers"]["idempotency-key"] for p in receiver.pushes]
    assert len(set(keys)) == len(keys)


def test_one_token_serves_many_pushes(seeded: str, receiver: Lgsp, tmp_path: Path) -> None:
    with pushing(settings(seeded), ups(receiver, tmp_path)):
        for i in range(5):
            changes(seeded, 3, start=3 * i)
            wait_for(lambda i=i: len(receiver.items()) == 2 * (i + 1))
    assert len(receiver.pushes) >= 5
    assert len(receiver.tokens_issued) == 1


def test_token_is_renewed_after_expires_in(receiver: Lgsp) -> None:
    """With a clock that moves: reused while valid, a new grant once expires_in (less the margin) passed."""
    import httpx

    from services.push.oauth2 import TokenSource

    receiver.expires_in = 120
    now = [1000.0]
    cfg = upstreams.OAuth2(
        f"{receiver.url}/token", lgsp_receiver.CLIENT_ID, lgsp_receiver.CLIENT_SECRET, "ioc"
    )

    async def go() -> list[str]:
        async with httpx.AsyncClient() as client:
            src = TokenSource(cfg, client, clock=lambda: now[0])
            got = [await src.token()]
            now[0] += 80  # 120 s less the 30 s margin is 90 s
            got.append(await src.token())
            now[0] += 11
            got.append(await src.token())
            return got

    assert asyncio.run(go()) == ["tok-1", "tok-1", "tok-2"]
    assert len(receiver.tokens_issued) == 2


def test_token_endpoint_refusal_is_the_upstreams_last_error(
    seeded: str, receiver: Lgsp, tmp_path: Path
) -> None:
    receiver.token_status = 503
    with pushing(settings(seeded), ups(receiver, tmp_path)):
        changes(seeded, 3)
        wait_for(
            lambda: row(
                seeded, "SELECT last_error FROM push_targets WHERE target = 'upstream:lgsp-an-giang'"
            )[0]
        )
        err = row(seeded, "SELECT last_error FROM push_targets WHERE target = 'upstream:lgsp-an-giang'")[0]
        assert err == "token endpoint answered 503: temporarily_unavailable"
        assert receiver.pushes == []
        receiver.token_status = 200
        wait_for(lambda: len(receiver.items()) == 2)
    assert lgsp_receiver.CLIENT_SECRET not in err


def test_a_401_forces_a_new_token_and_keeps_the_key(seeded: str, receiver: Lgsp, tmp_path: Path) -> None:
    with pushing(settings(seeded), ups(receiver, tmp_path)):
        changes(seeded, 3)
        wait_for(lambda: len(receiver.items()) == 2)
        receiver.revoke_tokens()
        changes(seeded, 3, start=3)
        wait_for(lambda: len(receiver.items()) == 4)
    refused = [p for p in receiver.pushes if p["headers"]["authorization"] == "Bearer tok-1"][-1]
    retried = [p for p in receiver.pushes if p["headers"]["authorization"] == "Bearer tok-2"]
    assert len(retried) == 1
    assert retried[0]["headers"]["idempotency-key"] == refused["headers"]["idempotency-key"]
    assert retried[0]["body"] == refused["body"]
    assert len(receiver.tokens_issued) == 2


def test_5xx_and_timeouts_are_retried_with_the_same_key(seeded: str, receiver: Lgsp, tmp_path: Path) -> None:
    receiver.answers = [503, 500, "hang", 502]
    receiver.hang_s = 2.5
    with pushing(settings(seeded), ups(receiver, tmp_path, timeout_s=1)):
        changes(seeded, 3)
        wait_for(lambda: len(receiver.pushes) >= 5 and receiver.pushes[-1]["at"] and not receiver.answers)
        wait_for(
            lambda: (
                row(seeded, "SELECT status FROM push_outbox WHERE target = 'upstream:lgsp-an-giang'")[0]
                == "delivered"
            )
        )
    keys = {p["headers"]["idempotency-key"] for p in receiver.pushes}
    assert len(keys) == 1  # one row, five attempts, one key
    assert len({p["body"] for p in receiver.pushes}) == 1
    assert receiver.items() == share_changes(seeded)  # taken once
    attempts, last_error = row(
        seeded, "SELECT attempts, last_error FROM push_outbox WHERE target = 'upstream:lgsp-an-giang'"
    )
    assert attempts == 5
    assert last_error == 'HTTP 502: {"error": "scripted 502"}'


def test_a_refused_row_is_dead_lettered_and_the_next_goes(
    seeded: str, receiver: Lgsp, tmp_path: Path
) -> None:
    receiver.answers = [422, 422, 422]
    with pushing(settings(seeded), ups(receiver, tmp_path)):
        changes(seeded, 3)
        wait_for(lambda: row(seeded, "SELECT count(*) FROM push_outbox WHERE status = 'dead'")[0] == 1)
        changes(seeded, 3, start=3)
        wait_for(lambda: len(receiver.items()) == 2)
        dead = row(seeded, "SELECT refusals, last_error, seq FROM push_outbox WHERE status = 'dead'")
        assert dead[0] == 3 and dead[1].startswith("HTTP 422") and dead[2] == 1
        assert [it["seq"] for it in receiver.items()] == [it["seq"] for it in share_changes(seeded)[2:]]
        assert row(seeded, "SELECT dead_total FROM push_targets")[0] == 1
        # once the receiver takes it, an admin sends it again: `ioc alerts --requeue upstream:<id>`
        from cli.cmd_alerts import Settings, _requeue

        s = load(Settings, _env_file=None, database_url=seeded)
        assert asyncio.run(_requeue(s, "upstream:lgsp-an-giang")) == 0
        wait_for(lambda: len(receiver.items()) == 4)
    expected = share_changes(seeded)
    assert receiver.items() == expected[2:] + expected[:2]
    keys = [p["headers"]["idempotency-key"] for p in receiver.pushes]
    assert keys[0] == keys[1] == keys[2] == keys[-1]  # the requeued row kept its key


def test_rows_go_in_commit_order_even_when_a_lower_one_commits_late(db_url: str) -> None:
    """A transaction that queued first but commits last: its row is numbered after the others."""

    async def go() -> list[int]:
        slow = await psycopg.AsyncConnection.connect(db_url)
        await outbox.enqueue(slow, "upstream:x", {"type": "changes", "items": [{"n": 0}]})
        fast = await psycopg.AsyncConnection.connect(db_url)

        async def later() -> None:
            await outbox.enqueue(fast, "upstream:x", {"type": "changes", "items": [{"n": 1}]})
            await fast.commit()

        try:
            t = asyncio.create_task(later())
            # the second waits for the first's commit (the target's row lock): seen by the server
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as watch:
                while True:
                    cur = await watch.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    )
                    if (await cur.fetchone()) == (1,):
                        break
                    await asyncio.sleep(0.02)
            assert not t.done()
            await slow.commit()
            await t
            cur = await fast.execute("SELECT seq, body::text FROM push_outbox ORDER BY seq")
            rows = await cur.fetchall()
        finally:
            await slow.close()
            await fast.close()
        return [orjson.loads(b)["items"][0]["n"] for _, b in rows]

    assert asyncio.run(go()) == [0, 1]


def test_alerts_are_pushed_as_share_rows(seeded: str, receiver: Lgsp, tmp_path: Path) -> None:
    with pushing(settings(seeded), ups(receiver, tmp_path)):
        with psycopg.connect(seeded) as conn:
            for dev in ("spk-trung-binh-1", "spk-vt-1"):
                conn.execute(
                    "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, since, opened_at)"
                    " SELECT 'offline', id, commune_id, village_id, kind, 'warning', 'mất kết nối', now(), now()"
                    " FROM devices WHERE id = %s",
                    (dev,),
                )
            conn.commit()
            wait_for(lambda: len(receiver.items("alerts")) == 1)
            conn.execute(
                "UPDATE alerts SET state = 'acked', acked_at = now(), acked_by = 'op', updated_at = now()"
                " WHERE device_id = 'spk-trung-binh-1'"
            )
            conn.commit()
            conn.execute("UPDATE alerts SET notify_count = 5")  # not a shared change: no push
            conn.commit()
            wait_for(lambda: len(receiver.items("alerts")) == 2)
            rows, _ = share.alerts(conn, share.Scope(("thoai-giang",), None), None, 100, None)
    got = receiver.items("alerts")
    assert [a["state"] for a in got] == ["open", "acked"]
    assert got[-1] == orjson.loads(orjson.dumps(rows[0]))
    assert all(a["commune"] == "thoai-giang" for a in got)


def test_daily_report_goes_once_a_day_across_restarts(seeded: str, receiver: Lgsp, tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    from psycopg_pool import AsyncConnectionPool

    from services import criteria
    from services.push import producers

    (up,) = ups(receiver, tmp_path, send="[daily_report]", daily_at='"16:30"')
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    clock = [datetime(2026, 12, 2, 16, 29, tzinfo=tz)]
    calls: list[tuple[Any, ...]] = []

    def report(conn: psycopg.Connection, first: Any, last: Any, communes: list[str] | None) -> dict[str, Any]:
        calls.append((first, last, communes))
        return criteria.report(conn, first, last, communes, tz=tz, now=clock[0])

    async def tick() -> int:
        async with AsyncConnectionPool(seeded, open=False) as pool:
            async with pool.connection() as conn:
                await producers.start_cursors(conn, up)
            p = producers.Producer(pool, up, db_url=seeded, tz=tz, report=report, clock=lambda: clock[0])
            return await p.tick()

    assert asyncio.run(tick()) == 0  # 16:29
    clock[0] = datetime(2026, 12, 2, 16, 31, tzinfo=tz)
    assert asyncio.run(tick()) == 1
    assert asyncio.run(tick()) == 0  # a new producer (a restart) the same day sends nothing
    clock[0] = datetime(2026, 12, 3, 9, 0, tzinfo=tz)
    assert asyncio.run(tick()) == 0
    clock[0] = datetime(2026, 12, 3, 17, 0, tzinfo=tz)
    assert asyncio.run(tick()) == 1
    assert [c[0].isoformat() for c in calls] == ["2026-12-01", "2026-12-01"]
    assert [c[1].isoformat() for c in calls] == ["2026-12-02", "2026-12-03"]
    assert calls[0][2] == ["thoai-giang"]
    with psycopg.connect(seeded) as conn:
        bodies = [orjson.loads(b) for (b,) in conn.execute("SELECT body::text FROM push_outbox ORDER BY seq")]
        expected = criteria.report(conn, calls[1][0], calls[1][1], ["thoai-giang"], tz=tz, now=clock[0])
    assert [b["type"] for b in bodies] == ["daily_report", "daily_report"]
    assert {i["id"] for i in bodies[1]["items"]} == {i["id"] for i in expected["items"]}
    assert bodies[1]["period"]["from"] == "2026-12-01" and bodies[1]["period"]["to"] == "2026-12-03"
    with pushing(settings(seeded), (up,)):
        wait_for(lambda: len(receiver.taken) == 2)
    assert receiver.problems == []


@contextmanager
def ioc_alerts(db_url: str, upstreams_file: Path, data_dir: Path) -> Iterator[Any]:
    """The real `ioc alerts` process (evaluator and pusher), killed on exit if still running."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(
        IOC_DATABASE_URL=db_url,
        IOC_UPSTREAMS_FILE=str(upstreams_file),
        IOC_DATA_DIR=str(data_dir),
        IOC_TEST_LGSP_SECRET=lgsp_receiver.CLIENT_SECRET,
        IOC_PUSH_POLL_S="0.2",
        IOC_PUSH_BACKOFF_S="0.1",
        IOC_PUSH_BACKOFF_CAP_S="0.5",
        IOC_PUSH_LOCK_POLL_S="0.2",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "alerts"],
        env=env,
        cwd=str(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        assert proc.stderr is not None
        proc.stderr.close()


def test_nothing_is_lost_while_the_receiver_is_down_across_a_kill_of_ioc_alerts(
    seeded: str, receiver: Lgsp, tmp_path: Path
) -> None:
    import signal

    path = tmp_path / "upstreams.yaml"
    path.write_text(lgsp_receiver.upstreams_yaml(receiver, batch=5))
    receiver.down = True
    with ioc_alerts(seeded, path, tmp_path) as proc:
        wait_for(lambda: row(seeded, "SELECT count(*) FROM push_cursors")[0] == 3, timeout=60)
        changes(seeded, 30)
        wait_for(lambda: len(receiver.pushes) >= 3, timeout=30)  # refused while down
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    tried_before = {p["headers"]["idempotency-key"] for p in receiver.pushes}
    changes(seeded, 30, start=30)
    with ioc_alerts(seeded, path, tmp_path) as proc:
        wait_for(lambda: len(receiver.pushes) > len(tried_before) + 2, timeout=60)
        changes(seeded, 6, start=60)
        receiver.down = False
        expected = share_changes(seeded)
        assert len(expected) == 44
        wait_for(lambda: len(receiver.items()) == len(expected), timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert receiver.items() == expected  # every change once, in order
    assert receiver.problems == []
    first_taken = next(iter(receiver.taken))
    assert first_taken in tried_before  # the row refused before the kill kept its key after it
    assert row(seeded, "SELECT count(*) FROM push_outbox WHERE status <> 'delivered'")[0] == 0


def test_api_lists_each_upstream_with_its_backlog_and_last_error(
    seeded: str, receiver: Lgsp, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from services import auth

    with psycopg.connect(seeded) as conn:
        auth.add_user(conn, "admin", "correct-horse-1", "admin")
        auth.add_user(conn, "op", "correct-horse-1", "operator")
        auth.add_user(conn, "admin-vt", "correct-horse-1", "admin", ["vong-the"])
        auth.add_user(conn, "admin-tg", "correct-horse-1", "admin", ["thoai-giang"])
        conn.commit()
    receiver.down = True
    with pushing(settings(seeded), ups(receiver, tmp_path, batch=2)):
        changes(seeded, 12)  # 8 in thoai-giang
        wait_for(
            lambda: (
                row(seeded, "SELECT last_error FROM push_targets")[0] == 'HTTP 503: {"error": "maintenance"}'
            )
        )
    gs = GatewaySettings(_env_file=None, database_url=seeded, mqtt_url=None)  # type: ignore[call-arg]
    with TestClient(create_app(gs)) as client:
        for user, n in (("admin-vt", 0), ("admin-tg", 1)):
            r = client.post("/api/v1/auth/login", json={"username": user, "password": "correct-horse-1"})
            r = client.get("/api/v1/upstreams", headers={"Authorization": f"Bearer {r.json()['token']}"})
            assert len(r.json()["items"]) == n  # an admin of other communes does not see this upstream
        for user, status in (("op", 403), ("admin", 200)):
            r = client.post("/api/v1/auth/login", json={"username": user, "password": "correct-horse-1"})
            tok = r.json()["token"]
            r = client.get("/api/v1/upstreams", headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == status, r.text
        (item,) = r.json()["items"]
        assert r.json()["next_cursor"] is None
        assert item["id"] == "upstream:lgsp-an-giang"
        assert item["backlog"] == 8  # 2 rows of 2 queued, 4 changes waiting in state_changes
        assert item["pending_pushes"] == 2
        assert item["last_success_at"] is None
        assert item["last_error"] == 'HTTP 503: {"error": "maintenance"}'
        assert item["last_error_at"] is not None
        assert lgsp_receiver.CLIENT_SECRET not in r.text and lgsp_receiver.LGSP_TOKEN not in r.text
        client.cookies.clear()
        assert client.get("/api/v1/upstreams").status_code == 401
        m = client.get("/metrics").text
        assert 'ioc_push_backlog_items{target="upstream:lgsp-an-giang"} 8' in m
        assert 'ioc_push_failures_total{target="upstream:lgsp-an-giang"}' in m


def test_tls_is_verified_unless_a_ca_file_or_insecure_says_otherwise(tmp_path: Path) -> None:
    """An LGSP on https with a certificate signed by a provincial CA the system does not know."""
    from services.push import status
    from services.push.outbox import Row
    from services.push.senders import UpstreamSender
    from tests.sources.test_probes import Pki

    pki = Pki(tmp_path)
    now = datetime.now(UTC)
    ctx = pki.server_ctx(now - timedelta(days=1), now + timedelta(days=30), "lgsp")
    with lgsp_receiver.lgsp(tls=ctx) as r:
        r.answers = []
        (default,) = ups(r, tmp_path)
        (with_ca,) = ups(r, tmp_path, ca_file=str(pki.ca_file))
        (insecure,) = ups(r, tmp_path, insecure="true")
        body = orjson.dumps({"type": "changes", "items": []})

        async def push(up: upstreams.Upstream) -> outbox.Outcome:
            sender = UpstreamSender(up)
            try:
                return await sender(Row(up.target, 1, body, "0b3f7c52-9d1e-4f7a-8a43-1c2d3e4f5a6b", 0, 0))
            finally:
                await sender.aclose()

        refused = asyncio.run(push(default))
        assert refused.kind == "retry" and "CERTIFICATE_VERIFY_FAILED" in (refused.error or "")
        assert status.error_kind(refused.error) == "tls"
        assert r.tokens_issued == [] and r.pushes == []  # nothing, not even the secret, went out
        assert asyncio.run(push(with_ca)).kind == "ok"
        assert asyncio.run(push(insecure)).kind == "ok"
    assert len(r.taken) == 1  # the same key twice: taken once


def test_ngsi_targets_are_delivered_in_order_and_dropped_when_gone(seeded: str, tmp_path: Path) -> None:
    """The NGSI-LD side of the push interface (services.ngsi_subscriptions) as a stand-in module:
    notifications of two subscriptions, each in order, to the endpoint it names; a subscription
    that is gone has its rows dropped; every attempt recorded in the transaction that marks it."""
    import types
    from dataclasses import dataclass

    from tests.alerts.conftest import Receiver

    recv = Receiver()
    recv.answer = (200, {})
    recorded: list[tuple[str, bool]] = []

    @dataclass(frozen=True)
    class NotifyTarget:
        uri: str
        headers: dict[str, str]

    async def notification_target(conn: Any, sub_id: str) -> NotifyTarget | None:
        if sub_id == "gone":
            return None
        return NotifyTarget(
            recv.url(f"/notify/{sub_id}"), {"Content-Type": "application/ld+json", "Link": "<x>"}
        )

    async def record_delivery(conn: Any, sub_id: str, ok: bool, error: str | None, at: datetime) -> None:
        await conn.execute("SELECT 1")  # on the transaction's connection
        recorded.append((sub_id, ok))

    async def run_producer(pool: Any, stop: asyncio.Event) -> None:
        await stop.wait()

    mod = types.SimpleNamespace(
        notification_target=notification_target, record_delivery=record_delivery, run_producer=run_producer
    )

    async def queue() -> None:
        async with await psycopg.AsyncConnection.connect(seeded) as conn:
            for i in range(5):
                for sub in ("a", "b", "gone"):
                    await outbox.enqueue(
                        conn, f"ngsi:{sub}", {"id": f"n{i}", "type": "Notification", "data": [{"i": i}]}
                    )
                await conn.commit()

    try:
        with pushing(settings(seeded), (), ngsi=mod):
            asyncio.run(queue())
            wait_for(lambda: len(recv.requests) == 10)
            wait_for(
                lambda: row(seeded, "SELECT count(*) FROM push_outbox WHERE target = 'ngsi:gone'")[0] == 0
            )
    finally:
        recv.close()
    for sub in ("a", "b"):
        got = [orjson.loads(r["body"])["id"] for r in recv.requests if r["path"] == f"/notify/{sub}"]
        assert got == [f"n{i}" for i in range(5)]
    h = recv.requests[0]["headers"]
    assert (
        h["content-type"] == "application/ld+json" and h["link"] == "<x>" and len(h["idempotency-key"]) == 36
    )
    assert sorted(recorded) == sorted([("a", True)] * 5 + [("b", True)] * 5)


def test_an_edited_upstreams_file_is_applied_and_a_bad_edit_is_not(
    seeded: str,
    receiver: Lgsp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from services.push import worker as push_worker

    monkeypatch.setattr(push_worker, "FILE_POLL_S", 0.1)
    path = tmp_path / "upstreams.yaml"
    path.write_text(lgsp_receiver.upstreams_yaml(receiver))
    with (
        lgsp_receiver.lgsp() as other,
        pushing(settings(seeded, upstreams_file=path), upstreams.load_file(path)) as w,
    ):
        changes(seeded, 3)
        wait_for(lambda: len(receiver.items()) == 2)
        path.write_text(
            lgsp_receiver.upstreams_yaml(receiver).replace("send: [changes, alerts]", "send: [chanegs]")
        )
        wait_for(lambda: "IOC_UPSTREAMS_FILE not applied" in caplog.text)
        changes(seeded, 3, start=3)
        wait_for(lambda: len(receiver.items()) == 4)  # the upstreams in force go on
        path.write_text(lgsp_receiver.upstreams_yaml(other))  # the LGSP moved
        wait_for(lambda: w.terms == 2)
        changes(seeded, 3, start=6)
        wait_for(lambda: len(other.items()) == 2)
        assert w.active
    assert len(receiver.items()) == 4
    assert [it["seq"] for it in receiver.items() + other.items()] == [
        it["seq"] for it in share_changes(seeded)
    ]


def test_prune_empties_old_delivered_bodies_keeps_their_count_and_removes_rows_past_keep_days(
    db_url: str,
) -> None:
    async def go() -> int:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            for _ in range(4):
                await outbox.enqueue(conn, "ngsi:s1", {"type": "Notification", "data": [{"x": 1}]})
            await conn.commit()
            # seq 1 delivered 40 days ago, 2 two days ago, 3 an hour ago; 4 still pending (receiver down)
            for seq, age in ((1, "40 days"), (2, "2 days"), (3, "1 hour")):
                await conn.execute(
                    "UPDATE push_outbox SET status = 'delivered', delivered_at = now() - %s::interval"
                    " WHERE target = 'ngsi:s1' AND seq = %s",
                    (age, seq),
                )
            await conn.execute("UPDATE push_outbox SET created_at = now() - interval '3 days' WHERE seq = 4")
            await conn.commit()
            n = await outbox.prune(conn, keep_days=30, keep_bodies_hours=24)
            await conn.commit()
            return n

    assert asyncio.run(go()) == 1
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT seq, status, body::text, items FROM push_outbox WHERE target = 'ngsi:s1' ORDER BY seq"
        ).fetchall()
    assert [(seq, status, items) for seq, status, _, items in rows] == [
        (2, "delivered", 1),
        (3, "delivered", 1),
        (4, "pending", 1),
    ]
    bodies = {seq: body for seq, _, body, _ in rows}
    assert bodies[2] == "null"  # counted by the criteria report, its bytes gone
    assert orjson.loads(bodies[3])["type"] == "Notification"  # delivered within the day: kept
    assert orjson.loads(bodies[4])["type"] == "Notification"  # not delivered yet: sent as it is


def test_a_month_whose_last_days_were_missed_gets_its_whole_report_before_todays(
    seeded: str, receiver: Lgsp, tmp_path: Path
) -> None:
    """The IOC was down from 27 November to 2 December: November's report never covered its last
    days, and the month-so-far report of December cannot. November's whole month goes first."""
    from zoneinfo import ZoneInfo

    from psycopg_pool import AsyncConnectionPool

    from services.push import producers

    (up,) = ups(receiver, tmp_path, send="[daily_report]", daily_at='"16:30"')
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    calls: list[tuple[str, str]] = []

    def report(conn: psycopg.Connection, first: Any, last: Any, communes: list[str] | None) -> dict[str, Any]:
        calls.append((first.isoformat(), last.isoformat()))
        return {"period": {"from": first.isoformat(), "to": last.isoformat()}, "items": []}

    async def tick() -> int:
        async with AsyncConnectionPool(seeded, open=False) as pool:
            async with pool.connection() as conn:
                await producers.start_cursors(conn, up)
                await conn.execute(
                    "UPDATE push_cursors SET day = '2026-11-27' WHERE upstream = %s AND stream = 'daily_report'",
                    (up.id,),
                )
            at = datetime(2026, 12, 2, 16, 31, tzinfo=tz)
            p = producers.Producer(pool, up, db_url=seeded, tz=tz, report=report, clock=lambda: at)
            return await p.tick()

    assert asyncio.run(tick()) == 2
    assert calls == [("2026-11-01", "2026-11-30"), ("2026-12-01", "2026-12-02")]
    with psycopg.connect(seeded) as conn:
        periods = [
            orjson.loads(b)["period"]
            for (b,) in conn.execute("SELECT body::text FROM push_outbox ORDER BY seq")
        ]
        (day,) = conn.execute(
            "SELECT day FROM push_cursors WHERE upstream = %s AND stream = 'daily_report'", (up.id,)
        ).fetchone()  # type: ignore[misc]
    assert periods == [{"from": "2026-11-01", "to": "2026-11-30"}, {"from": "2026-12-01", "to": "2026-12-02"}]
    assert day.isoformat() == "2026-12-02"


def test_missed_month_ends_are_the_months_whose_last_day_no_report_covered() -> None:
    from datetime import date

    from services.push.producers import MAX_MISSED_MONTHS, missed_month_ends

    assert missed_month_ends(None, date(2026, 12, 2)) == []
    assert missed_month_ends(date(2026, 12, 1), date(2026, 12, 2)) == []
    assert missed_month_ends(date(2026, 11, 30), date(2026, 12, 2)) == []  # November's end was sent
    assert missed_month_ends(date(2026, 10, 15), date(2027, 1, 3)) == [
        (date(2026, 10, 1), date(2026, 10, 31)),
        (date(2026, 11, 1), date(2026, 11, 30)),
        (date(2026, 12, 1), date(2026, 12, 31)),
    ]
    assert missed_month_ends(date(2024, 2, 10), date(2024, 3, 1)) == [(date(2024, 2, 1), date(2024, 2, 29))]
    years = missed_month_ends(date(2020, 1, 5), date(2026, 12, 2))  # the last twelve, not 2020's
    assert len(years) == MAX_MISSED_MONTHS and years[0] == (date(2025, 12, 1), date(2025, 12, 31))
    assert years[-1] == (date(2026, 11, 1), date(2026, 11, 30))
