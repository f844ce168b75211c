"""What a tick decides from what it read: which alerts to open and which to resolve. Device rules
with their `for` and hysteresis clocks (`timing`), flapping, parent suppression (a device below a
down parent or in maintenance waits), the offline rule held back while the IOC has lost its broker
or its ingest is stalled, and those two IOC-wide rules themselves. No I/O: `actor` carries the
decisions out, in their order."""

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.alerts.models import Config
from services.alerts.rule_schema import IOC_RULES, SOURCE_RULES
from services.alerts.rules import DeviceView, applies, clock_bound, evaluate, flapping
from services.alerts.statecache import StateRow
from services.alerts.timing import Action, Track, step
from services.alerts.topology import IOC_WIDE, DeviceRef, Topology

# Device rules held back while the IOC cannot judge the device: its broker lost (offline), or its
# vendor broker lost or refusing our credentials (the one source_lost alert covers them).
_FROZEN_RULES = ("offline", "auth_failed")

Key = tuple[str, str]  # (rule, device id or IOC_WIDE)


@dataclass(frozen=True)
class Observed:
    """What a tick read: the input of `Decider.decide`."""

    now: datetime
    states: Mapping[str, StateRow]
    offline: Set[str]
    maintenance: Set[str]
    open_alerts: Mapping[Key, Mapping[str, Any]]
    ingest_heard_at: datetime | None
    flaps: Mapping[str, Sequence[datetime]]
    events: Mapping[str, Sequence[tuple[datetime, str, Mapping[str, Any]]]]
    # devices whose data changed since the last tick; None: any may have (a full read)
    dirty: Set[str] | None
    # ingests that committed nothing while messages waited: name -> (seconds, messages waiting)
    ingest_stalled: Mapping[str, tuple[float, int | None]] = field(default_factory=dict)
    # the evaluator has just started: an ingest that has not reported yet may still be starting
    in_grace: bool = False
    # vendor brokers nobody hears: broker id -> (last heard, the devices heard through it)
    sources_lost: Mapping[str, tuple[datetime | None, tuple[str, ...]]] = field(default_factory=dict)
    # of those, the brokers that answer but refuse our credentials
    sources_refused: Set[str] = frozenset()
    # devices one of our broadcasts is on now (services.alerts.unscheduled)
    broadcasting: Set[str] = frozenset()


@dataclass(frozen=True)
class Open:
    rule: str
    settings: Mapping[str, Any]
    device: DeviceRef | None  # None: an IOC-wide alert
    details: dict[str, Any]
    since: datetime | None  # when the condition started to count (the `for` clock)
    affected: tuple[str, ...] = ()  # the devices an IOC-wide alert concerns (source_lost)


@dataclass(frozen=True)
class Resolve:
    alert: Mapping[str, Any]
    notify: bool = True
    reason: str | None = None


@dataclass
class Outcome:
    decisions: list[Open | Resolve] = field(default_factory=list)
    # condition clocks that moved (None: gone), saved so that a successor keeps counting
    clocks: dict[Key, datetime | None] = field(default_factory=dict)
    # conditions seen clear: an alert resolved by hand while they held may open again
    cleared: list[Key] = field(default_factory=list)


class Decider:
    """The evaluator's memory of conditions, and the decisions of each tick."""

    def __init__(self, cfg: Config, topology: Topology, tz: ZoneInfo) -> None:
        self.cfg = cfg
        self.topology = topology
        self.tz = tz
        self.tracks: dict[Key, Track] = {}
        # devices with a condition that can change with the time alone (rules.clock_bound)
        self.clocked: set[str] = set()
        # devices evaluated by the last tick
        self.evaluated = 0
        # an ingest was heard since this evaluator started (its grace no longer matters)
        self.heard = False
        self._rules: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def reset(self, cfg: Config, topology: Topology) -> None:
        """Take a new configuration or registry; the rules per device are worked out again."""
        self.cfg = cfg
        self.topology = topology
        self._rules = {}

    def restore(self, clocks: Iterable[tuple[str, str, datetime]]) -> None:
        """Take over the condition clocks a predecessor saved."""
        for rule, device_id, since in clocks:
            self.tracks[(rule, device_id)] = Track(since=since)
        # A device below a parent may have been held back by it: its `for` starts afresh.
        for dev in self.topology.devices.values():
            if self.topology.ancestors.get(dev.id):
                for rule, _ in self.rules_for(dev):
                    self.tracks.setdefault((rule, dev.id), Track(held=True))

    def rules_for(self, dev: DeviceRef) -> list[tuple[str, dict[str, Any]]]:
        """The device rules that apply to a device, with its settings."""
        out = self._rules.get(dev.id)
        if out is None:
            out = []
            for name, rule in self.cfg.rules.items():
                if name in IOC_RULES or name in SOURCE_RULES:
                    continue
                s = rule.for_device(dev.commune_id, dev.village_id, dev.kind, dev.id)
                if applies(s, dev.kind):
                    out.append((name, s))
            self._rules[dev.id] = out
        return out

    def decide(self, seen: Observed) -> Outcome:
        """Advance every clock the tick concerns; the alerts to open and resolve, in order."""
        out = Outcome()
        lost, last = self._broker_lost(seen)
        stalled = self._stalled(seen)
        self._devices(seen, lost or stalled is not None, out)
        details: dict[str, Any] = {"last_heard": last.isoformat() if last else None}
        self._ioc_rule("broker_lost", lost, last, details, seen, out)
        if stalled is None:
            self._ioc_rule("ingest_stalled", False, None, {}, seen, out)
        else:
            name, stalled_s, waiting = stalled
            since = seen.now - timedelta(seconds=stalled_s)
            details = {"ingest": name, "stalled_s": round(stalled_s), "waiting": waiting}
            self._ioc_rule("ingest_stalled", True, since, details, seen, out)
        self._source_lost(seen, out)
        return out

    def _source_lost(self, seen: Observed, out: Outcome) -> None:
        """One alert while any vendor broker is lost, listing its devices (their states freeze)."""
        s = self.cfg.rules["source_lost"].settings
        lost = dict(seen.sources_lost) if s.get("enabled", True) else {}
        heard = [t for t, _ in lost.values() if t is not None]
        since = min(heard) if heard else (seen.now if lost else None)
        devices = tuple(sorted({d for _, ds in lost.values() for d in ds}))
        details: dict[str, Any] = {"sources": ", ".join(sorted(lost)), "devices": len(devices)}
        refused = sorted(b for b in lost if b in seen.sources_refused)
        if refused:
            details["refused"] = ", ".join(refused)
        self._ioc_rule("source_lost", bool(lost), since, details, seen, out, devices)

    def _broker_lost(self, seen: Observed) -> tuple[bool, datetime | None]:
        s = self.cfg.rules["broker_lost"].settings
        if not s.get("enabled", True) or seen.ingest_heard_at is None:
            return False, None
        last = seen.ingest_heard_at
        lost = (seen.now - last).total_seconds() > float(s["stale_s"])
        if not lost:
            self.heard = True
        elif seen.in_grace and not self.heard:
            # Just started (`ioc up` starting again): ingest may not have come up yet.
            return False, last
        return lost, last

    def _stalled(self, seen: Observed) -> tuple[str, float, int | None] | None:
        """The ingest stalled longest, when one has been for the rule's `stall_s`."""
        s = self.cfg.rules["ingest_stalled"].settings
        if not s.get("enabled", True):
            return None
        over = [(t, name, w) for name, (t, w) in seen.ingest_stalled.items() if t > float(s["stall_s"])]
        if not over:
            return None
        t, name, waiting = max(over, key=lambda x: x[0])
        return name, t, waiting

    def _devices(self, seen: Observed, broker_lost: bool, out: Outcome) -> None:
        """Evaluate every device (`dirty` None) or the dirty ones and those with something pending.

        Skipping the others changes nothing: an unchanged device whose conditions do not depend
        on the clock has the same conditions as on its last look; those conditions are inactive
        or unknown, else it would have a track (a down parent, maintenance or a lost broker only
        matter to active conditions)."""
        now, states, open_alerts, topo = seen.now, seen.states, seen.open_alerts, self.topology
        local_now = now.astimezone(self.tz)
        down = seen.offline | seen.maintenance
        broker_lost = broker_lost or any((r, IOC_WIDE) in open_alerts for r in IOC_RULES)
        frozen = {d for _, ds in seen.sources_lost.values() for d in ds}
        offline = self.cfg.rules["offline"]
        if seen.dirty is None:
            self.clocked = set()
            devices: list[DeviceRef] = list(topo.devices.values())
        else:
            ids = seen.dirty | self.clocked | {k[1] for k in self.tracks} | {k[1] for k in open_alerts}
            devices = sorted(
                (topo.devices[d] for d in ids if d in topo.devices), key=lambda dev: topo.order[dev.id]
            )
        self.evaluated = 0
        for dev in devices:
            st = states.get(dev.id)
            if st is None:
                self.clocked.discard(dev.id)
                continue
            self.evaluated += 1
            below_down = dev.id in seen.maintenance or any(a in down for a in topo.ancestors.get(dev.id, ()))
            flap_since, flap_n = None, 0
            times = seen.flaps.get(dev.id)
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
                tuple(seen.events.get(dev.id, ())),
                flap_since,
                flap_n,
                dev.id in seen.broadcasting,
            )
            clocked = False
            for name, s in self.rules_for(dev):
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
                    out.cleared.append(key)
                before = track.since
                # A lost or refusing vendor broker is one source_lost alert, not one per device.
                suppressed = below_down or (name in _FROZEN_RULES and (broker_lost or dev.id in frozen))
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
                    out.clocks[key] = track.since
                if action is Action.OPEN:
                    out.decisions.append(Open(name, s, dev, dict(cond.detail), track.since))
                elif action is Action.RESOLVE and alert is not None:
                    out.decisions.append(Resolve(alert))
                elif track.since is None and track.clear_since is None and not track.held and alert is None:
                    del self.tracks[key]
            if clocked:
                self.clocked.add(dev.id)
            else:
                self.clocked.discard(dev.id)
        # Alerts whose rule no longer applies (disabled, removed) or whose device left.
        for key, alert in open_alerts.items():
            if alert.get("device_id") and not self._applies(key, states) and alert["state"] != "resolved":
                out.decisions.append(Resolve(alert, notify=False, reason="rule no longer applies"))
                self.tracks.pop(key, None)
                out.clocks[key] = None

    def _applies(self, key: Key, states: Mapping[str, StateRow]) -> bool:
        dev = self.topology.devices.get(key[1])
        return dev is not None and dev.id in states and any(name == key[0] for name, _ in self.rules_for(dev))

    def _ioc_rule(
        self,
        name: str,
        active: bool,
        since: datetime | None,
        details: dict[str, Any],
        seen: Observed,
        out: Outcome,
        affected: tuple[str, ...] = (),
    ) -> None:
        """One IOC-wide rule (no device): open once while `active`, resolve when it clears."""
        key = (name, IOC_WIDE)
        s = self.cfg.rules[name].settings
        track = self.tracks.setdefault(key, Track())
        before = track.since
        action = step(
            track,
            active,
            since,
            seen.now,
            for_s=float(s["for_s"]),
            clear_s=float(s["clear_s"]),
            suppressed=False,
            alert_open=key in seen.open_alerts,
        )
        if track.since != before:
            out.clocks[key] = track.since
        if action is Action.OPEN:
            out.decisions.append(Open(name, s, None, details, track.since, affected))
        elif action is Action.RESOLVE:
            out.decisions.append(Resolve(seen.open_alerts[key]))
