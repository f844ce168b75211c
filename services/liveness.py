"""The periodic part of device state: silence turning into offline, maintenance windows.

Status messages change state as they arrive (services.storage); this sweep catches what no
message announces. Updates are optimistic (the row must still be as read), so several ingest
processes may sweep at once without recording a transition twice.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from services import feed
from services.models import Device, Liveness
from services.sources.store import listening as sources_listening
from services.sources.store import refusing as sources_refusing
from services.state import SOURCE_REFUSED, derive


def sweep(
    conn: psycopg.Connection,
    devices: dict[str, Device],
    now: datetime,
    listening_since: datetime,
    in_maintenance: Iterable[str],
) -> int:
    """Apply due transitions; returns how many devices changed state."""
    maint = set(in_maintenance)
    with conn.transaction():
        # Candidates only: devices whose silence deadline has passed, and devices entering or
        # leaving a maintenance window. Reading every device every second would cost more than
        # the sweep itself; derive() still decides.
        # Devices of a vendor broker refusing our credentials become auth_failed at once (§8), and
        # leave it as soon as the broker accepts us again (a device never heard has no deadline).
        refusing = sources_refusing(conn, now)
        refused = [d.id for d in devices.values() if refusing and d.source_broker in refusing]
        rows = conn.execute(
            "SELECT device_id, state, last_seen, availability, metrics->'reachable', metrics->'auth_failed'"
            " FROM device_state WHERE (state IN ('online', 'auth_failed') AND deadline < %s)"
            " OR (state = 'maintenance') <> (device_id = ANY(%s))"
            " OR (device_id = ANY(%s) AND state NOT IN ('auth_failed', 'maintenance'))"
            " OR (state = 'auth_failed' AND reason = %s AND NOT device_id = ANY(%s))",
            (now, list(maint), refused, SOURCE_REFUSED, refused),
        ).fetchall()
        due: list[tuple[Device, str, str, str, Any, Any]] = []
        sources: dict[str, datetime | None] | None = None
        for device_id, state, last_seen, avail, reachable, auth_failed in rows:
            device = devices.get(device_id)
            if device is None:
                continue
            heard_since: datetime | None = listening_since
            if device.source_broker is not None:
                # Heard through a vendor broker: silence counts only while a bridge hears it; a
                # lost broker freezes its devices (one source_lost alert, not N outages).
                if sources is None:
                    sources = sources_listening(conn, now)
                broker_since = sources.get(device.source_broker)
                heard_since = None if broker_since is None else max(listening_since, broker_since)
            flags = {
                k: v for k, v in (("reachable", reachable), ("auth_failed", auth_failed)) if v is not None
            }
            new_state, reason = derive(
                Liveness(
                    device.kind,
                    device.liveness_window_s,
                    last_seen,
                    avail,
                    flags,
                    in_maintenance=device_id in maint,
                    polled=device.polled,
                    source_refused=device.source_broker in refusing,
                ),
                now,
                heard_since,
            )
            if new_state != state:
                due.append((device, state, str(new_state), reason, last_seen, avail))
        changes, items = [], []
        for device, old, new, reason, last_seen, avail in due:
            row = conn.execute(
                "UPDATE device_state SET state = %s, since = %s, reason = %s, updated_at = now()"
                " WHERE device_id = %s AND state = %s AND last_seen IS NOT DISTINCT FROM %s"
                " AND availability IS NOT DISTINCT FROM %s RETURNING metrics",
                (new, now, reason, device.id, old, last_seen, avail),
            ).fetchone()
            if row is None:
                continue  # changed under us by a message or another sweeper: theirs is newer
            changes.append(
                (device.id, device.commune_id, device.village_id, device.kind, new, old, now, reason)
            )
            items.append(
                {
                    "type": "status",
                    "device_id": device.id,
                    "commune": device.commune_id,
                    "village": device.village_id,
                    "kind": device.kind,
                    "state": new,
                    "since": now.isoformat(),
                    "last_seen": last_seen.isoformat() if last_seen else None,
                    "reason": reason,
                    "metrics": row[0],
                }
            )
        feed.record_changes(conn, changes)
        feed.publish(conn, items)
    return len(changes)


# Ingest has messages waiting and has committed nothing for this long: it is deaf (SPEC §4).
STALL_S = 30.0
# An ingest row older than this: that ingest does not hear its broker (or is gone).
FRESH_S = 15.0
# An ingest silent this long is gone: a running one forgets it (its row, its /metrics lines).
GONE_S = 7 * 86400.0


class Stall:
    """How long an ingest has committed nothing while messages waited for its writer.

    Fed once a second with what the writer says (`waiting`, `last_commit_at`); the clock is a
    parameter (monotonic seconds). A writer that is idle has no stall however old its last
    commit; one that takes in a message after an idle hour is stalled only from then on.
    """

    def __init__(self) -> None:
        self._since: float | None = None
        self._commit: object = None

    def observe(self, waiting: int, last_commit: object, now: float) -> float:
        """Seconds stalled (0 when nothing waits or the writer committed since the last look)."""
        if waiting <= 0:
            self._since = None
            return 0.0
        if self._since is None or last_commit != self._commit:
            self._since, self._commit = now, last_commit
        return now - self._since


def report_health(
    conn: psycopg.Connection,
    name: str,
    listening_since: datetime,
    *,
    last_commit_at: datetime | None = None,
    waiting: int | None = None,
    stalled_s: float = 0.0,
) -> None:
    """This ingest hears its broker, and how its writer is doing (read by alerts and gateways)."""
    info: dict[str, Any] = {"listening_since": listening_since.isoformat(), "stalled_s": round(stalled_s, 1)}
    if last_commit_at is not None:
        info["last_commit_at"] = last_commit_at.isoformat()
    if waiting is not None:
        info["waiting"] = waiting
    conn.execute(
        "INSERT INTO process_health (name, kind, seen_at, info) VALUES (%s, 'ingest', now(), %s)"
        " ON CONFLICT (name) DO UPDATE SET seen_at = now(), info = EXCLUDED.info",
        (name, Jsonb(info)),
    )
    # an ingest gone for good (a host renamed, a container replaced) leaves the lists and /metrics
    conn.execute(
        "DELETE FROM process_health WHERE kind = 'ingest' AND name <> %s AND seen_at < now() - make_interval(secs => %s)",
        (name, GONE_S),
    )
    conn.commit()


def mark_stopped(conn: psycopg.Connection, name: str) -> None:
    """This ingest stops on purpose (SIGTERM, Ctrl-C): its silence from now on is no incident."""
    # stopped_at on the database's clock, like seen_at: readers age both on one clock
    conn.execute(
        "UPDATE process_health SET info = coalesce(info, '{}') || jsonb_build_object("
        "'stopped', 'planned', 'stopped_at', now()) WHERE name = %s AND kind = 'ingest'",
        (name,),
    )
    conn.commit()


def count_start(conn: psycopg.Connection, process: str) -> None:
    """One more start of a process (`ioc_process_starts_total{process=...}` on /metrics)."""
    conn.execute(
        "INSERT INTO metric_counters (name, label, value) VALUES ('ioc_process_starts_total', %s, 1)"
        " ON CONFLICT (name, label) DO UPDATE SET value = metric_counters.value + 1",
        (process,),
    )
    if not conn.autocommit:
        conn.commit()


@dataclass(frozen=True)
class IngestRow:
    """One ingest process as it last reported itself."""

    name: str
    seen_at: datetime
    age_s: float  # since its last report, on the database's clock
    stopped_s: float | None  # since it stopped on purpose (None: it did not)
    stalled_s: float  # committed nothing while messages waited, as of now
    waiting: int | None
    last_commit_at: datetime | None

    @property
    def stopped(self) -> bool:
        return self.stopped_s is not None

    @property
    def hears(self) -> bool:
        """Reported within FRESH_S: it hears its broker (it reports only while it does)."""
        return not self.stopped and self.age_s <= FRESH_S

    @property
    def stalled(self) -> bool:
        return self.hears and self.stalled_s > STALL_S


def ingest_rows(conn: psycopg.Connection) -> list[IngestRow]:
    """Every ingest's last report, aged on the database's clock (one clock for every reader)."""
    rows = conn.execute(
        "SELECT name, seen_at, extract(epoch FROM clock_timestamp() - seen_at)::float8,"
        " CASE WHEN info->>'stopped' = 'planned' THEN extract(epoch FROM clock_timestamp()"
        " - coalesce((info->>'stopped_at')::timestamptz, seen_at))::float8 END, info"
        " FROM process_health WHERE kind = 'ingest' ORDER BY name"
    ).fetchall()
    out = []
    for name, seen_at, age_s, stopped_s, info in rows:
        info = info or {}
        stalled = float(info.get("stalled_s") or 0.0)
        waiting = info.get("waiting")
        commit = info.get("last_commit_at")
        out.append(
            IngestRow(
                name,
                seen_at,
                max(0.0, float(age_s)),
                None if stopped_s is None else max(0.0, float(stopped_s)),
                # the stall went on since the report while messages still waited
                stalled + float(age_s) if stalled > 0 else 0.0,
                waiting if isinstance(waiting, int) else None,
                datetime.fromisoformat(commit) if isinstance(commit, str) else None,
            )
        )
    return out
