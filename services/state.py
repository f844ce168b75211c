"""The device state machine: a pure function of what is known of a device and the time."""

from datetime import datetime

from services.models import Liveness, State

# Why a device of a vendor broker that refuses the IOC's credentials is auth_failed (SPEC §8).
SOURCE_REFUSED = "vendor broker refuses our credentials"


def derive(d: Liveness, now: datetime, listening_since: datetime | None) -> tuple[State, str]:
    """The state a device is in, and why (the reason is shown to operators).

    `listening_since` is when the IOC last (re)gained its broker: a device is only
    declared offline for silence the IOC could actually have heard. None means the
    IOC cannot hear its broker now; then silence never counts against a device.
    """
    if d.in_maintenance:
        return State.MAINTENANCE, "maintenance window"
    if d.source_refused:
        # The source answers but refuses our credentials (§8); what the device last said is old news.
        return State.AUTH_FAILED, SOURCE_REFUSED
    if d.availability == "offline":
        return State.OFFLINE, "device reported offline (last will)"
    if d.last_seen is None:
        return State.UNKNOWN, "never heard"
    if d.kind == "camera" or d.polled:
        # Written by the IOC's own pollers (ONVIF, SNMP, ping, TCP, HTTP), never by a device: a
        # device that answers but refuses our credentials is auth_failed whatever its kind (§8).
        what = "camera" if d.kind == "camera" and not d.polled else "device"
        if d.metrics.get("auth_failed") is True:
            return State.AUTH_FAILED, f"{what} refuses our credentials"
        if d.metrics.get("reachable") is False:
            return State.OFFLINE, f"{what} does not answer" + ("" if what == "camera" else " its polls")
    if listening_since is not None:
        heard_from = max(d.last_seen, listening_since)
        silent_s = (now - heard_from).total_seconds()
        if silent_s > d.window_s:
            return State.OFFLINE, f"no status for {int((now - d.last_seen).total_seconds())} s"
    return State.ONLINE, "status received"
