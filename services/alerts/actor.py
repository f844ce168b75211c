"""What a tick does to alerts, in its transaction: open and resolve them as decided, keep the
devices behind a down parent listed, repeat and escalate the unacknowledged ones, and send the
notifications the gateway asked for. Notifications are queued in the outbox; every alert change
becomes a live-feed item, published by the evaluator at the end of the tick."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.alerts import messages, outbox, store
from services.alerts.decisions import Key, Open, Resolve
from services.alerts.models import Config
from services.alerts.statecache import StateRow
from services.alerts.topology import IOC_WIDE, Topology

_INSERT_ALERT = (
    "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, details,"  # noqa: S608
    " affected, since, opened_at, notified_at, notify_count)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1)"
    " ON CONFLICT (rule, coalesce(device_id, ''), coalesce(details->>'broadcast', ''))"
    " WHERE state <> 'resolved' DO NOTHING"
    f" RETURNING {store.COLUMNS}"
)


class Actor:
    """The alert changes of one tick (one per tick, on the evaluator's connection)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        cfg: Config,
        topology: Topology,
        latched: dict[Key, datetime],
        now: datetime,
        *,
        tz: str,
        lang: str,
        public_url: str | None,
    ) -> None:
        self.conn = conn
        self.cfg = cfg
        self.topology = topology
        # resolved by hand while the condition held: (rule, device) -> when (kept across ticks)
        self.latched = latched
        self.now = now
        self.tz = ZoneInfo(tz)
        self.tz_name = tz
        self.lang = lang
        self.public_url = public_url
        self.items: list[dict[str, Any]] = []  # live-feed items of the alert changes
        self.resolved: set[int] = set()
        self.queued = 0  # notifications queued

    def apply(self, decisions: Iterable[Open | Resolve], states: Mapping[str, StateRow]) -> None:
        """Carry out the decisions of `Decider.decide`, in order."""
        for d in decisions:
            if isinstance(d, Open):
                self._open(d, states)
            else:
                self._resolve(d.alert, None, notify=d.notify, reason=d.reason)

    def _message(
        self, event: str, alert: Mapping[str, Any], actor: str | None = None
    ) -> tuple[str, str, dict[str, Any]]:
        return messages.notification(
            event,
            alert,
            self.topology.place(alert.get("device_id")),
            lang=self.lang,
            tz=self.tz_name,
            public_url=self.public_url,
            actor=actor,
        )

    def _notify(
        self,
        alert: Mapping[str, Any],
        event: str,
        channels: Mapping[str, Any],
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
            self.now,
            self.tz,
            quiet_severity=alert["severity"],
            skip_if_pending=skip_if_pending,
        )
        self.queued += n

    def _open(self, d: Open, states: Mapping[str, StateRow]) -> None:
        dev = d.device
        key = (d.rule, dev.id if dev else IOC_WIDE)
        latched_at = self.latched.get(key)
        if latched_at is not None and d.since is not None and d.since <= latched_at:
            return
        last = self.conn.execute(
            "SELECT resolved_by, resolved_at FROM alerts WHERE rule = %s AND coalesce(device_id, '') = %s"
            " AND state = 'resolved' ORDER BY id DESC LIMIT 1",
            key,
        ).fetchone()
        if last and last[0] is not None and d.since is not None and last[1] >= d.since:
            # Resolved by hand while the condition held: it comes back only after it clears.
            self.latched[key] = last[1]
            return
        affected = self.topology.affected(dev.id, states) if dev and d.rule == "offline" else list(d.affected)
        headline = messages.headline(
            d.rule,
            dev.id if dev else None,
            self.topology.place(dev.id if dev else None),
            d.details,
            self.lang,
        )
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                _INSERT_ALERT,
                (
                    d.rule,
                    dev.id if dev else None,
                    dev.commune_id if dev else None,
                    dev.village_id if dev else None,
                    dev.kind if dev else None,
                    d.settings["severity"],
                    headline,
                    Jsonb(d.details),
                    affected,
                    d.since or self.now,
                    self.now,
                    self.now,
                ),
            ).fetchone()
        if row is None:
            return
        store.history(self.conn, row["id"], "opened", None, d.details)
        self._notify(row, "open", outbox.route_channels(self.cfg, row))
        self.items.append(store.feed_item(row))

    def _resolve(
        self,
        alert: Mapping[str, Any],
        actor: str | None,
        *,
        notify: bool = True,
        reason: str | None = None,
    ) -> None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"UPDATE alerts SET state = 'resolved', resolved_at = %s, updated_at = now()"  # noqa: S608
                f" WHERE id = %s AND state <> 'resolved' RETURNING {store.COLUMNS}",
                (self.now, alert["id"]),
            ).fetchone()
        if row is None:
            return
        self.resolved.add(row["id"])
        store.history(
            self.conn, row["id"], "resolved", actor, {"auto": True, **({"reason": reason} if reason else {})}
        )
        self._tell_resolved(row, actor, notify)
        self.items.append(store.feed_item(row))

    def _tell_resolved(self, row: Mapping[str, Any], actor: str | None, notify: bool) -> None:
        outbox.cancel_pending(self.conn, row["id"])
        if not notify:
            return
        told = outbox.notified_channels(self.conn, row["id"])
        routes = outbox.route_channels(self.cfg, row, row["escalation_level"])
        self._notify(row, "resolve", {ch: routes.get(ch) for ch in sorted(told)}, actor)

    def route_requests(self) -> None:
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
                self._tell_resolved(alert, actor, True)
                continue
            if event == "open":  # raised outside the evaluator (services.broadcasts.alerting)
                self._notify(alert, "open", outbox.route_channels(self.cfg, alert))
                continue
            told = outbox.notified_channels(self.conn, alert_id)
            routes = outbox.route_channels(self.cfg, alert, alert["escalation_level"])
            self._notify(alert, event, {ch: routes.get(ch) for ch in sorted(told)}, actor)

    def update_affected(
        self, states: Mapping[str, StateRow], open_alerts: dict[tuple[str, str], dict[str, Any]]
    ) -> None:
        """Keep the devices an open offline alert lists (those behind it that are not online) current."""
        for (rule, device_id), alert in open_alerts.items():
            if (
                rule != "offline"
                or not self.topology.descendants.get(device_id)
                or alert["id"] in self.resolved
            ):
                continue
            affected = self.topology.affected(device_id, states)
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
                self.items.append(store.feed_item(row))

    def repeat_and_escalate(self, open_alerts: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Escalate open alerts that reached a level; repeat the others every `repeat_s`."""
        now = self.now
        for (rule, device_id), alert in open_alerts.items():
            if alert["state"] != "open" or alert["id"] in self.resolved:
                continue
            levels = outbox.escalations(self.cfg, alert)
            age = (now - alert["opened_at"]).total_seconds()
            reached = sum(1 for after_s, _, _ in levels if after_s <= age)
            if reached > alert["escalation_level"]:
                self._escalate(alert, levels, reached)
                continue
            repeat_s = self._repeat_s(rule, device_id)
            if (
                repeat_s > 0
                and alert["notified_at"]
                and (now - alert["notified_at"]).total_seconds() >= repeat_s
            ):
                channels = outbox.route_channels(self.cfg, alert, alert["escalation_level"])
                self._notify(alert, "repeat", channels, skip_if_pending=True)
                self.conn.execute(
                    "UPDATE alerts SET notified_at = %s, notify_count = notify_count + 1 WHERE id = %s",
                    (now, alert["id"]),
                )
                store.history(self.conn, alert["id"], "repeated", None)

    def _escalate(self, alert: dict[str, Any], levels: list[Any], reached: int) -> None:
        channels: dict[str, Any] = {}
        for _, names, route in levels[alert["escalation_level"] : reached]:
            for ch in names:
                channels.setdefault(ch, route)
        self._notify(alert, "escalate", channels)
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"UPDATE alerts SET escalation_level = %s, notified_at = %s,"  # noqa: S608
                f" notify_count = notify_count + 1, updated_at = now() WHERE id = %s"
                f" RETURNING {store.COLUMNS}",
                (reached, self.now, alert["id"]),
            ).fetchone()
        store.history(
            self.conn, alert["id"], "escalated", None, {"level": reached, "channels": sorted(channels)}
        )
        if row is not None:
            self.items.append(store.feed_item(row))

    def _repeat_s(self, rule: str, device_id: str) -> float:
        r = self.cfg.rules.get(rule)
        dev = self.topology.devices.get(device_id)
        if r is None:
            return self.cfg.repeat_s
        s = r.for_device(dev.commune_id, dev.village_id, dev.kind, dev.id) if dev else r.settings
        return float(s["repeat_s"]) if s.get("repeat_s") is not None else self.cfg.repeat_s
