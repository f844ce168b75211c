"""Alert conditions: pure functions of what is known of a device (state, last status, recent
events) and the time. The `for` duration, hysteresis and suppression live in `timing`."""

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from services.alerts import unscheduled
from services.alerts.hours import in_hours, parse_hours


@dataclass(frozen=True)
class DeviceView:
    """One device as the evaluator sees it in a tick."""

    id: str
    kind: str
    state: str
    since: datetime
    metrics: Mapping[str, Any]
    # recent events, oldest first: (received_at, normalised type, fields with lower-case keys)
    events: Sequence[tuple[datetime, str, Mapping[str, Any]]] = ()
    # when the device started flapping (None: it is not)
    flapping_since: datetime | None = None
    flap_count: int = 0
    # one of our broadcasts is on the device now (a delivery sent and not finished)
    broadcasting: bool = False


@dataclass(frozen=True)
class Condition:
    # None: the data cannot tell now (the device does not report); keep what was decided
    active: bool | None
    since: datetime | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    # skip the `for` duration (a flapping device has shown its problem already)
    immediate: bool = False


INACTIVE = Condition(False)
UNKNOWN = Condition(None)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_PUNCT = re.compile(r"[^a-z0-9]")


def norm_type(t: str) -> str:
    """Event types compared without case or punctuation: 'GlobalSceneChange' ~ 'global_scene_change'."""
    return _PUNCT.sub("", t.lower())


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _offline(d: DeviceView, s: Mapping[str, Any], now: datetime) -> Condition:
    if d.flapping_since is not None:
        return Condition(True, d.flapping_since, {"flapping": True, "flaps": d.flap_count}, immediate=True)
    if d.state == "offline":
        return Condition(True, d.since)
    return INACTIVE


def _auth_failed(d: DeviceView, s: Mapping[str, Any], now: datetime) -> Condition:
    return Condition(True, d.since) if d.state == "auth_failed" else INACTIVE


@lru_cache(maxsize=64)
def _patterns(types: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in (norm_type(t) for t in types) if p)


def _event_rule(d: DeviceView, s: Mapping[str, Any], now: datetime) -> Condition:
    """Raised by a matching event for `hold_s`, or until an event that clears it; the condition
    began at the first of a run of events each less than `hold_s` after the previous one."""
    if not d.events:
        return INACTIVE
    patterns = _patterns(tuple(s.get("events") or ()))
    hold_s = float(s["hold_s"])
    since: datetime | None = None
    last_type = ""
    for received_at, etype, fields in reversed(d.events):
        if not any(p in etype for p in patterns):
            continue
        # ONVIF events carry a boolean State (true when raised, false when cleared)
        cleared = any(fields.get(k) is False for k in ("state", "active", "value", "istamper"))
        if cleared or ((since or now) - received_at).total_seconds() >= hold_s:
            break
        since, last_type = received_at, last_type or etype
    if since is None:
        return INACTIVE
    return Condition(True, since, {"event": last_type})


def _tamper(d: DeviceView, s: Mapping[str, Any], now: datetime) -> Condition:
    by_event = _event_rule(d, s, now)
    if by_event.active:
        return by_event
    if d.state == "online" and d.metrics.get("tamper") is True:
        return Condition(True, None, {"field": "tamper"})
    return INACTIVE


def _metric(
    check: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[bool, dict[str, Any]]],
) -> Callable[[DeviceView, Mapping[str, Any], datetime], Condition]:
    """A rule on the last status: only meaningful while the device reports."""

    def rule(d: DeviceView, s: Mapping[str, Any], now: datetime) -> Condition:
        if d.state != "online":
            return UNKNOWN
        active, detail = check(d.metrics, s)
        return Condition(active, None, detail)

    return rule


def _clock(m: Mapping[str, Any], s: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    v = _num(m.get("clock_offset_s"))
    return (v is not None and abs(v) > float(s["threshold"])), {"value": v, "threshold": s["threshold"]}


def _battery(m: Mapping[str, Any], s: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    v = _num(m.get("battery_pct"))
    on_battery = m.get("power") == "battery"
    return (on_battery and v is not None and v < float(s["threshold"])), {
        "value": v,
        "threshold": s["threshold"],
    }


def _uplink(m: Mapping[str, Any], s: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    return m.get("uplink_up") is False, {}


def _temperature(m: Mapping[str, Any], s: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    v = _num(m.get("temperature_c"))
    return (v is not None and v > float(s["threshold"])), {"value": v, "threshold": s["threshold"]}


def _threshold(m: Mapping[str, Any], s: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    v, t, op = m.get(s["metric"]), s["threshold"], s["op"]
    detail = {"metric": s["metric"], "op": op, "value": v, "threshold": t}
    if v is None:
        return False, detail
    if op in ("==", "!="):
        return _OPS[op](v, t), detail
    value, limit = _num(v), _num(t)
    if value is None or limit is None:
        return False, detail
    return _OPS[op](value, limit), detail


def _screen_off(d: DeviceView, s: Mapping[str, Any], now: datetime) -> Condition:
    # `now` is local time here (see evaluate): on-hours are read on the commune's clock
    if d.state != "online":
        return UNKNOWN
    if not in_hours(parse_hours(s["on_hours"]), now):
        return INACTIVE
    return Condition(d.metrics.get("screen_on") is False, None, {"on_hours": s["on_hours"]})


def _unscheduled(d: DeviceView, s: Mapping[str, Any], now: datetime) -> Condition:
    if d.state != "online":
        return UNKNOWN
    active, detail = unscheduled.unscheduled(d.metrics, d.broadcasting, s)
    return Condition(active, None, detail)


CHECKS: dict[str, Callable[[DeviceView, Mapping[str, Any], datetime], Condition]] = {
    "offline": _offline,
    "camera_tamper": _tamper,
    "camera_signal_loss": _event_rule,
    "camera_storage_failure": _event_rule,
    "camera_clock_skew": _metric(_clock),
    "camera_auth_failed": _auth_failed,
    "auth_failed": _auth_failed,
    "eboard_screen_off": _screen_off,
    "speaker_battery_low": _metric(_battery),
    "uplink_down": _metric(_uplink),
    "temperature_high": _metric(_temperature),
    unscheduled.RULE: _unscheduled,
}
THRESHOLD = _metric(_threshold)


def applies(settings: Mapping[str, Any], kind: str) -> bool:
    kinds = settings.get("kinds")
    return bool(settings.get("enabled", True)) and (not kinds or kind in kinds)


def evaluate(
    rule: str, settings: Mapping[str, Any], d: DeviceView, now: datetime, local_now: datetime
) -> Condition:
    """The condition of one rule on one device."""
    check = CHECKS.get(rule, THRESHOLD)
    return check(d, settings, local_now if rule == "eboard_screen_off" else now)


def clock_bound(rule: str, d: DeviceView) -> bool:
    """Whether the condition can change with the time alone, the device's data staying as it is:
    such a device is evaluated on every tick, any other only when its data changes or while a
    `for`, hysteresis or suppression clock of it runs."""
    if rule == "offline":
        # a flap episode ends by itself after flap_clear_s; without one, only the state counts
        return d.flapping_since is not None
    if rule in ("camera_tamper", "camera_signal_loss", "camera_storage_failure"):
        return bool(d.events)  # raised for hold_s
    if rule == "eboard_screen_off":
        return d.state == "online" and d.metrics.get("screen_on") is False  # on-hours begin and end
    if rule == unscheduled.RULE:
        # our broadcast may begin or end under a status that stays `playing`
        return d.metrics.get("playing") is True
    return False


def flapping(
    times: Sequence[datetime], now: datetime, count: int, window_s: float, clear_s: float
) -> datetime | None:
    """When a device started flapping, given the times it went offline (oldest first); None if it is not.

    It flaps when `count` offline transitions fall within `window_s`, and keeps flapping until it has
    made no transition for `clear_s` (hysteresis: a slow flapper does not raise a second alert).
    """
    if len(times) < count or (now - times[-1]).total_seconds() >= clear_s:
        return None
    start = len(times) - 1
    while start > 0 and (times[start] - times[start - 1]).total_seconds() < clear_s:
        start -= 1
    episode = times[start:]
    for j in range(count - 1, len(episode)):
        if (episode[j] - episode[j - count + 1]).total_seconds() <= window_s:
            return episode[j]
    return None
