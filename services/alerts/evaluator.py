"""One evaluation tick: read device state, transitions and events; open, update and resolve
alerts; queue notifications; publish every alert change on the live feed. Runs on the
evaluator's dedicated connection, one transaction per tick, so an evaluator that lost its lock
(its connection) cannot write anything more.

A tick evaluates only the devices whose data changed (row, state change, event) and those with
something pending (a `for`/hysteresis/suppression clock, an open alert, a condition that can
change with the time alone); after a full read of device state it evaluates every device.

Reading is `statecache` and `inputs`, deciding `decisions`, acting `actor`; this module holds
what lives across ticks and keeps their order."""

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
import psycopg
from psycopg.types.json import set_json_loads

from services import feed
from services.alerts import inputs, topology, unscheduled
from services.alerts.actor import Actor
from services.alerts.decisions import Decider, Key, Observed
from services.alerts.models import Config
from services.alerts.statecache import StateCache
from services.maintenance import devices_in_maintenance


class Evaluator:
    """The alert engine's memory and its tick; one per active evaluator."""

    def __init__(
        self,
        conn: psycopg.Connection,
        config: Callable[[], Config],
        *,
        tz: str = "Asia/Ho_Chi_Minh",
        lang: str = "vi",
        public_url: str | None = None,
        grace_until: datetime | None = None,
    ) -> None:
        self.conn = conn
        # Until then (the evaluator's process has just started) an ingest that has not reported
        # yet may still be starting: no "lost its broker" for it.
        self.grace_until = grace_until
        # A full read parses the metrics of every device: orjson does it several times faster.
        set_json_loads(orjson.loads, conn)
        self.config = config
        self.tz_name = tz
        self.lang = lang
        self.public_url = public_url
        self.cfg = config()
        self.topology = topology.Topology()
        self.decider = Decider(self.cfg, self.topology, ZoneInfo(tz))
        self.recent = inputs.Recent()
        self.cache = StateCache()
        # resolved by hand while the condition held: (rule, device) -> when
        self.latched: dict[Key, datetime] = {}

    @property
    def evaluated(self) -> int:
        """Devices evaluated by the last tick."""
        return self.decider.evaluated

    def load(self) -> None:
        """Read what an evaluator taking over needs: registry, timers, flap history, recent events."""
        with self.conn.transaction():
            now = self._now()
            self._load_registry()
            self.decider.restore(self.conn.execute("SELECT rule, device_id, since FROM alert_conditions"))
            self.recent.load(self.conn, self.cfg, now)

    def _now(self) -> datetime:
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        return row[0].astimezone(UTC)

    def _load_registry(self) -> None:
        self.topology = topology.read(self.conn)
        self.decider.reset(self.cfg, self.topology)
        # Rules per device may have changed too: read and evaluate everything on this tick.
        self.cache.invalidate()

    def tick(self) -> int:
        """One evaluation in one transaction; returns how many notifications it queued."""
        with self.conn.transaction():
            now = self._now()
            cfg = self.config()
            version = topology.version(self.conn)
            if cfg is not self.cfg or (version is not None and version != self.topology.version):
                self.cfg = cfg
                self._load_registry()
            flipped = self.recent.read_changes(self.conn)
            evented = self.recent.read_events(self.conn, self.cfg, now)
            changed = self.cache.refresh(self.conn, now, flipped)
            states = self.cache.rows
            maint = devices_in_maintenance(self.conn, now, self.tz_name)
            open_alerts = inputs.open_alerts(self.conn)
            ingest = inputs.ingest_view(
                self.conn, float(self.cfg.rules["broker_lost"].settings["planned_stop_s"])
            )
            act = Actor(
                self.conn,
                self.cfg,
                self.topology,
                self.latched,
                now,
                tz=self.tz_name,
                lang=self.lang,
                public_url=self.public_url,
            )
            act.route_requests()
            outcome = self.decider.decide(
                Observed(
                    now=now,
                    states=states,
                    offline=self.cache.offline,
                    maintenance=maint,
                    open_alerts=open_alerts,
                    ingest_heard_at=ingest.heard_at,
                    flaps=self.recent.flaps,
                    events=self.recent.events,
                    dirty=None if changed is None else changed | flipped | evented,
                    ingest_stalled=ingest.stalled,
                    sources_lost=inputs.sources_lost(self.conn, now),
                    sources_refused=inputs.sources_refused(self.conn, now),
                    in_grace=self.grace_until is not None and now < self.grace_until,
                    broadcasting=unscheduled.broadcasting(self.conn),
                )
            )
            for key in outcome.cleared:
                self.latched.pop(key, None)
            act.apply(outcome.decisions, states)
            act.update_affected(states, open_alerts)
            act.repeat_and_escalate(open_alerts)
            self._save_conditions(outcome.clocks)
            # Last: the feed counter lock is held only until commit (commit-ordered seq).
            feed.publish(self.conn, act.items)
        return act.queued

    def _save_conditions(self, clocks: dict[Key, datetime | None]) -> None:
        gone = [k for k, v in clocks.items() if v is None]
        kept = [(k[0], k[1], v) for k, v in clocks.items() if v is not None]
        if gone:
            self.conn.execute(
                "DELETE FROM alert_conditions WHERE (rule, device_id) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                ([k[0] for k in gone], [k[1] for k in gone]),
            )
        if kept:
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO alert_conditions (rule, device_id, since) VALUES (%s, %s, %s)"
                    " ON CONFLICT (rule, device_id) DO UPDATE SET since = EXCLUDED.since",
                    kept,
                )
