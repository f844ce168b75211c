"""When a condition becomes an alert and when the alert resolves: the `for` duration,
hysteresis on clearing, and suppression (down parent, maintenance, lost broker). Pure."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Action(StrEnum):
    NONE = ""
    OPEN = "open"
    RESOLVE = "resolve"


@dataclass
class Track:
    """What the evaluator remembers of one (rule, device)."""

    # the condition has held, unsuppressed, since then (the `for` clock)
    since: datetime | None = None
    # the condition has been clear since then (the hysteresis clock of an open alert)
    clear_since: datetime | None = None
    # the condition was held back by a suppression: its `for` restarts when that lifts
    held: bool = False


def step(
    t: Track,
    active: bool | None,
    cond_since: datetime | None,
    now: datetime,
    *,
    for_s: float,
    clear_s: float,
    suppressed: bool,
    alert_open: bool,
    immediate: bool = False,
) -> Action:
    """Advance a track by one observation; says whether to open or resolve an alert."""
    if active is None:
        return Action.NONE
    if not active:
        t.since, t.held = None, False
        if not alert_open:
            t.clear_since = None
            return Action.NONE
        if t.clear_since is None:
            t.clear_since = now
        return Action.RESOLVE if (now - t.clear_since).total_seconds() >= clear_s else Action.NONE
    t.clear_since = None
    if suppressed:
        # Children of a parent that comes back need time to reconnect: the `for` restarts then.
        t.since, t.held = None, True
        return Action.NONE
    if t.since is None:
        t.since = now if t.held or cond_since is None else min(cond_since, now)
        t.held = False
    elif cond_since is not None and t.since < cond_since <= now:
        # It cleared and came back between two looks (a device back online for a moment).
        t.since = cond_since
    if alert_open:
        return Action.NONE
    if immediate or (now - t.since).total_seconds() >= for_s:
        return Action.OPEN
    return Action.NONE
