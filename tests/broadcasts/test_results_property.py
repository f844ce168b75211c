"""Property: whatever bytes arrive on whatever device's `cmd_result` topic, each message ends as a
stored result or a dead letter with its reason — never an exception — and a delivery changes only
when its own device names it by its id with a status of the contract (SPEC §9), forward only."""

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import media
from services.broadcasts import delivery, results, store
from services.broadcasts.model import DEVICE_OUTCOMES, FINAL_STATES, RESULT_STATES, STEP
from services.intake import REASONS, Raw, classify
from services.models import Device
from tests.broadcasts.conftest import SECRET, wav
from tests.gateway.conftest import seed

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
TZ = "Asia/Ho_Chi_Minh"
# The seeded registry's devices (tests/gateway/conftest.py), and two a device might pretend to be.
DEVICES = {
    d.id: d
    for d in (
        Device("spk-trung-binh-1", "thoai-giang", "speaker", "trung-binh"),
        Device("spk-tay-binh-1", "thoai-giang", "speaker", "tay-binh"),
        Device("eb-tay-binh", "thoai-giang", "eboard", "tay-binh"),
        Device("spk-xom-1", "long-thanh", "speaker", "xom-1"),
        Device("cam-ubnd-1", "thoai-giang", "camera", "trung-binh"),
    )
}
TOPICS = [f"ioc/v1/{d.commune_id}/{d.kind}/{d.id}/cmd_result" for d in DEVICES.values()] + [
    "ioc/v1/thoai-giang/speaker/spk-nobody/cmd_result",  # not in the registry
    "ioc/v1/long-thanh/speaker/spk-trung-binh-1/cmd_result",  # another commune's topic
    "ioc/v1/thoai-giang/eboard/spk-tay-binh-1/cmd_result",  # another kind's topic
]
# Delivery states a result may find (the worker's and the device's), set before each example.
START_STATES = ("sent", "accepted", "playing", "done", "failed", "expired", "cancelled")


@pytest.fixture
def deliveries(db_url: str) -> tuple[str, dict[int, str]]:
    """One emergency to every speaker and e-board of both communes, sent: delivery id -> device."""
    seed(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn, tempfile.TemporaryDirectory() as tmp:
        m = media.store(conn, Path(tmp), wav(1.0), "admin")
        conn.execute("UPDATE device_state SET state = 'online', since = %s", (T0 - timedelta(hours=1),))
        with conn.transaction():
            store.create(
                conn,
                title="Cảnh báo lũ",
                priority="emergency",
                media_id=m.id,
                text="Lũ về",
                targets={"communes": ["thoai-giang", "long-thanh"]},
                starts_at=T0,
                rrule=None,
                expires_at=None,
                risk_level=3,
                volume=None,
                actor="admin",
                role="admin",
                scope=None,
                now=T0,
                tz=TZ,
            )
        assert len(delivery.tick(conn, T0, TZ, "http://ioc.example", SECRET)) == 4
        return db_url, dict(conn.execute("SELECT id, device_id FROM deliveries").fetchall())


def _payloads(ids: list[int]) -> st.SearchStrategy[bytes]:
    known = st.sampled_from(ids)
    some_id = st.one_of(
        known,
        known.map(str),
        known.map(lambda i: f" {i}"),
        known.map(lambda i: str(i).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))),
        st.sampled_from(["²", "¹²", "１２", "0x1", "1e3", "-1", "", "00", "9" * 19, "1" * 400]),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.booleans(),
        st.floats(),
        st.text(max_size=30),
        st.none(),
        st.lists(known, max_size=2),
    )
    status = st.one_of(
        st.sampled_from(RESULT_STATES),
        st.sampled_from(["DONE", "ok", "cancelled", "expired", "sent", "scheduled", ""]),
        st.none(),
        st.integers(),
        st.lists(st.sampled_from(RESULT_STATES), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    anything = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(min_codepoint=0)),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    )
    reason = st.one_of(st.text(st.characters(min_codepoint=0), max_size=600), anything)
    body = st.fixed_dictionaries(
        {"id": some_id, "status": status},
        optional={"reason": reason, "ts": anything | st.just("2026-12-02T08:00:01Z"), "x": anything},
    )
    return st.one_of(
        body.map(_dumps),
        st.binary(max_size=200),
        anything.map(_dumps),
        body.map(lambda b: _dumps(b) + b"\x00"),
        st.just(b'{"id": "1", "status": "done", "reason": "\\ud800"}'),  # a lone surrogate
        st.just(b"[" * 2000 + b"]" * 2000),
        st.just(orjson.dumps({"id": "1", "status": "done", "reason": "x" * 70_000})),
    )


def _dumps(value: object) -> bytes:
    """JSON as a careless firmware writes it: numbers of any size, NaN, escaped lone surrogates."""
    return json.dumps(value).encode()


@st.composite
def _round(draw: st.DrawFn, ids: list[int]) -> tuple[dict[int, str], list[Raw]]:
    starts = {i: draw(st.sampled_from(START_STATES)) for i in ids}
    msgs = draw(st.lists(st.tuples(st.sampled_from(TOPICS), _payloads(ids)), min_size=1, max_size=12))
    return starts, [Raw(t, p, T0) for t, p in msgs]


def test_any_bytes_on_any_cmd_result_topic_end_stored_or_dead_lettered(
    deliveries: tuple[str, dict[int, str]],
) -> None:
    url, owner = deliveries
    ids = sorted(owner)

    @settings(
        max_examples=150,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_round(ids))
    def run(example: tuple[dict[int, str], list[Raw]]) -> None:
        starts, raws = example
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE deliveries SET state = %s, reason = NULL WHERE id = %s",
                    [(s, i) for i, s in starts.items()],
                )
            batch = classify(raws, DEVICES)
            assert batch.size() == 0  # results are never rows of the batch
            dead = batch.dead + results.apply(conn, batch.cmd_results, T0)
            after = dict(conn.execute("SELECT id, state FROM deliveries").fetchall())
        assert {d.reason for d in dead} <= set(REASONS) - {"internal_error"}
        # Each message is a dead letter or was taken as a result of the contract by its own device.
        taken = [_valid(raw, owner) for raw in raws]
        assert len(dead) == taken.count(None) + sum(
            1 for i, t in enumerate(taken) if t is not None and _late(starts, taken, i)
        )
        for i in ids:
            named = [t[1] for t in taken if t is not None and t[0] == i]
            if after[i] == starts[i]:
                continue
            # Changed: only forward, to a status its own device sent, and never from an IOC outcome.
            assert after[i] in named, (i, starts[i], after[i], named)
            assert starts[i] not in FINAL_STATES
            assert STEP[after[i]] > STEP[starts[i]]

    run()


def _valid(raw: Raw, owner: dict[int, str]) -> tuple[int, str] | None:
    """(delivery id, status) when the message is a result of the contract for a delivery of the
    device whose topic it came on, else None (the oracle, written apart from the code)."""
    parts = raw.topic.split("/")
    device = DEVICES.get(parts[4])
    if device is None or (parts[2], parts[3]) != (device.commune_id, device.kind):
        return None
    if len(raw.payload) > 64 * 1024:
        return None
    try:
        body: Any = orjson.loads(raw.payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    rid, status = body.get("id"), body.get("status")
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        return None
    text = str(rid)
    if not (text and len(text) <= 18 and all(c in "0123456789" for c in text)):
        return None
    if status not in RESULT_STATES or owner.get(int(text)) != device.id:
        return None
    return int(text), status


def _late(starts: dict[int, str], taken: list[tuple[int, str] | None], i: int) -> bool:
    """Whether the i-th (valid) result is a dead letter `late_result`: the delivery, as the
    results before it in the batch left it, was closed by the IOC, or the device gave another
    outcome already."""
    rid, status = taken[i]  # type: ignore[misc]
    state = starts[rid]
    for t in taken[:i]:
        if t is not None and t[0] == rid and state not in FINAL_STATES and STEP[t[1]] > STEP[state]:
            state = t[1]
    if state in DEVICE_OUTCOMES:
        return status in DEVICE_OUTCOMES and status != state
    return state in FINAL_STATES and state != status
