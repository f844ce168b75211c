"""One camera's poller: a poll loop (reachability, clock, identity, media) and a PullPoint loop
(events), sharing one ONVIF session. Failures become status and events, never a crash."""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.onvif import events
from ingest.onvif.client import (
    CameraAuthError,
    CameraClient,
    CameraError,
    CameraProtocolError,
    CameraUnreachable,
    Clock,
    DeviceInfo,
)
from ingest.onvif.publisher import iso_ms
from services.cameras import CameraMedia
from services.models import DEFAULT_POLL_S, Device

log = logging.getLogger(__name__)

Publish = Callable[[str, str, str, dict[str, Any]], None]
SaveMedia = Callable[[CameraMedia], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    """How to reach one camera (from the registry)."""

    device_id: str
    commune_id: str
    host: str
    port: int
    path: str
    username: str | None
    poll_s: int = DEFAULT_POLL_S
    password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, d: Device, password: str | None) -> "Target":
        assert d.onvif is not None
        o = d.onvif
        return cls(d.id, d.commune_id, o.host, o.port, o.path, o.username, o.poll_s, password)


@dataclass(frozen=True)
class Tuning:
    timeout_s: float = 5.0  # each ONVIF call
    concurrency: int = 64  # polls (and subscribes) in flight at once, all cameras
    pull_wait_s: float = 20.0  # PullMessages long-poll: how long the camera may hold it
    subscription_s: float = 300.0  # PullPoint subscription lifetime asked for (renewed before)
    media_every: int = 20  # polls between media profile refreshes
    first_poll_spread_s: float = 10.0  # spread the first polls so a thousand cameras do not start at once
    backoff_max_s: float = 30.0  # re-subscribe backoff ceiling


DEFAULT_TUNING = Tuning()


class CameraPoller:
    """Polls one camera every `poll_s` and pulls its events; publishes status and events."""

    def __init__(
        self,
        target: Target,
        publish: Publish,
        save_media: SaveMedia,
        sem: asyncio.Semaphore,
        tuning: Tuning = DEFAULT_TUNING,
    ) -> None:
        self.t = target
        self._publish_raw, self._save_media, self._sem, self.tuning = publish, save_media, sem, tuning
        self.client = CameraClient(
            target.host,
            target.port,
            target.path,
            target.username,
            target.password,
            timeout_s=tuning.timeout_s,
        )
        self.availability = "unknown"
        self.connected = False
        self.session = 0
        self._session_cond = asyncio.Condition()
        self.events_ok = False
        self.event_state = events.EventState()
        self.clock: Clock | None = None
        self.info: DeviceInfo | None = None
        self.media: CameraMedia | None = None
        self.problem: str | None = None  # found while connecting; kept until the next connect
        self._poll_problem: str | None = None
        self._published_uris: tuple[str | None, str | None] | None = None
        self._polls_since_media = 0
        self._last_event_at = datetime.min.replace(tzinfo=UTC)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        name = f"onvif[{self.t.device_id}]"
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._poll_loop(), name=f"{name}.poll")
                tg.create_task(self._events_loop(), name=f"{name}.events")
        finally:
            try:
                async with asyncio.timeout(2):
                    await self.client.unsubscribe()
            except (TimeoutError, CameraError):
                pass
            await self.client.close()

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, min(self.t.poll_s, self.tuning.first_poll_spread_s)))  # noqa: S311
        next_at = loop.time()
        while True:
            try:
                await self.poll_once()
            except Exception:
                log.exception("camera %s: poll failed unexpectedly", self.t.device_id)
            next_at = max(next_at + self.t.poll_s, loop.time())
            await asyncio.sleep(next_at - loop.time())

    # -- polling -----------------------------------------------------------------------------

    async def poll_once(self) -> dict[str, Any]:
        """One poll under the shared concurrency cap; publishes and returns the status."""
        async with self._sem:
            payload = await self._poll()
        self._publish("status", payload)
        return payload

    async def _poll(self) -> dict[str, Any]:
        c = self.client
        self.clock = None
        self._poll_problem = None
        try:
            if not c.is_open:
                await c.open()
            self.clock = await c.clock()
            if await c.compensate(self.clock.offset_s):
                await self._drop_session()
            if not self.connected:
                await self._connect()
            elif not self.events_ok:
                # Without a live subscription nothing else proves our credentials still work.
                try:
                    self.info = await c.device_info()
                except CameraProtocolError as err:
                    self._poll_problem = str(err)  # it answered without refusing us: credentials are fine
            self._polls_since_media += 1
            if self.connected and self._polls_since_media >= self.tuning.media_every:
                await self._refresh_media()
        except CameraUnreachable as err:
            await self._lost()
            self._transition("unreachable", str(err))
            return {"ts": self._now(), "reachable": False, "auth_failed": False}
        except CameraAuthError as err:
            await self._drop_session()
            self._transition("auth_failed", str(err))
            return self._clock_fields({"ts": self._now(), "reachable": True, "auth_failed": True})
        except CameraProtocolError as err:
            # It answers, but not as ONVIF says: reachable, and the operator sees why it is odd.
            self._poll_problem = str(err)
        self._transition("online", None)
        return self._status()

    async def _connect(self) -> None:
        c = self.client
        self.problem = None
        try:
            self.info = await c.device_info()
        except CameraProtocolError as err:
            # A reply that is not a fault means the credentials passed; go on without identity.
            self.problem = str(err)
        try:
            await c.discover_services()
        except CameraProtocolError as err:
            self.problem = str(err)
        await self._refresh_media()
        self.connected = True
        async with self._session_cond:
            self.session += 1
            self._session_cond.notify_all()

    async def _refresh_media(self) -> None:
        c = self.client
        self._polls_since_media = 0
        try:
            profiles = await c.profiles()
        except CameraProtocolError as err:
            self.problem = str(err)
            profiles = []
        first = profiles[0] if profiles else None
        snapshot_auth = self.media.snapshot_auth if self.media else None
        if (
            first
            and first.snapshot_uri
            and (snapshot_auth is None or self.media is None or self.media.snapshot_uri != first.snapshot_uri)
        ):
            try:
                _, snapshot_auth = await c.snapshot(first.snapshot_uri)
            except CameraError as err:
                log.debug("camera %s: snapshot check failed: %s", self.t.device_id, err)
                snapshot_auth = None
        i = self.info or DeviceInfo(None, None, None, None, None)
        media = CameraMedia(
            self.t.device_id,
            i.manufacturer,
            i.model,
            i.firmware,
            i.serial,
            i.hardware_id,
            [
                {
                    "token": p.token,
                    "name": p.name,
                    "encoding": p.encoding,
                    "width": p.width,
                    "height": p.height,
                    "stream_uri": p.stream_uri,
                    "snapshot_uri": p.snapshot_uri,
                }
                for p in profiles
            ],
            first.stream_uri if first else None,
            first.snapshot_uri if first else None,
            snapshot_auth,
            c.has_events,
            dict(c.xaddrs),
        )
        if not media.same_as(self.media):
            await self._save_media(media)
            self.media = media

    async def _drop_session(self) -> None:
        """Forget the session state so the next poll connects again (identity, services, events)."""
        self.connected = False
        self.events_ok = False
        self.event_state.clear()
        if self.client.subscription is not None:
            self.client.subscription = None

    async def _lost(self) -> None:
        await self._drop_session()
        await self.client.close()

    def _transition(self, new: str, reason: str | None) -> None:
        old, self.availability = self.availability, new
        if old == new:
            return
        cam = self.t.device_id
        if new == "unreachable":
            log.warning("camera %s unreachable: %s", cam, reason)
        elif new == "auth_failed":
            log.warning("camera %s refuses our credentials: %s", cam, reason)
        elif old != "unknown":
            log.info("camera %s reachable again", cam)

    # -- payloads ----------------------------------------------------------------------------

    def _now(self) -> str:
        return iso_ms(datetime.now(UTC))

    def _clock_fields(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.clock is not None:
            p["rtt_ms"] = self.clock.rtt_ms
            p["clock_offset_s"] = self.clock.offset_s
        return p

    def _status(self) -> dict[str, Any]:
        p = self._clock_fields({"ts": self._now(), "reachable": True, "auth_failed": False})
        if self.info:
            for key, value in (
                ("manufacturer", self.info.manufacturer),
                ("model", self.info.model),
                ("firmware", self.info.firmware),
            ):
                if value is not None:
                    p[key] = value
        p["events"] = self.events_ok
        p.update(self.event_state.fields())
        if self.media is not None:
            uris = (self.media.stream_uri, self.media.snapshot_uri)
            if uris != self._published_uris:
                p["stream_uri"], p["snapshot_uri"] = uris
                self._published_uris = uris
        if self._poll_problem or self.problem:
            p["error"] = self._poll_problem or self.problem
        return p

    def _publish(self, channel: str, payload: dict[str, Any]) -> None:
        self._publish_raw(self.t.commune_id, self.t.device_id, channel, payload)

    # -- PullPoint events --------------------------------------------------------------------

    async def _events_loop(self) -> None:
        delay = 1.0
        while True:
            async with self._session_cond:
                await self._session_cond.wait_for(lambda: self.connected)
                session = self.session
            if not self.client.has_events:
                self.events_ok = False
                await self._new_session(session)
                continue
            try:
                await self._pump(session)
                delay = 1.0
            except CameraAuthError:
                await self._drop_session()
            except CameraError as err:
                if self.events_ok:
                    log.info(
                        "camera %s: event subscription lost (%s); subscribing again", self.t.device_id, err
                    )
                self.events_ok = False
                self.client.subscription = None
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311
                delay = min(delay * 2, self.tuning.backoff_max_s)
            except Exception:
                log.exception("camera %s: event loop failed unexpectedly", self.t.device_id)
                await asyncio.sleep(self.tuning.backoff_max_s)

    async def _new_session(self, session: int) -> None:
        def moved_on() -> bool:
            return self.session != session

        async with self._session_cond:
            await self._session_cond.wait_for(moved_on)

    async def _pump(self, session: int) -> None:
        c, tn = self.client, self.tuning
        loop = asyncio.get_running_loop()
        while self.connected and self.session == session:
            sub = c.subscription
            if sub is None:
                async with self._sem:
                    await c.subscribe(tn.subscription_s)
                self.event_state.clear()
            elif sub.expires_at - loop.time() < tn.pull_wait_s + tn.timeout_s + 5:
                try:
                    async with self._sem:
                        await c.renew(tn.subscription_s)
                except CameraProtocolError:
                    c.subscription = None
                    continue
            messages = await c.pull(tn.pull_wait_s)
            self.events_ok = True
            self._handle(messages)

    def _handle(self, messages: list[Any]) -> None:
        before = self.event_state.fields()
        for msg in messages:
            ev = events.parse(msg)
            if ev is None:
                continue
            self.event_state.apply(ev)
            if ev.worth_publishing:
                payload = {
                    "type": ev.type,
                    "ts": self._event_ts(),
                    "severity": ev.severity,
                    "message": ev.message,
                    "active": ev.active,
                    "topic": ev.topic,
                }
                if ev.camera_at is not None:
                    payload["camera_ts"] = iso_ms(ev.camera_at)
                if ev.source is not None:
                    payload["source"] = ev.source
                self._publish("event", payload)
        if self.event_state.fields() != before and self.availability == "online":
            self._publish("status", self._status())

    def _event_ts(self) -> str:
        """Receive time, unique per camera: events are stored once per (device, ts, type)."""
        t = datetime.now(UTC)
        now = t.replace(microsecond=t.microsecond // 1000 * 1000)
        if now <= self._last_event_at:
            now = self._last_event_at + timedelta(milliseconds=1)
        self._last_event_at = now
        return iso_ms(now)
