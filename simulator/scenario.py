"""Which simulated devices misbehave, and when.

Times are in simulated seconds since the start; `--rate-scale X` makes X simulated seconds
pass per real second, so a demo or a test sees an afternoon of faults in minutes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from services.models import Registry


@dataclass(frozen=True)
class Window:
    """A repeating fault: active from `first_s` for `duration_s`, every `period_s`."""

    first_s: float
    duration_s: float
    period_s: float

    def active(self, t: float) -> bool:
        if t < self.first_s:
            return False
        return (t - self.first_s) % self.period_s < self.duration_s


# A router losing power takes its ấp off the air for longer than the 2-minute offline alert.
ROUTER_OUTAGE = Window(first_s=180, duration_s=240, period_s=1800)
# Fibre cut at a router: it keeps reporting over its 4G backup, with `uplink_up: false`.
UPLINK_BACKUP = Window(first_s=600, duration_s=300, period_s=2700)
# An e-board whose screen goes dark by day (HDMI signal lost).
SCREEN_FAULT = Window(first_s=420, duration_s=360, period_s=3600)
# Every device: a power cut now and then.
RANDOM_OUTAGE_MTBF_S = 8 * 3600
RANDOM_OUTAGE_S = (60.0, 600.0)
# A flapping device (loose cable, weak 4G): up for 45-120 s, down for 15-45 s.
FLAP_UP_S = (45.0, 120.0)
FLAP_DOWN_S = (15.0, 45.0)
# A speaker someone plugs a USB stick into (or an unknown stream takes over): it plays for two
# minutes with nobody having scheduled it (SPEC §9 `unscheduled_broadcast`), now and then.
UNSCHEDULED_PLAY = Window(first_s=300, duration_s=120, period_s=2400)
UNSCHEDULED_SOURCES = ("usb", "stream:http://203.0.113.7:8000/live")
# A device whose clock runs ahead: its `ts` is off by minutes, but within the 5 minutes the IOC accepts.
CLOCK_SKEW_S = 150.0


@dataclass(frozen=True)
class Scenario:
    router_outage: tuple[str, ...] = ()
    flapping: tuple[str, ...] = ()
    clock_skew_s: dict[str, float] = field(default_factory=dict)
    uplink_backup: tuple[str, ...] = ()
    screen_fault: tuple[str, ...] = ()
    battery_low: tuple[str, ...] = ()
    # cameras: the simulated camera expects another password than the registry holds
    camera_wrong_password: tuple[str, ...] = ()
    camera_clock_offset_s: dict[str, float] = field(default_factory=dict)
    camera_faults: dict[str, frozenset[str]] = field(default_factory=dict)
    # speakers that now and then play something nobody scheduled (UNSCHEDULED_PLAY)
    unscheduled_play: tuple[str, ...] = ()
    random_outages: bool = True

    @classmethod
    def quiet(cls) -> Scenario:
        """No faults at all: every device up and well (tests, benchmarks)."""
        return cls(random_outages=False)

    def role_offset(self, device_id: str, roles: tuple[str, ...], spacing_s: float = 300) -> float:
        """Stagger devices that share a role so their faults do not coincide."""
        return roles.index(device_id) * spacing_s if device_id in roles else 0.0


def pick(reg: Registry, seed: int) -> Scenario:
    """Roles for an arbitrary registry, chosen by the seed."""
    rng = random.Random(seed)
    by_kind: dict[str, list[str]] = {}
    for d in sorted(reg.devices, key=lambda d: d.id):
        by_kind.setdefault(d.kind, []).append(d.id)
    parents = {d.parent_id for d in reg.devices if d.parent_id}
    routers = [g for g in by_kind.get("gateway", []) if g in parents]
    mqtt_ids = [d.id for d in sorted(reg.devices, key=lambda d: d.id) if d.kind != "camera"]

    def one(pool: list[str], exclude: set[str] | None = None) -> tuple[str, ...]:
        choices = [x for x in pool if x not in (exclude or set())]
        return (rng.choice(choices),) if choices else ()

    router = one(routers)
    # a speaker that speaks the IOC's MQTT (a vendor's relay cannot say what it plays)
    own_speakers = [
        d.id for d in sorted(reg.devices, key=lambda d: d.id) if d.kind == "speaker" and d.source is None
    ]
    leaves = [x for x in mqtt_ids if x not in parents]
    flap = one(leaves)
    skew = one(leaves, set(flap))
    cams = by_kind.get("camera", [])
    wrong_pw = one(cams)
    return Scenario(
        router_outage=router,
        flapping=flap,
        clock_skew_s={d: CLOCK_SKEW_S for d in skew},
        uplink_backup=one(by_kind.get("gateway", []), set(router)),
        screen_fault=one(by_kind.get("eboard", [])),
        battery_low=one(by_kind.get("speaker", []), set(flap) | set(skew)),
        unscheduled_play=one(own_speakers, set(flap) | set(router)),
        camera_wrong_password=wrong_pw,
        camera_clock_offset_s={c: 3 * 3600.0 for c in one(cams, set(wrong_pw))},
    )
