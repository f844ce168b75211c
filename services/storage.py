"""Writing a classified batch in one transaction: samples, events, state, dead letters, feed.

Order inside the transaction matters: bulk writes first, then the rows other writers also
touch (device state, counters), and the feed/change counters last, so their row locks are
held only until commit and numbers are handed out in commit order.
"""

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb, JsonbBinaryDumper, set_json_loads

from services import feed
from services.db import first_line
from services.intake import MERGED_METRICS_MAX, Batch, DeadLetter, join, latest_per_device
from services.models import Liveness, State
from services.state import derive

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_samples "
    "(device_id text, ts timestamptz, received_at timestamptz, metrics jsonb) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS stage_state (device_id text, last_seen timestamptz, metrics jsonb,"
    " metrics_ts timestamptz, availability text, availability_at timestamptz, window_s int)"
    " ON COMMIT DELETE ROWS",
)


def _jsonb(obj: Any) -> Jsonb:
    return Jsonb(obj, dumps=_dumps)


def _dumps(obj: Any) -> bytes:
    # psycopg takes bytes as they are: no decode/encode round trip per row.
    return orjson.dumps(obj)


class _SerializedJsonb(JsonbBinaryDumper):
    """COPY jsonb columns from JSON already serialised (bytes), without a wrapper per row."""

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj


def prepare(conn: psycopg.Connection) -> None:
    """Per-connection setup (the staging table lives as long as the session)."""
    set_json_loads(orjson.loads, conn)
    # By oid only: COPY with set_types(["jsonb"]) takes this dumper; parameters of other
    # queries still choose their dumper by Python type (Jsonb wrappers).
    conn.adapters.register_dumper(None, _SerializedJsonb)
    for stmt in _STAGE:
        conn.execute(stmt)  # type: ignore[arg-type]
    # device_state is always in memory (every batch writes it): an index probe costs about what a
    # sequential read does. With the default cost (4, for spinning disks) and a staging table
    # without statistics, each batch hashed the whole of device_state to update a few dozen rows:
    # 14 ms per batch at 12,000 devices, most of PostgreSQL's time at 2,000 msg/s.
    conn.execute("SET random_page_cost = 1.1")
    conn.commit()


def _write_samples(conn: psycopg.Connection, batch: Batch) -> None:
    if not batch.statuses:
        return
    rows = [
        (device.id, st.ts, received_at, orjson.dumps(st.metrics))
        for device, st, received_at in batch.statuses
    ]
    # COPY has no ON CONFLICT. Almost always nothing in a batch is stored yet, so COPY straight
    # into the hypertable under a savepoint; if any row is (a redelivery after a crash, or a
    # repeat within the batch), go the slower way: a staging table, then insert what is new,
    # so a message with the same (device, ts) is stored once.
    with conn.cursor() as cur:
        try:
            with conn.transaction():
                _copy_samples(cur, "status_samples", rows)
            return
        except psycopg.errors.UniqueViolation:
            pass
        _copy_samples(cur, "stage_samples", rows)
        cur.execute("INSERT INTO status_samples SELECT * FROM stage_samples ON CONFLICT DO NOTHING")
        # (emptied at commit anyway; a batch written in pieces must not insert a piece twice)
        cur.execute("DELETE FROM stage_samples")


def _copy_samples(cur: psycopg.Cursor[Any], table: str, rows: list[tuple[Any, ...]]) -> None:
    with cur.copy(
        sql.SQL("COPY {} (device_id, ts, received_at, metrics) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(table)
        )
    ) as cp:
        cp.set_types(["text", "timestamptz", "timestamptz", "jsonb"])
        for row in rows:
            cp.write_row(row)


def _write_events(conn: psycopg.Connection, batch: Batch) -> list[dict[str, Any]]:
    """Insert events (seq filled in later, under the feed lock); returns feed items of new ones."""
    if not batch.events:
        return []
    items = []
    with conn.cursor() as cur:
        for device, ev, received_at in batch.events:
            cur.execute(
                "INSERT INTO device_events (device_id, ts, received_at, type, severity, message, fields, seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 0) ON CONFLICT DO NOTHING",
                (device.id, ev.ts, received_at, ev.type, ev.severity, ev.message, _jsonb(ev.fields)),
            )
            if cur.rowcount:
                items.append(
                    {
                        "type": "event",
                        "device_id": device.id,
                        "commune": device.commune_id,
                        "village": device.village_id,
                        "kind": device.kind,
                        "ts": ev.ts.isoformat(),
                        "event_type": ev.type,
                        "severity": ev.severity,
                        "message": ev.message,
                        "fields": ev.fields,
                    }
                )
    return items


def _write_dead(conn: psycopg.Connection, dead: Sequence[DeadLetter]) -> None:
    if not dead:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (received_at, topic, reason, detail, device_id, payload)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (d.received_at, _text(d.topic), d.reason, _text(d.detail), _text(d.device_id), d.payload)
                for d in dead
            ],
        )


def _text(value: str | None) -> str | None:
    """Text PostgreSQL can store: a dead letter's own fields must never be refused (the payload,
    bytea, keeps what was sent exactly)."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode()
    except UnicodeEncodeError:
        value = value.encode(errors="backslashreplace").decode()
    return value


def _status_item(
    device: Any, state: str, since: datetime, last_seen: datetime | None, reason: str | None, metrics: Any
) -> dict[str, Any]:
    return {
        "type": "status",
        "device_id": device.id,
        "commune": device.commune_id,
        "village": device.village_id,
        "kind": device.kind,
        "state": state,
        "since": since.isoformat(),
        "last_seen": last_seen.isoformat() if last_seen else None,
        "reason": reason,
        "metrics": metrics,
    }


def _update_state(
    conn: psycopg.Connection,
    batch: Batch,
    now: datetime,
    listening_since: datetime | None,
    throttle: "FeedThrottle | None",
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Fold the batch into device_state; returns (feed status items, state changes).

    The hot path is one COPY and one UPDATE for all devices of the batch; only devices
    whose state changes (few) get a second, per-device statement.
    """
    latest = latest_per_device(batch)
    if not latest:
        return [], []
    ids = sorted(latest)
    rows = []
    for device_id in ids:
        info = latest[device_id]
        st = info.get("status")
        av = info.get("availability")
        rows.append(
            (
                device_id,
                st[1] if st else None,
                orjson.dumps(st[0].metrics) if st else None,
                st[0].ts if st else None,
                av[0] if av else None,
                av[1] if av else None,
                info["device"].liveness_window_s,
            )
        )
    with conn.cursor() as cur:
        with cur.copy(
            "COPY stage_state (device_id, last_seen, metrics, metrics_ts, availability, availability_at,"
            " window_s) FROM STDIN (FORMAT BINARY)"
        ) as cp:
            cp.set_types(["text", "timestamptz", "jsonb", "timestamptz", "text", "timestamptz", "int4"])
            for r in rows:
                cp.write_row(r)
        # Lock in id order so two ingest processes touching the same devices cannot deadlock.
        cur.execute(
            "SELECT count(*) FROM (SELECT 1 FROM device_state WHERE device_id IN"
            " (SELECT device_id FROM stage_state) ORDER BY device_id FOR UPDATE) locked"
        )
        cur.execute(
            "INSERT INTO device_state (device_id) SELECT device_id FROM stage_state ON CONFLICT DO NOTHING"
        )
        # Fields merge: a device may report only what changed, and the last known value of each
        # field stays. A replayed old status proves the device alive (last_seen) but does not
        # replace newer readings; a repeated availability report (retained replay) changes nothing.
        # Unknown fields are kept, so a device that names a new field in every status would grow
        # its row for ever: past MERGED_METRICS_MAX bytes the merge starts again from the newest.
        cur.execute(
            "UPDATE device_state d SET"
            " last_seen = CASE WHEN s.last_seen IS NULL THEN d.last_seen"
            "   ELSE GREATEST(d.last_seen, s.last_seen) END,"
            " metrics = CASE WHEN s.metrics_ts IS NOT NULL AND (d.metrics_ts IS NULL OR s.metrics_ts >= d.metrics_ts)"
            "   THEN CASE WHEN pg_column_size(d.metrics || s.metrics) > %s"
            "     THEN s.metrics ELSE d.metrics || s.metrics END ELSE d.metrics END,"
            " metrics_ts = CASE WHEN s.metrics_ts IS NOT NULL AND (d.metrics_ts IS NULL OR s.metrics_ts >= d.metrics_ts)"
            "   THEN s.metrics_ts ELSE d.metrics_ts END,"
            " availability = COALESCE(s.availability, d.availability),"
            " availability_at = CASE WHEN s.availability IS DISTINCT FROM d.availability AND s.availability IS NOT NULL"
            "   THEN s.availability_at ELSE d.availability_at END,"
            " deadline = CASE WHEN s.last_seen IS NULL THEN d.deadline"
            "   ELSE GREATEST(d.last_seen, s.last_seen) + make_interval(secs => s.window_s) END,"
            " updated_at = now()"
            " FROM stage_state s WHERE d.device_id = s.device_id"
            "  AND (s.last_seen IS NOT NULL OR s.availability IS DISTINCT FROM d.availability)"
            " RETURNING d.device_id, d.state, d.since, d.last_seen, d.availability, d.reason,"
            # as text: parsed only for the few rows that need it (cameras, published items)
            "  d.metrics::text",
            (MERGED_METRICS_MAX,),
        )
        updated = cur.fetchall()
    items, changes, flips = [], [], []
    for device_id, state, since, last_seen, avail, reason, metrics_text in updated:
        device = latest[device_id]["device"]
        # derive() reads metrics only for cameras and polled devices; others' are parsed only if
        # published
        polled = device.polled
        camera_metrics = orjson.loads(metrics_text) if device.kind == "camera" or polled else None
        new_state, new_reason = derive(
            Liveness(
                device.kind,
                device.liveness_window_s,
                last_seen,
                avail,
                camera_metrics or {},
                in_maintenance=state == State.MAINTENANCE,
                polled=polled,
            ),
            now,
            listening_since,
        )
        changed = new_state != state
        if changed:
            changes.append(
                (
                    device_id,
                    device.commune_id,
                    device.village_id,
                    device.kind,
                    str(new_state),
                    state,
                    now,
                    new_reason,
                )
            )
            flips.append((device_id, str(new_state), new_reason))
            state, since, reason = str(new_state), now, new_reason
        if throttle is not None and not throttle.allow(device_id, state_changed=changed):
            continue
        metrics = camera_metrics if camera_metrics is not None else orjson.loads(metrics_text)
        items.append(_status_item(device, state, since, last_seen, reason, metrics))
    if flips:
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE device_state SET state = %s, since = %s, reason = %s, updated_at = now() WHERE device_id = %s",
                [(new, now, reason, device_id) for device_id, new, reason in flips],
            )
    return items, changes


def bump_counters(conn: psycopg.Connection, counts: dict[tuple[str, str], int]) -> None:
    """Add to the exact counters shown on /metrics (in the transaction being counted)."""
    if not counts:
        return
    keys = sorted(counts)
    conn.execute(
        "INSERT INTO metric_counters (name, label, value)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])"
        " ON CONFLICT (name, label) DO UPDATE SET value = metric_counters.value + EXCLUDED.value",
        ([k[0] for k in keys], [k[1] for k in keys], [counts[k] for k in keys]),
    )


class FeedThrottle:
    """At most one live-feed status per device every `every_s` unless its state changes.

    A device that reports several times a second would otherwise put every reading on the
    feed (thousands of items a second under load); operators see state changes at once and
    readings at most `every_s` old. A device at a normal heartbeat is never throttled. A reading
    held back is owed: `due()` names the devices whose window has passed since, so the writer
    publishes their latest row (the last reading of a burst is not lost until the next one).
    """

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._owed: dict[str, float] = {}  # device -> when its held-back reading may go out

    def allow(self, device_id: str, *, state_changed: bool) -> bool:
        now = time.monotonic()
        last = self._last.get(device_id, -1e9)
        if not state_changed and now - last < self.every_s:
            self._owed.setdefault(device_id, last + self.every_s)
            return False
        self._last[device_id] = now
        self._owed.pop(device_id, None)
        return True

    def due(self) -> list[str]:
        """Devices owed a feed status whose window has passed; they count as sent now."""
        if not self._owed:
            return []
        now = time.monotonic()
        out = [d for d, at in self._owed.items() if at <= now]
        for d in out:
            del self._owed[d]
            self._last[d] = now
        return out

    def owe(self, device_ids: Iterable[str]) -> None:
        """Owe these again (their publication failed)."""
        now = time.monotonic()
        for d in device_ids:
            self._owed.setdefault(d, now)


def publish_latest(conn: psycopg.Connection, device_ids: Sequence[str], devices: Mapping[str, Any]) -> int:
    """Put the current row of these devices on the live feed (one transaction); returns how many."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT device_id, state, since, last_seen, reason, metrics::text FROM device_state"
            " WHERE device_id = ANY(%s) ORDER BY device_id",
            (list(device_ids),),
        ).fetchall()
        items = [
            _status_item(devices[r[0]], r[1], r[2], r[3], r[4], orjson.loads(r[5]))
            for r in rows
            if r[0] in devices
        ]
        feed.publish(conn, items)
    return len(items)


# What a row can make PostgreSQL (or the dumping of its values) refuse: bad data, a broken
# constraint, a value over a limit (an index row over 2,700 bytes is a ProgramLimitExceeded,
# which psycopg files under OperationalError: caught before the writer's "database down" retry
# could loop on it forever). Everything else (a lost connection, a bug) propagates.
ROW_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    orjson.JSONEncodeError,
    ValueError,
    OverflowError,
)


def write_batch(
    conn: psycopg.Connection,
    batch: Batch,
    now: datetime,
    listening_since: datetime | None,
    throttle: FeedThrottle | None = None,
) -> int:
    """Store a batch in one transaction; returns the number of feed items published.

    A row PostgreSQL refuses does not stop the batch: its message becomes an `unstorable` dead
    letter (with PostgreSQL's message) and the rest is stored, in the same transaction.
    """
    try:
        with conn.transaction():
            items = _write_rows(conn, batch)
            return _fold(conn, batch, items, batch.dead, now, listening_since, throttle)
    except ROW_ERRORS as err:
        log.warning(
            "a batch of %d has rows PostgreSQL refuses (%s); isolating them", batch.size(), first_line(err)
        )
    with conn.transaction():
        # Samples and events are the rows messages bring: find the refused ones by splitting,
        # keeping what stores; then fold the rest into device state once, as the fast path does
        # (folding piece by piece would take the feed lock before later pieces' device locks).
        try:
            with conn.transaction():
                kept, refused = isolate(conn, batch, lambda piece: _write_rows(conn, piece))
                good = join([piece for piece, _ in kept])
                items = [item for _, piece_items in kept for item in piece_items]
                return _fold(conn, good, items, batch.dead + refused, now, listening_since, throttle)
        except ROW_ERRORS as err:
            log.warning("folding the stored rows failed too (%s); isolating whole writes", first_line(err))
        # Last resort, for what fails only in the fold: each piece written whole.
        kept_n, refused = isolate(
            conn,
            batch,
            lambda piece: _fold_piece(conn, piece, now, listening_since, throttle),
        )
        _fold(conn, Batch(), [], batch.dead + refused, now, listening_since, None)
        return sum(n for _, n in kept_n)


def isolate(
    conn: psycopg.Connection, batch: Batch, write: Callable[[Batch], _T]
) -> tuple[list[tuple[Batch, _T]], list[DeadLetter]]:
    """Write `batch` with `write` under savepoints, halving what fails until single rows.

    Returns the pieces written with what `write` returned for each, and one `unstorable`
    dead letter per row refused on its own. k bad rows in n cost about 2·k·log2(n) writes.
    """
    if not batch.size():
        return [], []
    try:
        with conn.transaction():
            return [(batch, write(batch))], []
    except ROW_ERRORS as err:
        if batch.size() == 1:
            return [], batch.refuse(first_line(err))
    a, b = batch.split()
    kept_a, refused_a = isolate(conn, a, write)
    kept_b, refused_b = isolate(conn, b, write)
    return kept_a + kept_b, refused_a + refused_b


def _fold_piece(
    conn: psycopg.Connection,
    piece: Batch,
    now: datetime,
    listening_since: datetime | None,
    throttle: FeedThrottle | None,
) -> int:
    # stage_state empties only at commit: the previous piece's rows must not be folded again
    conn.execute("DELETE FROM stage_state")
    return _fold(conn, piece, _write_rows(conn, piece), [], now, listening_since, throttle)


def _write_rows(conn: psycopg.Connection, batch: Batch) -> list[dict[str, Any]]:
    """The rows the messages bring (samples, events); returns feed items of new events."""
    _write_samples(conn, batch)
    return _write_events(conn, batch)


def _fold(
    conn: psycopg.Connection,
    batch: Batch,
    event_items: list[dict[str, Any]],
    dead: list[DeadLetter],
    now: datetime,
    listening_since: datetime | None,
    throttle: FeedThrottle | None,
) -> int:
    """Dead letters, device state, counters, changes and the feed of rows already written."""
    _write_dead(conn, dead)
    status_items, changes = _update_state(conn, batch, now, listening_since, throttle)
    counts = {("ioc_ingest_messages_total", ch): n for ch, n in batch.counts.items()}
    for d in dead:
        key = ("ioc_ingest_dead_letters_total", d.reason)
        counts[key] = counts.get(key, 0) + 1
    bump_counters(conn, counts)
    feed.record_changes(conn, changes)
    items = status_items + event_items
    feed.publish(conn, items)
    if event_items:
        # Events get the seq the feed gave them, so event pages follow commit order.
        conn.execute(
            "UPDATE device_events e SET seq = u.seq FROM unnest(%s::text[], %s::timestamptz[], %s::text[],"
            " %s::bigint[]) AS u(device_id, ts, type, seq)"
            " WHERE e.device_id = u.device_id AND e.ts = u.ts AND e.type = u.type",
            (
                [i["device_id"] for i in event_items],
                [i["ts"] for i in event_items],
                [i["event_type"] for i in event_items],
                [i["seq"] for i in event_items],
            ),
        )
    return len(items)
