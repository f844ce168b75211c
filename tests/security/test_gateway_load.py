"""The gateway under more concurrent requests than it has database connections and worker threads
(issue 13, item 1): a real `ioc gateway` (uvicorn subprocess) on a real database. Every request gets
an answer (200, or 503 with Retry-After), and /healthz answers during the load and right after.

The gateway used to wedge here: worker threads blocked waiting for a pooled connection while the
requests holding the connections waited for a worker thread, until the pool's 30 s timeout. The
client timeouts below are shorter than that, so the old code fails in about 20 s instead of hanging.
"""

import asyncio
from collections import Counter

import anyio
import httpx
import psycopg
import pytest

from gateway.admission import NoSlot, Slots
from services import keys
from tests.dashboard.serve import gateway
from tests.gateway.conftest import headers_for, seed

# More than the pool (16) plus the worker threads (40), well past what used to wedge it (~40).
CONCURRENT = 120
ROUNDS = 3
ANSWER_TIMEOUT_S = 20.0  # below the old pool timeout (30 s): a wedged gateway fails, not hangs


@pytest.fixture
def share_key(db_url: str) -> str:
    seed(db_url)
    with psycopg.connect(db_url) as conn:
        _, secret = keys.create(conn, "load test", None, rate_per_min=1_000_000)
    return secret


async def _load(base: str, path: str, headers: dict[str, str]) -> tuple[Counter[int], list[str]]:
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    # A new connection for every request: on a machine this busy a client may read an answer
    # seconds after it was sent, and then reuse a connection the gateway is just closing after
    # its 5 s keep-alive timeout (the client's race, not a refusal).
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=ANSWER_TIMEOUT_S) as client:

        async def one() -> None:
            for _ in range(ROUNDS):
                try:
                    r = await client.get(path, headers=headers)
                except httpx.HTTPError as err:
                    problems.append(f"{type(err).__name__}: {err}")
                    return
                statuses[r.status_code] += 1
                if r.status_code == 503 and not r.headers.get("retry-after", "").isdigit():
                    problems.append(f"503 without Retry-After: {r.headers}")
                if r.status_code == 503 and r.json().get("error", {}).get("code") != "busy":
                    problems.append(f"503 without the busy error body: {r.text[:200]}")

        async def health_during() -> None:
            # Sent while the load is in flight: answered at once, not after the queue.
            await asyncio.sleep(0.2)
            async with httpx.AsyncClient(base_url=base, timeout=5.0) as probe:
                for _ in range(5):
                    try:
                        r = await probe.get("/healthz")
                    except httpx.HTTPError as err:
                        problems.append(f"/healthz during the load: {type(err).__name__}")
                        return
                    if r.status_code != 200:
                        problems.append(f"/healthz during the load: {r.status_code}")
                    await asyncio.sleep(0.1)

        await asyncio.gather(health_during(), *(one() for _ in range(CONCURRENT)))
    return statuses, problems


@pytest.mark.timeout(180)
@pytest.mark.parametrize("route", ["operator", "share"])
def test_every_request_is_answered_and_healthz_stays_up_past_pool_and_threads(
    db_url: str, share_key: str, route: str
) -> None:
    if route == "operator":
        path, headers = "/api/v1/status", headers_for(db_url)("admin")
    else:
        path, headers = "/api/share/v1/status", {"Authorization": f"Bearer {share_key}"}
    with gateway(db_url) as base:
        statuses, problems = asyncio.run(_load(base, path, headers))
        assert problems == [], (problems[:5], statuses)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[200] > 0, statuses
        assert sum(statuses.values()) == CONCURRENT * ROUNDS
        # Right after the load: the gateway is not wedged, it serves again.
        assert httpx.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
        assert httpx.get(base + path, headers=headers, timeout=5).status_code == 200


@pytest.mark.timeout(120)
def test_past_its_limits_the_gateway_answers_503_with_retry_after(db_url: str, share_key: str) -> None:
    headers = headers_for(db_url)("admin")
    # Two requests served at once and four waiting (the rest refused at once), and one database
    # connection for requests (pool of 5, 4 kept back) waited for at most 0.1 s.
    with gateway(
        db_url,
        http_max_inflight="2",
        http_queue="4",
        http_queue_wait_s="0.5",
        http_refusal_delay_s="0",
        db_pool_size="5",
        db_wait_s="0.1",
    ) as base:
        statuses, problems = asyncio.run(_load(base, "/api/v1/status", headers))
        assert problems == [], (problems[:5], statuses)
        assert set(statuses) == {200, 503}, statuses
        assert sum(statuses.values()) == CONCURRENT * ROUNDS
        r = httpx.get(base + "/api/v1/status", headers=headers, timeout=5)
        assert r.status_code == 200


def test_slots_are_handed_over_in_order_and_waits_are_bounded() -> None:
    async def main() -> None:
        slots = Slots(size=1, queue=2, wait_s=30)
        await slots.acquire()
        order: list[str] = []

        async def waiter(name: str) -> None:
            await slots.acquire()
            order.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "first")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, "second")
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(NoSlot):  # the queue is full: refused at once
                await slots.acquire()
            slots.release()  # to "first"
            await anyio.wait_all_tasks_blocked()
            slots.release()  # to "second"
        assert order == ["first", "second"] and slots.taken == 1 and slots.waiting == 0

        # Waiters cancelled as a slot is handed over: the slot ends with whoever got it (one
        # that appended), or back in the pool; never lost, never counted twice.
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "cancelled")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, "next")
            await anyio.wait_all_tasks_blocked()
            slots.release()
            tg.cancel_scope.cancel()
        assert slots.taken == len(order) - 2 and slots.waiting == 0

        short = Slots(size=1, queue=5, wait_s=0.05)
        await short.acquire()
        with pytest.raises(NoSlot):  # nobody gives it back within the wait
            await short.acquire()
        assert short.waiting == 0
        short.release()
        assert short.taken == 0

    anyio.run(main)
