"""What an evaluation tick reads besides device state (that is `statecache`): offline transitions
(flap history) and the events the event rules look for, both read incrementally by seq; the open
alerts; what the ingest processes last said of themselves (they hear the broker, their writer
keeps up)."""

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from services import liveness
from services.alerts import store
from services.alerts.models import Config
from services.alerts.rules import norm_type
from services.alerts.topology import IOC_WIDE
from services.sources import IOC_BROKER, from_json
from services.sources import store as source_store

EVENT_RULES = ("camera_tamper", "camera_signal_loss", "camera_storage_failure")
_MAX_FLAPS = 64


def hold_s(cfg: Config) -> float:
    """How long the event rules keep an event in mind."""
    return max([float(cfg.rules[r].settings["hold_s"]) for r in EVENT_RULES] + [0.0])


def _flap_horizon_s(cfg: Config) -> float:
    s = cfg.rules["offline"].settings
    return max(float(s["flap_window_s"]), float(s["flap_clear_s"])) * 4


def _event_patterns(cfg: Config) -> list[str]:
    pats: set[str] = set()
    for name in EVENT_RULES:
        rule = cfg.rules[name]
        for s in [rule.settings, *(o for _, o in rule.overrides)]:
            pats.update(norm_type(p) for p in s.get("events") or ())
    return [p for p in pats if p]


class Recent:
    """Per device: when it last went offline (flap history) and its recent matching events."""

    def __init__(self) -> None:
        self.flaps: dict[str, deque[datetime]] = {}
        self.events: dict[str, deque[tuple[datetime, str, Mapping[str, Any]]]] = {}
        self.change_seq = 0
        self.event_seq = 0

    def load(self, conn: psycopg.Connection, cfg: Config, now: datetime) -> None:
        """Read the history an evaluator taking over needs (in the caller's transaction)."""
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM state_changes").fetchone()
        self.change_seq = int(row[0]) if row else 0
        horizon = now - timedelta(seconds=_flap_horizon_s(cfg))
        for device_id, at in conn.execute(
            "SELECT device_id, at FROM state_changes WHERE seq > %s AND at > %s AND state = 'offline'"
            " ORDER BY seq",
            (max(0, self.change_seq - 500_000), horizon),
        ):
            self.flaps.setdefault(device_id, deque(maxlen=_MAX_FLAPS)).append(at)
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM device_events").fetchone()
        self.event_seq = int(row[0]) if row else 0
        self.read_events(conn, cfg, now, since=now - timedelta(seconds=hold_s(cfg)))

    def read_changes(self, conn: psycopg.Connection) -> set[str]:
        """Read new state transitions (flap history); returns the devices that made one."""
        rows = conn.execute(
            "SELECT seq, device_id, state, at FROM state_changes WHERE seq > %s ORDER BY seq",
            (self.change_seq,),
        ).fetchall()
        for seq, device_id, state, at in rows:
            self.change_seq = seq
            if state == "offline":
                self.flaps.setdefault(device_id, deque(maxlen=_MAX_FLAPS)).append(at)
        return {r[1] for r in rows}

    def read_events(
        self, conn: psycopg.Connection, cfg: Config, now: datetime, since: datetime | None = None
    ) -> set[str]:
        """Read new events the event rules look for; returns the devices that sent one."""
        got: set[str] = set()
        patterns = _event_patterns(cfg)
        if since is not None:
            sql = (
                "SELECT seq, device_id, received_at, type, fields FROM device_events"
                " WHERE received_at > %s AND ts > %s ORDER BY seq"
            )
            args: tuple[Any, ...] = (since, since - timedelta(days=1))
        else:
            sql = (
                "SELECT seq, device_id, received_at, type, fields FROM device_events WHERE seq > %s"
                " ORDER BY seq"
            )
            args = (self.event_seq,)
        for seq, device_id, received_at, etype, fields in conn.execute(sql, args):
            self.event_seq = max(self.event_seq, seq)
            t = norm_type(etype)
            if any(p in t for p in patterns):
                lowered = {str(k).lower(): v for k, v in (fields or {}).items()}
                self.events.setdefault(device_id, deque(maxlen=32)).append((received_at, t, lowered))
                got.add(device_id)
        horizon = now - timedelta(seconds=hold_s(cfg))
        for device_id in [d for d, q in self.events.items() if q and q[-1][0] < horizon]:
            del self.events[device_id]
        return got


def open_alerts(conn: psycopg.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """Unresolved alerts by (rule, device id or IOC_WIDE); an alert about a broadcast by
    (rule, "broadcast:<id>"), since two broadcasts may miss villages at once (SPEC §9)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {store.COLUMNS} FROM alerts WHERE state <> 'resolved'").fetchall()  # noqa: S608
    return {(r["rule"], alert_key(r)): r for r in rows}


BROADCAST_KEY = "broadcast:"


def alert_key(alert: Mapping[str, Any]) -> str:
    """The second half of an open alert's key: its device, its broadcast, or IOC_WIDE."""
    if alert["device_id"]:
        return str(alert["device_id"])
    broadcast = (alert.get("details") or {}).get("broadcast")
    return IOC_WIDE if broadcast is None else f"{BROADCAST_KEY}{broadcast}"


def sources_lost(
    conn: psycopg.Connection, now: datetime
) -> dict[str, tuple[datetime | None, tuple[str, ...]]]:
    """Vendor brokers that have devices and that no bridge hears, with those devices. The IOC's
    own broker is left out: losing it is `broker_lost`."""
    lost = {bid: h for bid, h in source_store.health(conn).items() if bid != IOC_BROKER and h.lost(now)}
    if not lost:
        return {}
    rows = conn.execute(
        "SELECT source->'mqtt'->>'broker', array_agg(id ORDER BY id) FROM devices"
        " WHERE retired_at IS NULL AND source->'mqtt'->>'broker' = ANY(%s) GROUP BY 1",
        (list(lost),),
    ).fetchall()
    by_source: dict[str, list[str]] = {bid: list(ids) for bid, ids in rows}
    if any("://" in bid for bid in lost):
        # vendor lists' servers (`scheme://host:port` of their devices' URLs)
        for device_id, doc in conn.execute(
            "SELECT id, source FROM devices WHERE retired_at IS NULL AND source->'http'->>'profile' IS NOT NULL"
        ):
            sid = getattr(from_json(doc), "broker_id", None)
            if sid in lost:
                by_source.setdefault(sid, []).append(device_id)
    return {
        bid: (lost[bid].listening_since or lost[bid].seen_at, tuple(sorted(ids)))
        for bid, ids in by_source.items()
    }


def sources_refused(conn: psycopg.Connection, now: datetime) -> frozenset[str]:
    """Vendor brokers that answer but refuse their bridge's credentials."""
    return frozenset(source_store.refusing(conn, now) - {IOC_BROKER})


@dataclass(frozen=True)
class IngestView:
    """What the IOC-wide rules read of the ingest processes' own reports (services.liveness)."""

    # the newest report of an ingest that is not stopped on purpose (None: none has reported)
    heard_at: datetime | None = None
    # ingests that committed nothing while messages waited: name -> (seconds, messages waiting)
    stalled: Mapping[str, tuple[float, int | None]] = field(default_factory=dict)


def ingest_view(conn: psycopg.Connection, planned_stop_s: float) -> IngestView:
    """An ingest stopped on purpose counts as absent, not lost, for `planned_stop_s`."""
    heard: list[datetime] = []
    stalled: dict[str, tuple[float, int | None]] = {}
    for row in liveness.ingest_rows(conn):
        if row.stopped_s is not None and row.stopped_s < planned_stop_s:
            continue
        heard.append(row.seen_at)
        if row.hears and row.stalled_s > 0:
            stalled[row.name] = (row.stalled_s, row.waiting)
    return IngestView(max(heard) if heard else None, stalled)
