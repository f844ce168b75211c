"""The alert evaluator's copy of `device_state`: read in full on takeover, after a registry or
configuration change and every `FULL_EVERY_S`; in between, only the rows written since the last
read are read again, so an idle tick reads (almost) nothing."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

# `updated_at` is the writer's transaction START time (now()): a row can become visible after a
# row stamped later. Rows stamped up to this long before the last read are looked at again.
MARGIN_S = 10.0
# Safety net: whatever an incremental read could miss is caught by the next full read.
FULL_EVERY_S = 60.0


@dataclass(frozen=True)
class StateRow:
    state: str
    since: datetime
    metrics: Mapping[str, Any]


class StateCache:
    """Device rows by device id, kept current by `refresh` (on the evaluator's connection)."""

    def __init__(self) -> None:
        self.rows: dict[str, StateRow] = {}
        self.offline: set[str] = set()
        # updated_at of the row version held: a row stamped differently has been written since
        self._stamps: dict[str, datetime] = {}
        self._read_at: datetime | None = None
        self._full_at: datetime | None = None
        # rows read with their metrics by the last refresh (idle: 0)
        self.fetched = 0

    def invalidate(self) -> None:
        """Make the next refresh a full read."""
        self._full_at = None

    def refresh(self, conn: psycopg.Connection, now: datetime, also: Iterable[str] = ()) -> set[str] | None:
        """Bring the copy up to date; `now` must precede the reads (database clock). Returns the ids
        whose row changed (or went), or None after a full read: any row may have changed.

        `also`: devices known to have been written (state changes read in commit order): re-read
        whatever their stamp says."""
        if (
            self._full_at is None
            or self._read_at is None
            or (now - self._full_at).total_seconds() >= FULL_EVERY_S
        ):
            self._full(conn, now)
            return None
        since = self._read_at - timedelta(seconds=MARGIN_S)
        self._read_at = now
        stale = set(also)
        for device_id, updated_at in conn.execute(
            "SELECT device_id, updated_at FROM device_state WHERE updated_at > %s", (since,)
        ):
            if self._stamps.get(device_id) != updated_at:
                stale.add(device_id)
        self.fetched = 0
        if not stale:
            return set()
        changed: set[str] = set()
        gone = set(stale)
        for device_id, state, state_since, metrics, updated_at in conn.execute(
            "SELECT device_id, state, since, metrics, updated_at FROM device_state WHERE device_id = ANY(%s)",
            (sorted(stale),),
        ):
            self.fetched += 1
            gone.discard(device_id)
            if self._put(device_id, StateRow(state, state_since, metrics or {}), updated_at):
                changed.add(device_id)
        for device_id in gone:
            if self.rows.pop(device_id, None) is not None:
                changed.add(device_id)
            self._stamps.pop(device_id, None)
            self.offline.discard(device_id)
        return changed

    def _full(self, conn: psycopg.Connection, now: datetime) -> None:
        self.rows, self._stamps, self.offline = {}, {}, set()
        self._read_at = self._full_at = now
        self.fetched = 0
        for device_id, state, state_since, metrics, updated_at in conn.execute(
            "SELECT device_id, state, since, metrics, updated_at FROM device_state"
        ):
            self.fetched += 1
            self._put(device_id, StateRow(state, state_since, metrics or {}), updated_at)

    def _put(self, device_id: str, row: StateRow, updated_at: datetime) -> bool:
        """Hold this version of a row; True when it differs from the one held."""
        self._stamps[device_id] = updated_at
        if self.rows.get(device_id) == row:
            return False
        self.rows[device_id] = row
        if row.state == "offline":
            self.offline.add(device_id)
        else:
            self.offline.discard(device_id)
        return True
