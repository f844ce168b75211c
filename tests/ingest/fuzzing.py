"""Generated MQTT traffic for the property test of ingest (tests/ingest/test_fuzz.py) and its long
run (bench/fuzz_ingest.py): what a buggy or hostile device can publish, interleaved with valid
statuses and events that carry `ts` and a marker `n`.

The invariants, checked after each example once the last valid message is stored (one ingest
reads the broker in order, so everything before it is committed too):
- every valid message is stored exactly once;
- every other message is in the dead-letter store exactly once, or counted as stored by the
  checks' own verdict (`classify`, the oracle) — only `unstorable` may move a checked message
  to the dead letters, and `internal_error` (a check that raised) never appears;
- the ingest's writer is alive;
- ioc_ingest_messages_total + ioc_ingest_dead_letters_total grow by what was published
  (commands the IOC itself publishes excepted: ingest ignores them).
"""

import itertools
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import strategies as st

from services.intake import Raw, classify
from services.models import Device
from services.topics import IGNORED, channel_of, device_topic

T = "thoai-giang"
# (device, kind) from tests/ingest/conftest.py REGISTRY
DEVICES = [
    ("gw-1", "gateway"),
    ("spk-1", "speaker"),
    ("eb-1", "eboard"),
    ("wifi-1", "wifi"),
    ("cam-1", "camera"),
]
VALID_FIELDS: dict[str, dict[str, Any]] = {
    "speaker": {"volume": 51, "playing": True},
    "eboard": {"screen_on": True, "errors": []},
    "wifi": {"clients": 3},
    "gateway": {"uplink_up": True},
    "camera": {"reachable": True},
}
BASE = datetime(2026, 11, 1, tzinfo=UTC)
# Reasons a message that passed the checks may still get when it is written.
WRITE_TIME_REASONS = ("unstorable", "bad_result", "unknown_delivery", "late_result")
_marker = itertools.count(1)

# Topic levels a broker accepts: Mosquitto disconnects a client whose topic has control
# characters or noncharacters (that device is then silent, not ours to dead-letter).
_level = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co"), blacklist_characters="+#/"), max_size=12
)
# Text as firmware may send it in payloads: control characters, NUL, lone surrogates, any plane.
_nasty_text = st.text(st.characters(min_codepoint=0), max_size=40) | st.sampled_from(
    ["a\x00b", "\x00", "\ud800", "\udfff", "x\ud83d", "\x1b[31m", "\u2028", "=cmd|' /C calc'!A0"]
)
_numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 1e308, 5e-324]),
)
_json_values = st.recursive(
    st.none() | st.booleans() | _numbers | _nasty_text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_nasty_text, children, max_size=5),
    max_leaves=25,
)
# Long random text (hypothesis keeps drawn data small: generated from a drawn seed instead).
_long_text = st.builds(
    lambda n, s: random.Random(s).randbytes(n).hex(), st.integers(500, 8000), st.integers()
)
_number_texts = st.sampled_from(
    [b"1e400", b"-1e400", b"1e-400", b"1" + b"0" * 400, b"-0", b"0.0000000001e-300", b"1E+2", b"NaN"]
)


def _encode(doc: Any, raw_surrogates: bool) -> bytes:
    """JSON as a device sends it: escaped (\\u0000, \\ud800) or as raw, invalid UTF-8 bytes."""
    if raw_surrogates:
        return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(doc).encode()


@st.composite
def bad_payload(draw: st.DrawFn) -> bytes:
    choice = draw(st.integers(0, 7))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        depth = draw(st.integers(1, 60))
        return b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
    if choice == 2:
        key = "k" * draw(st.integers(1, 70_000))
        return json.dumps({key: 1}).encode()
    if choice == 3:
        return b'{"v": ' + draw(_number_texts) + b"}"
    if choice == 4:
        n = draw(st.integers(1000, 3000))
        return json.dumps({f"k{i}": i for i in range(n)}).encode()
    if choice == 5:  # event-shaped
        doc = {
            "type": draw(_nasty_text | _long_text),
            "severity": draw(st.sampled_from(["info", "warning", "critical", "fatal", None])),
            "message": draw(_nasty_text),
        }
        return _encode(doc, draw(st.booleans()))
    if choice == 6:
        return draw(st.sampled_from([b"online", b"offline", b" online\n", b"ONLINE", b"", b"online\x00"]))
    return _encode(draw(st.dictionaries(_nasty_text, _json_values, max_size=6)), draw(st.booleans()))


@st.composite
def bad_topic(draw: st.DrawFn) -> str:
    device, kind = draw(st.sampled_from(DEVICES))
    channel = draw(st.sampled_from(["status", "event", "availability", "cmd", "cmd_result", "telemetry"]))
    shape = draw(st.integers(0, 6))
    if shape == 0:  # deeper than a device topic: the ACL allows it under the device's prefix
        return (
            device_topic(T, kind, device, channel)
            + "/"
            + "/".join(draw(st.lists(_level, min_size=1, max_size=3)))
        )
    if shape == 1:
        return "ioc/v1/" + "/".join(draw(st.lists(_level, min_size=0, max_size=8)))
    if shape == 2:
        return device_topic("other-commune", kind, device, channel)
    if shape == 3:
        return device_topic(T, "speaker" if kind != "speaker" else "wifi", device, channel)
    if shape == 4:
        return device_topic(T, kind, "nobody-" + draw(_level), channel)
    return device_topic(T, kind, device, channel)


@dataclass
class Message:
    topic: str
    payload: bytes
    marker: int | None = None  # valid messages: the `n` they carry
    channel: str = "status"


@st.composite
def valid_message(draw: st.DrawFn) -> Message:
    device, kind = draw(st.sampled_from(DEVICES))
    n = next(_marker)
    ts = (BASE + timedelta(milliseconds=n)).isoformat()
    if draw(st.booleans()):
        body = {"ts": ts, "n": n, **VALID_FIELDS[kind]}
        return Message(device_topic(T, kind, device, "status"), json.dumps(body).encode(), n, "status")
    body = {"ts": ts, "n": n, "type": "fuzz", "severity": "info"}
    return Message(device_topic(T, kind, device, "event"), json.dumps(body).encode(), n, "event")


@st.composite
def traffic(draw: st.DrawFn) -> list[Message]:
    """Bad messages interleaved with valid ones; a valid one last (the end marker)."""
    bad = draw(st.lists(st.builds(Message, bad_topic(), bad_payload()), min_size=1, max_size=10))
    valid = draw(st.lists(valid_message(), min_size=0, max_size=3))
    out: list[Message] = []
    for m in bad:
        out.append(m)
        if valid and draw(st.booleans()):
            out.append(valid.pop())
    return [*out, *valid, draw(valid_message())]


@dataclass
class Checker:
    """Runs one example against a live ingest and checks the invariants."""

    db_url: str
    devices: dict[str, Device]
    publish: Callable[[list[tuple[str, bytes]]], None]
    writer_alive: Callable[[], bool]
    examples: int = 0
    messages: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    # what PostgreSQL (or a dumper) said about the rows it refused, first words
    refusals: Counter[str] = field(default_factory=Counter)

    def run(self, msgs: list[Message]) -> None:
        self.examples += 1
        self.messages += len(msgs)
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            before_dead = _one(conn, "SELECT COALESCE(max(id), 0) FROM dead_letters")
            before_counts = _counters(conn)
            self.publish([(m.topic, m.payload) for m in msgs])
            last = msgs[-1]
            assert last.marker is not None
            _wait(lambda: _stored(conn, [last]) == 1 or not self.writer_alive())
            assert self.writer_alive(), "the ingest writer died"
            valid = [m for m in msgs if m.marker is not None]
            for m in valid:
                assert _stored(conn, [m]) == 1, (
                    f"valid message n={m.marker} stored {_stored(conn, [m])} times"
                )
            dead = conn.execute(
                "SELECT topic, payload, reason, detail FROM dead_letters WHERE id > %s", (before_dead,)
            ).fetchall()
            after_counts = _counters(conn)
        got = Counter((t, bytes(p)) for t, p, _, _ in dead)
        reasons = Counter(r for _, _, r, _ in dead)
        self.reasons.update(reasons)
        self.refusals.update(d[:50] for _, _, r, d in dead if r == "unstorable")
        assert "internal_error" not in reasons, dead
        oracle = classify([Raw(m.topic, m.payload, datetime.now(UTC)) for m in msgs], self.devices)
        expected_dead = Counter((d.topic, d.payload) for d in oracle.dead)
        assert not expected_dead - got, f"not dead-lettered: {expected_dead - got}"
        # Past the checks, a message may still be refused when written: its rows by PostgreSQL
        # (`unstorable`), a command result by the broadcasts (no such delivery, ...).
        extra = got - expected_dead
        late = Counter((t, bytes(p)) for t, p, r, _ in dead if r in WRITE_TIME_REASONS)
        assert not extra - late, f"dead-lettered for a reason the checks did not give: {extra - late}"
        passed = Counter(
            (r.topic, r.payload)
            for r in [*oracle.status_raws, *oracle.event_raws, *oracle.availability_raws]
            + [raw for _, raw in getattr(oracle, "cmd_results", [])]
        )
        assert not extra - passed, f"dead-lettered more often than sent: {extra - passed}"
        ignored = sum(1 for m in msgs if channel_of(m.topic) in IGNORED)
        grown = sum(after_counts.values()) - sum(before_counts.values())
        assert grown == len(msgs) - ignored, f"counters grew by {grown} for {len(msgs) - ignored} messages"
        dead_grown = sum(
            v for (n, _), v in after_counts.items() if n == "ioc_ingest_dead_letters_total"
        ) - sum(v for (n, _), v in before_counts.items() if n == "ioc_ingest_dead_letters_total")
        assert dead_grown == len(dead), f"dead-letter counter grew by {dead_grown} for {len(dead)} rows"


def _one(conn: psycopg.Connection, sql: str) -> int:
    row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


def _counters(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT name, label, value FROM metric_counters WHERE name LIKE 'ioc_ingest_%'"
    ).fetchall()
    return {(r[0], r[1]): int(r[2]) for r in rows}


def _stored(conn: psycopg.Connection, msgs: list[Message]) -> int:
    n = 0
    for m in msgs:
        table = "status_samples" if m.channel == "status" else "device_events"
        column = "metrics" if m.channel == "status" else "fields"
        row = conn.execute(
            f"SELECT count(*) FROM {table} WHERE {column}->'n' = %s::jsonb",  # type: ignore[arg-type]  # noqa: S608 - names from above
            (str(m.marker),),
        ).fetchone()
        n += int(row[0]) if row else 0
    return n


def _wait(fn: Callable[[], bool], timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"the last valid message was not stored within {timeout}s")
        time.sleep(0.01)
