"""Simulated MQTT devices: speakers, e-boards, Wi-Fi hotspots and village routers.

Every device has its own MQTT session with `availability: offline` as its retained last will,
publishes `online` on connect, a status every `heartbeat_s` (divided by the rate scale) and at
once when a notable field changes, and events now and then. Outages drop the connection
without a goodbye, so the broker publishes the will; a router that loses power takes every
device below it off the air. Deterministic for a given seed, apart from the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.models import Device, Registry
from services.topics import device_topic
from simulator import scenario as sc
from simulator.behaviour import CHANGE_FIELDS, RARE_EVENTS, Model, events_between
from simulator.dialects import IocDialect, dialect, polled
from simulator.link import Broker, Link, LinkError
from simulator.player import Player

log = logging.getLogger(__name__)

# A device's firmware decides how it writes `ts`; some send none at all.
TS_STYLES = ("rfc3339", "epoch_ms", None)
TS_WEIGHTS = (0.45, 0.45, 0.10)
RARE_EVENT_MEAN_S = 12 * 3600


@dataclass
class Stats:
    statuses: int = 0
    events: int = 0
    connects: int = 0
    outages: int = 0


class SimDevice:
    """One simulated MQTT device and its connection."""

    def __init__(self, sim: Simulator, device: Device) -> None:
        self.sim = sim
        self.device = device
        self.id = device.id
        # how it speaks: the IOC's MQTT, a vendor's MQTT, or not at all (the IOC polls it)
        self.polled = polled(device)
        self.dialect = dialect(device) or IocDialect(device)
        # separate streams: readings, and the fault schedule (independent of how often we tick)
        self.rng = random.Random(f"{sim.seed}:{device.id}:values")
        self.sched = random.Random(f"{sim.seed}:{device.id}:schedule")
        s = sim.scenario
        self.model = Model(device, self.rng, battery_low=device.id in s.battery_low)
        self.ts_style = self.rng.choices(TS_STYLES, TS_WEIGHTS)[0]
        self.skew_s = s.clock_skew_s.get(device.id, 0.0)
        if self.skew_s:
            self.ts_style = "rfc3339"
        self.parent: SimDevice | None = None
        self.children: list[SimDevice] = []
        self.wake = asyncio.Event()
        self.link: Link | None = None
        self.forced_until = 0.0  # monotonic
        self.down_since_reason: str | None = None
        self.last_status: dict[str, Any] = {}
        self.flap_down = False
        self.flap_next = self.sched.uniform(*sc.FLAP_UP_S)
        self.outage_at = self.sched.expovariate(1 / sc.RANDOM_OUTAGE_MTBF_S)
        self.outage_end = 0.0
        self.needs_boot_event = False
        # speakers and e-boards obey the IOC's broadcast commands (SPEC §9)
        self.player: Player | None = None
        if device.kind in ("speaker", "eboard") and type(self.dialect) is IocDialect and not self.polled:
            self.player = Player(
                device.kind,
                random.Random(f"{sim.seed}:{device.id}:player"),
                sim.rate_scale,
                self._publish_result,
                fault_p=getattr(sim, "cmd_fault_p", 0.02),
            )

    def _publish_result(self, payload: bytes) -> None:
        if self.link is not None:
            self.link.publish(self.topic("cmd_result"), payload)

    def topic(self, channel: str) -> str:
        return device_topic(self.device.commune_id, self.device.kind, self.id, channel)

    # -- when the device is off the air ---------------------------------------------------
    def own_down(self, t: float) -> str | None:
        """Why this device itself is off the air at simulated time `t`, if it is."""
        s = self.sim.scenario
        if time.monotonic() < self.forced_until:
            return "outage"
        if self.id in s.router_outage:
            w = sc.ROUTER_OUTAGE
            offset = s.role_offset(self.id, s.router_outage, spacing_s=600)
            if sc.Window(w.first_s + offset, w.duration_s, w.period_s).active(t):
                return "power cut"
        if self.id in s.flapping:
            while t >= self.flap_next:
                self.flap_down = not self.flap_down
                self.flap_next += self.sched.uniform(*(sc.FLAP_DOWN_S if self.flap_down else sc.FLAP_UP_S))
            if self.flap_down:
                return "flapping link"
        if s.random_outages:
            while t >= self.outage_at:
                self.outage_end = self.outage_at + self.sched.uniform(*sc.RANDOM_OUTAGE_S)
                self.outage_at = self.outage_end + self.sched.expovariate(1 / sc.RANDOM_OUTAGE_MTBF_S)
            if t < self.outage_end:
                return "power cut"
        return None

    def down_reason(self, t: float) -> str | None:
        own = self.own_down(t)
        if own:
            return own
        p = self.parent
        while p is not None:
            # children come back only once their router has booted and reconnected
            if p.own_down(t) or p.down_since_reason is not None:
                return f"{p.id} is down"
            p = p.parent
        return None

    def wake_tree(self) -> None:
        self.wake.set()
        for c in self.children:
            c.wake_tree()

    # -- what it says ----------------------------------------------------------------------
    def _stamp(self, doc: dict[str, Any]) -> dict[str, Any]:
        now = self.sim.clock() + self.skew_s
        if self.ts_style == "rfc3339":
            return {"ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"), **doc}
        if self.ts_style == "epoch_ms":
            return {"ts": int(now * 1000), **doc}
        return doc

    def _publish_status(self, status: dict[str, Any]) -> None:
        assert self.link is not None
        doc = self._stamp(status)
        if type(self.dialect) is not IocDialect:  # vendor firmware reports its own uptime
            doc["uptime_s"] = self.model.uptime_s(self.sim.t())
        for topic, payload in self.dialect.status(doc, self.sim.local_now()):
            self.link.publish(topic, payload)
        self.sim.stats.statuses += 1

    def _publish_event(self, event: dict[str, Any]) -> None:
        assert self.link is not None
        for topic, payload in self.dialect.event(self._stamp(event)):
            self.link.publish(topic, payload)
            self.sim.stats.events += 1

    def _readings(self, t: float) -> dict[str, Any]:
        s = self.sim.scenario
        backup = self.id in s.uplink_backup and sc.UPLINK_BACKUP.active(t)
        fault = self.id in s.screen_fault and sc.SCREEN_FAULT.active(t)
        status = self.model.status(self.sim.local_now(), t, uplink_backup=backup, screen_fault=fault)
        if self.player is not None and self.player.playing and self.device.kind == "speaker":
            status |= {"playing": True, "source": "ioc"}
        elif self.id in s.unscheduled_play and sc.UNSCHEDULED_PLAY.active(t):
            w = sc.UNSCHEDULED_PLAY
            turn = int((t - w.first_s) // w.period_s)
            status |= {"playing": True, "source": sc.UNSCHEDULED_SOURCES[turn % len(sc.UNSCHEDULED_SOURCES)]}
        return status

    # -- the device's life -------------------------------------------------------------------
    async def _connect(self) -> bool:
        d = self.dialect
        broker = self.sim.broker if d.broker_id is None else self.sim.vendor_brokers.get(d.broker_id)
        if broker is None:
            return False
        creds = self.sim.credentials.get(self.id) if d.broker_id is None else None
        will_topic, will_payload = d.will()
        link = Link(
            broker,
            d.client_id(),
            will_topic,
            will_payload=will_payload,
            keepalive_s=60,
            username=creds[0] if creds else None,
            password=creds[1] if creds else None,
            on_close=self.wake.set,
        )
        try:
            await link.connect()
        except LinkError as err:
            log.debug("%s: %s", self.id, err)
            return False
        self.link = link
        self.sim.links.add(link)
        self.sim.stats.connects += 1
        link.publish(*d.online(), retain=True)
        if self.player is not None:
            link.subscribe(self.topic("cmd"), self.player.on_cmd)
        return True

    def _drop(self) -> None:
        if self.player is not None:
            self.player.close()
        if self.link is not None:
            self.link.abort()
            self.sim.links.discard(self.link)
            self.link = None

    async def run(self) -> None:
        if self.polled:
            await self._run_polled()
            return
        sim = self.sim
        hb_real = self.device.heartbeat_s / sim.rate_scale
        tick = min(max(min(self.device.heartbeat_s, 60) / sim.rate_scale / 6, 0.05), 5.0)
        backoff = 0.5
        next_hb = 0.0
        await sim.sleep_or_stop(self.rng.uniform(0, min(2.0, hb_real)))
        while not sim.stopping.is_set():
            self.wake.clear()
            t = sim.t()
            now = time.monotonic()
            reason = self.down_reason(t)
            if reason:
                if self.down_since_reason is None:
                    self.down_since_reason = reason
                    sim.stats.outages += 1
                    log.info("%s off the air: %s", self.id, reason)
                    self._drop()
                    self.wake_tree()
                    self.needs_boot_event = reason == "power cut" or reason == "outage"
            elif self.link is None or not self.link.connected:
                if self.link is not None and self.down_since_reason is None:
                    log.warning("%s lost its broker connection; reconnecting", self.id)
                    self._drop()
                if not await self._connect():
                    await sim.sleep_or_stop(backoff * self.rng.uniform(0.5, 1.5))
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = 0.5
                if self.down_since_reason is not None:
                    log.info("%s back on the air", self.id)
                    for c in self.children:
                        c.wake_tree()
                    if self.needs_boot_event:
                        self.model.reboot(t)
                    self.down_since_reason = None
                status = self._readings(t)
                self._publish_status(status)
                if self.needs_boot_event:
                    self._publish_event(
                        {
                            "type": "boot",
                            "severity": "info",
                            "message": "Thiết bị khởi động lại sau khi mất điện",
                        }
                    )
                    self.needs_boot_event = False
                self.last_status = status
                next_hb = now + hb_real
            else:
                status = self._readings(t)
                changed = any(status.get(f) != self.last_status.get(f) for f in CHANGE_FIELDS)
                if changed or now >= next_hb:
                    self._publish_status(status)
                    next_hb = now + hb_real
                for ev in events_between(self.device.kind, self.last_status, status):
                    self._publish_event(ev)
                if self.rng.random() < tick * sim.rate_scale / RARE_EVENT_MEAN_S:
                    etype, severity, message = self.rng.choice(RARE_EVENTS[self.device.kind])
                    self._publish_event({"type": etype, "severity": severity, "message": message})
                self.last_status = status
            wait = tick if self.link is None else max(0.0, min(tick, next_hb - time.monotonic()))
            try:
                async with asyncio.timeout(wait):
                    await self.wake.wait()
            except TimeoutError:
                pass
        await self._goodbye()

    async def _run_polled(self) -> None:
        """A device the IOC polls (SNMP, ping, TCP, HTTP): no connection of its own; it keeps
        its readings for `simulator.probed`, which answers for it while it is on the air."""
        sim = self.sim
        tick = min(max(min(self.device.heartbeat_s, 60) / sim.rate_scale / 6, 0.05), 1.0)
        while not sim.stopping.is_set():
            self.wake.clear()
            t = sim.t()
            reason = self.down_reason(t)
            if reason and self.down_since_reason is None:
                self.down_since_reason = reason
                sim.stats.outages += 1
                log.info("%s off the air: %s", self.id, reason)
                self.wake_tree()
                self.needs_boot_event = reason in ("power cut", "outage")
            elif not reason and self.down_since_reason is not None:
                log.info("%s back on the air", self.id)
                if self.needs_boot_event:
                    self.model.reboot(t)
                    self.needs_boot_event = False
                self.down_since_reason = None
                for c in self.children:
                    c.wake_tree()
            if not reason:
                self.last_status = self._readings(t)
            try:
                async with asyncio.timeout(tick):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def _goodbye(self) -> None:
        """Switched off properly: say `offline`, then DISCONNECT."""
        if self.link is not None and self.link.connected:
            topic, offline = self.dialect.will()
            self.link.publish(topic, offline, retain=True)
            await self.link.close()
        self._drop()


class Simulator:
    """All MQTT devices of a registry (cameras are left to the ONVIF farm)."""

    def __init__(
        self,
        reg: Registry,
        mqtt_url: str,
        *,
        rate_scale: float = 1.0,
        seed: int = 0,
        scenario: sc.Scenario | None = None,
        credentials: dict[str, tuple[str, str]] | None = None,
        tz: str = "Asia/Ho_Chi_Minh",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate_scale <= 0:
            raise ValueError("rate scale must be > 0")
        self.registry = reg
        self.broker = Broker.from_url(mqtt_url)
        # vendor clouds the registry names (`brokers:`) that the simulator can reach (plain mqtt://)
        self.vendor_brokers: dict[str, Broker] = {}
        for b in reg.brokers:
            try:
                self.vendor_brokers[b.id] = Broker.from_url(b.url)
            except ValueError as err:
                log.warning("vendor broker %s: %s; its devices stay silent", b.id, err)
        self.rate_scale = rate_scale
        self.seed = seed
        self.scenario = scenario if scenario is not None else sc.pick(reg, seed)
        self.credentials = credentials or {}
        self.tz = ZoneInfo(tz)
        self.clock = clock
        self.stats = Stats()
        self.links: set[Link] = set()
        self.devices: dict[str, SimDevice] = {}
        self.stopping = asyncio.Event()
        self._t0 = time.monotonic()
        self.ready = asyncio.Event()
        # devices the simulator serves by other means than MQTT (ONVIF cameras, probed devices):
        # their parent, and a forced power cut (monotonic end)
        self._parent_of = {d.id: d.parent_id for d in reg.devices if d.retired_at is None}
        self._forced_until: dict[str, float] = {}

    def t(self) -> float:
        """Simulated seconds since the start."""
        return (time.monotonic() - self._t0) * self.rate_scale

    def local_now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), self.tz)

    async def sleep_or_stop(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self.stopping.wait()
        except TimeoutError:
            pass

    def outage(self, device_id: str, seconds: float) -> None:
        """Cut a device's power for `seconds` real seconds (and so its children's network)."""
        dev = self.devices.get(device_id)
        if dev is None:  # a camera: it has no MQTT session to drop
            self._forced_until[device_id] = time.monotonic() + seconds
            return
        dev.forced_until = time.monotonic() + seconds
        dev.wake_tree()

    def readings(self, device_id: str) -> dict[str, Any]:
        """A device's latest readings (what a polled device's SNMP or HTTP answers carry)."""
        dev = self.devices.get(device_id)
        return dict(dev.last_status) if dev is not None else {}

    def off_air(self, device_id: str) -> str | None:
        """Why any device of the registry (cameras included) is cut off now, if it is: its own
        power cut, or one of the routers above it being down or not yet back."""
        dev = self.devices.get(device_id)
        if dev is not None:
            return dev.down_since_reason or dev.down_reason(self.t())
        if time.monotonic() < self._forced_until.get(device_id, 0.0):
            return "outage"
        t = self.t()
        seen = {device_id}
        parent = self._parent_of.get(device_id)
        while parent and parent not in seen:
            seen.add(parent)
            p = self.devices.get(parent)
            if p is not None and (p.own_down(t) or p.down_since_reason is not None):
                return f"{p.id} is down"
            parent = self._parent_of.get(parent)
        return None

    def stop(self) -> None:
        self.stopping.set()
        for d in self.devices.values():
            d.wake.set()

    async def _misc(self) -> None:
        while not self.stopping.is_set():
            for link in list(self.links):
                link.misc()
            await self.sleep_or_stop(1.0)

    async def run(self) -> None:
        """Run every device until `stop()`; devices then say goodbye."""
        self._t0 = time.monotonic()
        for d in self.registry.devices:
            if d.kind == "camera" or d.retired_at is not None:
                continue
            if dialect(d) is None and not polled(d):
                log.warning(
                    "%s: the simulator does not speak profile %s", d.id, getattr(d.source, "profile", "?")
                )
                continue
            self.devices[d.id] = SimDevice(self, d)
        for dev in self.devices.values():
            parent = self.devices.get(dev.device.parent_id or "")
            if parent is not None:
                dev.parent = parent
                parent.children.append(dev)
        log.info(
            "simulating %d MQTT devices on %s:%s (rate x%g, seed %d)",
            len(self.devices),
            self.broker.host,
            self.broker.port,
            self.rate_scale,
            self.seed,
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._misc(), name="simulator.keepalive")
            for dev in self.devices.values():
                tg.create_task(dev.run(), name=f"simulator[{dev.id}]")
            self.ready.set()
