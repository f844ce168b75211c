"""One evaluation tick: read device state, transitions and events; open, update and resolve
alerts; queue notifications; publish every alert change on the live feed. Runs on the
evaluator's dedicated connection, one transaction per tick, so an evaluator that lost its lock
(its connection) cannot write anything more.

A tick evaluates only the devices whose data changed (row, state change, event) and those with
something pending (a `for`/hysteresis/suppression clock, an open alert, a condition that can
change with the time alone); after a full read of device state it evaluates every device."""

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_loads

from services import feed
from services.alerts import messages, outbox, store
from services.alerts.models import Config
from services.alerts.rules import DeviceView, applies, clock_bound, evaluate, flapping, norm_type
from services.alerts.statecache import StateCache, StateRow
from services.alerts.timing import Action, Track, step
from services.maintenance import devices_in_maintenance

log = logging.getLogger(__name__)
IOC_WIDE = ""  # device key of alerts about the IOC itself
EVENT_RULES = ("camera_tamper", "camera_signal_loss", "camera_storage_failure")
_MAX_FLAPS = 64
_INSERT_ALERT = (
    "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, details,"  # noqa: S608
    " affected, since, opened_at, notified_at, notify_count)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1)"
    " ON CONFLICT (rule, coalesce(device_id, '')) WHERE state <> 'resolved' DO NOTHING"
    f" RETURNING {store.COLUMNS}"
)


@dataclass(frozen=True)
class DeviceRef:
    id: str
    commune_id: str
    village_id: str | None
    kind: str
    name: str | None
    parent_id: str | None


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
    ) -> None:
        self.conn = conn
        # A full read parses the metrics of every device: orjson does it several times faster.
        set_json_loads(orjson.loads, conn)
        self.config = config
        self.tz = ZoneInfo(tz)
        self.tz_name = tz
        self.lang = lang
        self.public_url = public_url
        self.cfg = config()
        self.registry_version = -1
        self.devices: dict[str, DeviceRef] = {}
        self.order: dict[str, int] = {}  # registry order: devices are evaluated in it
        self.ancestors: dict[str, tuple[str, ...]] = {}
        self.descendants: dict[str, list[str]] = {}
        self.villages: dict[tuple[str, str], str] = {}
        self.communes: dict[str, str] = {}
        self.dev_rules: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.tracks: dict[tuple[str, str], Track] = {}
        # resolved by hand while the condition held: (rule, device) -> when
        self.latched: dict[tuple[str, str], datetime] = {}
        self.flaps: dict[str, deque[datetime]] = {}
        self.events: dict[str, deque[tuple[datetime, str, Mapping[str, Any]]]] = {}
        self.change_seq = 0
        self.event_seq = 0
        self.cache = StateCache()
        # devices with a condition that can change with the time alone (rules.clock_bound)
        self.clocked: set[str] = set()
        # devices evaluated by the last tick
        self.evaluated = 0
        self._cond: dict[tuple[str, str], datetime | None] = {}
        self._items: list[dict[str, Any]] = []
        self._resolved: set[int] = set()
        self.queued = 0

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        """Read what an evaluator taking over needs: registry, timers, flap history, recent events."""
        with self.conn.transaction():
            now = self._now()
            self._load_registry()
            for rule, device_id, since in self.conn.execute(
                "SELECT rule, device_id, since FROM alert_conditions"
            ):
                self.tracks[(rule, device_id)] = Track(since=since)
            # A device below a parent may have been held back by it: its `for` starts afresh.
            for dev in self.devices.values():
                if self.ancestors.get(dev.id):
                    for rule, _ in self._rules_for(dev):
                        self.tracks.setdefault((rule, dev.id), Track(held=True))
            row = self.conn.execute("SELECT coalesce(max(seq), 0) FROM state_changes").fetchone()
            self.change_seq = int(row[0]) if row else 0
            horizon = now - timedelta(seconds=self._flap_horizon_s())
            for device_id, at in self.conn.execute(
                "SELECT device_id, at FROM state_changes WHERE seq > %s AND at > %s AND state = 'offline'"
                " ORDER BY seq",
                (max(0, self.change_seq - 500_000), horizon),
            ):
                self.flaps.setdefault(device_id, deque(maxlen=_MAX_FLAPS)).append(at)
            row = self.conn.execute("SELECT coalesce(max(seq), 0) FROM device_events").fetchone()
            self.event_seq = int(row[0]) if row else 0
            self._read_events(now, since=now - timedelta(seconds=self._hold_s()))

    def _now(self) -> datetime:
        row = self.conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        return row[0].astimezone(UTC)

    def _load_registry(self) -> None:
        row = self.conn.execute("SELECT version FROM registry_version").fetchone()
        self.registry_version = int(row[0]) if row else 0
        self.devices = {
            r[0]: DeviceRef(*r)
            for r in self.conn.execute(
                "SELECT id, commune_id, village_id, kind, name, parent_id FROM devices WHERE retired_at IS NULL"
            )
        }
        self.villages = {
            (r[0], r[1]): r[2] for r in self.conn.execute("SELECT commune_id, id, name FROM villages")
        }
        self.communes = dict(self.conn.execute("SELECT id, name FROM communes").fetchall())
        self.order = {d: i for i, d in enumerate(self.devices)}
        self.ancestors, self.descendants = {}, {d: [] for d in self.devices}
        for dev in self.devices.values():
            chain: list[str] = []
            cur = dev.parent_id
            while cur and cur in self.devices and cur not in chain and cur != dev.id:
                chain.append(cur)
                cur = self.devices[cur].parent_id
            self.ancestors[dev.id] = tuple(chain)
            for a in chain:
                self.descendants[a].append(dev.id)
        self.dev_rules = {}
        # Rules per device may have changed too: read and evaluate everything on this tick.
        self.cache.invalidate()

    def _rules_for(self, dev: DeviceRef) -> list[tuple[str, dict[str, Any]]]:
        out = self.dev_rules.get(dev.id)
        if out is None:
            out = []
            for name, rule in self.cfg.rules.items():
                if name == "broker_lost":
                    continue
                s = rule.for_device(dev.commune_id, dev.village_id, dev.kind, dev.id)
                if applies(s, dev.kind):
                    out.append((name, s))
            self.dev_rules[dev.id] = out
        return out

    def _flap_horizon_s(self) -> float:
        s = self.cfg.rules["offline"].settings
        return max(float(s["flap_window_s"]), float(s["flap_clear_s"])) * 4

    def _hold_s(self) -> float:
        return max([float(self.cfg.rules[r].settings["hold_s"]) for r in EVENT_RULES] + [0.0])

    def _event_patterns(self) -> list[str]:
        pats: set[str] = set()
        for name in EVENT_RULES:
            rule = self.cfg.rules[name]
            for s in [rule.settings, *(o for _, o in rule.overrides)]:
                pats.update(norm_type(p) for p in s.get("events") or ())
        return [p for p in pats if p]

    # -- the tick --------------------------------------------------------------------------
    def tick(self) -> int:
        """One evaluation in one transaction; returns how many notifications it queued."""
        self.queued = 0
        self._items = []
        self._cond = {}
        self._resolved = set()
        with self.conn.transaction():
            now = self._now()
            cfg = self.config()
            row = self.conn.execute("SELECT version FROM registry_version").fetchone()
            if cfg is not self.cfg or (row and int(row[0]) != self.registry_version):
                self.cfg = cfg
                self._load_registry()
            flipped = self._read_changes()
            evented = self._read_events(now)
            changed = self.cache.refresh(self.conn, now, flipped)
            states = self.cache.rows
            maint = devices_in_maintenance(self.conn, now, self.tz_name)
            open_alerts = self._open_alerts()
            broker = self._broker_lost(now)
            self._route_requests(now)
            dirty = None if changed is None else changed | flipped | evented
            self._evaluate_devices(now, states, maint, open_alerts, broker[0], dirty)
            self._evaluate_broker(now, open_alerts, broker)
            self._update_affected(states, open_alerts)
            self._repeat_and_escalate(now, open_alerts)
            self._save_conditions()
            # Last: the feed counter lock is held only until commit (commit-ordered seq).
            feed.publish(self.conn, self._items)
        return self.queued

    def _read_changes(self) -> set[str]:
        """Read new state transitions (flap history); returns the devices that made one."""
        rows = self.conn.execute(
            "SELECT seq, device_id, state, at FROM state_changes WHERE seq > %s ORDER BY seq",
            (self.change_seq,),
        ).fetchall()
        for seq, device_id, state, at in rows:
            self.change_seq = seq
            if state == "offline":
                self.flaps.setdefault(device_id, deque(maxlen=_MAX_FLAPS)).append(at)
        return {r[1] for r in rows}

    def _read_events(self, now: datetime, since: datetime | None = None) -> set[str]:
        """Read new events the event rules look for; returns the devices that sent one."""
        got: set[str] = set()
        patterns = self._event_patterns()
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
        for seq, device_id, received_at, etype, fields in self.conn.execute(sql, args):
            self.event_seq = max(self.event_seq, seq)
            t = norm_type(etype)
            if any(p in t for p in patterns):
                lowered = {str(k).lower(): v for k, v in (fields or {}).items()}
                self.events.setdefault(device_id, deque(maxlen=32)).append((received_at, t, lowered))
                got.add(device_id)
        horizon = now - timedelta(seconds=self._hold_s())
        for device_id in [d for d, q in self.events.items() if q and q[-1][0] < horizon]:
            del self.events[device_id]
        return got

    def _open_alerts(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(f"SELECT {store.COLUMNS} FROM alerts WHERE state <> 'resolved'").fetchall()  # noqa: S608
        return {(r["rule"], r["device_id"] or IOC_WIDE): r for r in rows}

    def _evaluate_devices(
        self,
        now: datetime,
        states: dict[str, StateRow],
        maint: set[str],
        open_alerts: dict[tuple[str, str], dict[str, Any]],
        broker_lost: bool,
        dirty: set[str] | None,
    ) -> None:
        """Evaluate every device (`dirty` None) or the dirty ones and those with something pending.

        Skipping the others changes nothing: an unchanged device whose conditions do not depend
        on the clock has the same conditions as on its last look; those conditions are inactive
        or unknown, else it would have a track (a down parent, maintenance or a lost broker only
        matter to active conditions)."""
        local_now = now.astimezone(self.tz)
        down = self.cache.offline | maint
        broker_lost = broker_lost or ("broker_lost", IOC_WIDE) in open_alerts
        offline = self.cfg.rules["offline"]
        if dirty is None:
            self.clocked = set()
            devices: list[DeviceRef] = list(self.devices.values())
        else:
            ids = dirty | self.clocked | {k[1] for k in self.tracks} | {k[1] for k in open_alerts}
            devices = sorted(
                (self.devices[d] for d in ids if d in self.devices), key=lambda dev: self.order[dev.id]
            )
        self.evaluated = 0
        for dev in devices:
            st = states.get(dev.id)
            if st is None:
                self.clocked.discard(dev.id)
                continue
            self.evaluated += 1
            below_down = dev.id in maint or any(a in down for a in self.ancestors.get(dev.id, ()))
            flap_since, flap_n = None, 0
            times = self.flaps.get(dev.id)
            if times:
                s = offline.for_device(dev.commune_id, dev.village_id, dev.kind, dev.id)
                flap_since = flapping(
                    list(times),
                    now,
                    int(s["flap_count"]),
                    float(s["flap_window_s"]),
                    float(s["flap_clear_s"]),
                )
                flap_n = sum(
                    1
                    for t in times
                    if flap_since and t >= flap_since - timedelta(seconds=float(s["flap_window_s"]))
                )
            view = DeviceView(
                dev.id,
                dev.kind,
                st.state,
                st.since,
                st.metrics,
                tuple(self.events.get(dev.id, ())),
                flap_since,
                flap_n,
            )
            clocked = False
            for name, s in self._rules_for(dev):
                key = (name, dev.id)
                cond = evaluate(name, s, view, now, local_now)
                clocked = clocked or clock_bound(name, view)
                alert = open_alerts.get(key)
                track = self.tracks.get(key)
                if track is None:
                    if not cond.active and alert is None:
                        continue
                    track = self.tracks[key] = Track()
                if not cond.active:
                    self.latched.pop(key, None)
                before = track.since
                suppressed = below_down or (name == "offline" and broker_lost)
                action = step(
                    track,
                    cond.active,
                    cond.since,
                    now,
                    for_s=float(s["for_s"]),
                    clear_s=float(s["clear_s"]),
                    suppressed=suppressed,
                    alert_open=alert is not None,
                    immediate=cond.immediate,
                )
                if track.since != before:
                    self._cond[key] = track.since
                if action is Action.OPEN:
                    self._open(name, s, dev, dict(cond.detail), track, now, states)
                elif action is Action.RESOLVE and alert is not None:
                    self._resolve(alert, now, None)
                elif track.since is None and track.clear_since is None and not track.held and alert is None:
                    del self.tracks[key]
            if clocked:
                self.clocked.add(dev.id)
            else:
                self.clocked.discard(dev.id)
        # Alerts whose rule no longer applies (disabled, removed) or whose device left.
        for key, alert in open_alerts.items():
            if key[1] != IOC_WIDE and not self._applies(key, states) and alert["state"] != "resolved":
                self._resolve(alert, now, None, notify=False, reason="rule no longer applies")
                self.tracks.pop(key, None)
                self._cond[key] = None

    def _applies(self, key: tuple[str, str], states: Mapping[str, StateRow]) -> bool:
        dev = self.devices.get(key[1])
        return (
            dev is not None and dev.id in states and any(name == key[0] for name, _ in self._rules_for(dev))
        )

    def _broker_lost(self, now: datetime) -> tuple[bool, datetime | None]:
        rule = self.cfg.rules["broker_lost"]
        row = self.conn.execute(
            "SELECT count(*), max(seen_at) FROM process_health WHERE kind = 'ingest'"
        ).fetchone()
        if not rule.settings.get("enabled", True) or row is None or not row[0]:
            return False, None
        return (now - row[1]).total_seconds() > float(rule.settings["stale_s"]), row[1]

    def _evaluate_broker(
        self,
        now: datetime,
        open_alerts: dict[tuple[str, str], dict[str, Any]],
        broker: tuple[bool, datetime | None],
    ) -> None:
        key = ("broker_lost", IOC_WIDE)
        lost, last = broker
        s = self.cfg.rules["broker_lost"].settings
        track = self.tracks.setdefault(key, Track())
        before = track.since
        action = step(
            track,
            lost,
            last,
            now,
            for_s=float(s["for_s"]),
            clear_s=float(s["clear_s"]),
            suppressed=False,
            alert_open=key in open_alerts,
        )
        if track.since != before:
            self._cond[key] = track.since
        if action is Action.OPEN:
            self._open(
                "broker_lost", s, None, {"last_heard": last.isoformat() if last else None}, track, now, {}
            )
        elif action is Action.RESOLVE:
            self._resolve(open_alerts[key], now, None)

    # -- alert changes ---------------------------------------------------------------------
    def _place(self, device_id: str | None) -> messages.Place:
        dev = self.devices.get(device_id or "")
        if dev is None:
            return messages.Place()
        village = self.villages.get((dev.commune_id, dev.village_id or ""))
        return messages.Place(dev.name, dev.kind, village, self.communes.get(dev.commune_id))

    def _message(
        self, event: str, alert: Mapping[str, Any], actor: str | None = None
    ) -> tuple[str, str, dict[str, Any]]:
        place = self._place(alert.get("device_id"))
        title, body = messages.render(
            event, alert, place, lang=self.lang, tz=self.tz_name, public_url=self.public_url, actor=actor
        )
        link = (
            f"{self.public_url.rstrip('/')}/#/devices/{alert['device_id']}"
            if self.public_url and alert.get("device_id")
            else None
        )
        data = {
            "device": place.device_name or alert.get("device_id"),
            "device_id": alert.get("device_id"),
            "place": ", ".join(x for x in (place.village_name, place.commune_name) if x) or None,
            "since": alert["since"].astimezone(self.tz).strftime("%H:%M %d/%m/%Y"),
            "status": messages.describe(alert["rule"], alert.get("details") or {}, self.lang),
            "severity": alert["severity"],
            "link": link,
            "tracking_id": f"{alert['id']}-{event}",
        }
        return title, body, data

    def _notify(
        self,
        alert: Mapping[str, Any],
        event: str,
        channels: Mapping[str, Any],
        now: datetime,
        actor: str | None = None,
        *,
        skip_if_pending: bool = False,
    ) -> None:
        if not channels:
            return
        severity = "resolved" if event == "resolve" else alert["severity"]
        n = outbox.enqueue(
            self.conn,
            alert["id"],
            event,
            channels,
            self._message(event, alert, actor),
            severity,
            self.cfg,
            now,
            self.tz,
            quiet_severity=alert["severity"],
            skip_if_pending=skip_if_pending,
        )
        self.queued += n

    def _affected(self, device_id: str, states: Mapping[str, StateRow]) -> list[str]:
        return sorted(
            d
            for d in self.descendants.get(device_id, ())
            if d in states and states[d].state not in ("online", "maintenance")
        )

    def _open(
        self,
        rule: str,
        s: Mapping[str, Any],
        dev: DeviceRef | None,
        details: dict[str, Any],
        track: Track,
        now: datetime,
        states: Mapping[str, StateRow],
    ) -> None:
        key = (rule, dev.id if dev else IOC_WIDE)
        latched_at = self.latched.get(key)
        if latched_at is not None and track.since is not None and track.since <= latched_at:
            return
        last = self.conn.execute(
            "SELECT resolved_by, resolved_at FROM alerts WHERE rule = %s AND coalesce(device_id, '') = %s"
            " AND state = 'resolved' ORDER BY id DESC LIMIT 1",
            key,
        ).fetchone()
        if last and last[0] is not None and track.since is not None and last[1] >= track.since:
            # Resolved by hand while the condition held: it comes back only after it clears.
            self.latched[key] = last[1]
            return
        affected = self._affected(dev.id, states) if dev and rule == "offline" else []
        headline = messages.headline(
            rule, dev.id if dev else None, self._place(dev.id if dev else None), details, self.lang
        )
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                _INSERT_ALERT,
                (
                    rule,
                    dev.id if dev else None,
                    dev.commune_id if dev else None,
                    dev.village_id if dev else None,
                    dev.kind if dev else None,
                    s["severity"],
                    headline,
                    Jsonb(details),
                    affected,
                    track.since or now,
                    now,
                    now,
                ),
            ).fetchone()
        if row is None:
            return
        store.history(self.conn, row["id"], "opened", None, details)
        self._notify(row, "open", outbox.route_channels(self.cfg, row), now)
        self._items.append(store.feed_item(row))

    def _resolve(
        self,
        alert: Mapping[str, Any],
        now: datetime,
        actor: str | None,
        *,
        notify: bool = True,
        reason: str | None = None,
    ) -> None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"UPDATE alerts SET state = 'resolved', resolved_at = %s, updated_at = now()"  # noqa: S608
                f" WHERE id = %s AND state <> 'resolved' RETURNING {store.COLUMNS}",
                (now, alert["id"]),
            ).fetchone()
        if row is None:
            return
        self._resolved.add(row["id"])
        store.history(
            self.conn, row["id"], "resolved", actor, {"auto": True, **({"reason": reason} if reason else {})}
        )
        self._tell_resolved(row, now, actor, notify)
        self._items.append(store.feed_item(row))

    def _tell_resolved(self, row: Mapping[str, Any], now: datetime, actor: str | None, notify: bool) -> None:
        outbox.cancel_pending(self.conn, row["id"])
        if not notify:
            return
        told = outbox.notified_channels(self.conn, row["id"])
        routes = outbox.route_channels(self.cfg, row, row["escalation_level"])
        self._notify(row, "resolve", {ch: routes.get(ch) for ch in sorted(told)}, now, actor)

    def _route_requests(self, now: datetime) -> None:
        """Notifications the gateway asked for (ack, assign, resolve by hand)."""
        reqs = self.conn.execute(
            "SELECT id, alert_id, event, data FROM alert_outbox WHERE status = 'route'"
            " ORDER BY id FOR UPDATE SKIP LOCKED"
        ).fetchall()
        for rid, alert_id, event, data in reqs:
            self.conn.execute("DELETE FROM alert_outbox WHERE id = %s", (rid,))
            alert = store.get(self.conn, alert_id)
            actor = (data or {}).get("actor")
            if event == "resolve":
                self._tell_resolved(alert, now, actor, True)
                continue
            told = outbox.notified_channels(self.conn, alert_id)
            routes = outbox.route_channels(self.cfg, alert, alert["escalation_level"])
            self._notify(alert, event, {ch: routes.get(ch) for ch in sorted(told)}, now, actor)

    def _update_affected(
        self, states: Mapping[str, StateRow], open_alerts: dict[tuple[str, str], dict[str, Any]]
    ) -> None:
        for (rule, device_id), alert in open_alerts.items():
            if rule != "offline" or not self.descendants.get(device_id) or alert["id"] in self._resolved:
                continue
            affected = self._affected(device_id, states)
            if affected == list(alert["affected"] or []):
                continue
            with self.conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(
                    f"UPDATE alerts SET affected = %s, updated_at = now() WHERE id = %s"  # noqa: S608
                    f" AND state <> 'resolved' RETURNING {store.COLUMNS}",
                    (affected, alert["id"]),
                ).fetchone()
            if row is not None:
                alert.update(row)
                self._items.append(store.feed_item(row))

    def _repeat_and_escalate(self, now: datetime, open_alerts: dict[tuple[str, str], dict[str, Any]]) -> None:
        for (rule, device_id), alert in open_alerts.items():
            if alert["state"] != "open" or alert["id"] in self._resolved:
                continue
            levels = outbox.escalations(self.cfg, alert)
            age = (now - alert["opened_at"]).total_seconds()
            reached = sum(1 for after_s, _, _ in levels if after_s <= age)
            if reached > alert["escalation_level"]:
                self._escalate(alert, levels, reached, now)
                continue
            repeat_s = self._repeat_s(rule, device_id)
            if (
                repeat_s > 0
                and alert["notified_at"]
                and (now - alert["notified_at"]).total_seconds() >= repeat_s
            ):
                channels = outbox.route_channels(self.cfg, alert, alert["escalation_level"])
                self._notify(alert, "repeat", channels, now, skip_if_pending=True)
                self.conn.execute(
                    "UPDATE alerts SET notified_at = %s, notify_count = notify_count + 1 WHERE id = %s",
                    (now, alert["id"]),
                )
                store.history(self.conn, alert["id"], "repeated", None)

    def _escalate(self, alert: dict[str, Any], levels: list[Any], reached: int, now: datetime) -> None:
        channels: dict[str, Any] = {}
        for _, names, route in levels[alert["escalation_level"] : reached]:
            for ch in names:
                channels.setdefault(ch, route)
        self._notify(alert, "escalate", channels, now)
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"UPDATE alerts SET escalation_level = %s, notified_at = %s,"  # noqa: S608
                f" notify_count = notify_count + 1, updated_at = now() WHERE id = %s"
                f" RETURNING {store.COLUMNS}",
                (reached, now, alert["id"]),
            ).fetchone()
        store.history(
            self.conn, alert["id"], "escalated", None, {"level": reached, "channels": sorted(channels)}
        )
        if row is not None:
            self._items.append(store.feed_item(row))

    def _repeat_s(self, rule: str, device_id: str) -> float:
        r = self.cfg.rules.get(rule)
        dev = self.devices.get(device_id)
        if r is None:
            return self.cfg.repeat_s
        s = r.for_device(dev.commune_id, dev.village_id, dev.kind, dev.id) if dev else r.settings
        return float(s["repeat_s"]) if s.get("repeat_s") is not None else self.cfg.repeat_s

    def _save_conditions(self) -> None:
        gone = [k for k, v in self._cond.items() if v is None]
        kept = [(k[0], k[1], v) for k, v in self._cond.items() if v is not None]
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
