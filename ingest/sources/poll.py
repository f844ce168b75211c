"""The poll scheduler of `ioc ingest` (SPEC §8): every device whose `source` is snmp, ping, tcp or
http, polled at its `poll_s`, its readings published on its own IOC topics (so they flow through the
one ingest pipeline).

**Who polls what.** Each running scheduler reports itself every `MEMBERS_S` in `process_health`
(kind `poller`, name `poll:<ingest id>`) while its publisher hears the IOC broker. The live members
are the rows younger than `FRESH_S`; a device belongs to the member that ranks first for it by
rendezvous hashing (highest hash of member and device id). Every scheduler computes the same split
from the same rows, so no device is polled twice in steady state; a dead member's row ages out and
its devices fall to the survivors, each taking the share that now ranks it first, within
`FRESH_S + MEMBERS_S` plus `GAIN_SPREAD_S` (well inside 60 s); a scheduler that stops on purpose
deletes its row, so its devices move at once. While members disagree (a membership change), a
device may be polled by two for one cycle: readings are stamped with the device's slot time, so the
two are the same `(device, ts)` and stored once.

**When.** A device's polls fall on fixed slots, `phase + k × poll_s` of wall-clock time, the phase
spread by a hash of its id (jitter that every member agrees on). A device newly owned is polled
within `GAIN_SPREAD_S`, then on its slots. At most `concurrency` probes run at once; each runs under
`asyncio.timeout`; a slot whose previous probe still runs is skipped.

**States.** A reading says `probe_ok`, `probe_error` (a code), `probe_detail`, `probe_rtt_ms` and
`probe_fails` (failures in a row), with the prober's metrics. `reachable` (and `auth_failed`) drive
the state rules of `services.state.derive` as for cameras: a success publishes `reachable: true`;
`fail_after` failures in a row publish `reachable: false` (offline); a failure before that carries
the last known value (a device never reached stays unknown until then); a refusal of our
credentials is `auth_failed: true` at once. Every poll is a status message: a polled device's
liveness window (`Device.liveness_window_s`) covers a poll period plus a takeover, so it turns
offline by silence only when no scheduler polls it any more.
"""

import asyncio
import hashlib
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from ingest.sources.probes import HttpProber, ListHealth, PingProber, TcpProber
from ingest.sources.publish import IocPublisher
from ingest.sources.reading import Prober, Reading
from services.db import connect, first_line
from services.errors import Unavailable
from services.mapping import MappingError, typed
from services.models import Device
from services.payloads import FIELDS
from services.registry_cache import FROM_ENV, RegistryCache
from services.sources import store as source_store
from services.sources.model import HttpSource, PingSource, Source, public
from services.vault import Vault

log = logging.getLogger(__name__)

POLLED = ("snmp", "ping", "tcp", "http")
HEALTH_KIND = "poller"
MEMBERS_S = 2.0
# A member whose row is older than this is gone (as ingest rows: services.liveness.FRESH_S).
FRESH_S = 15.0
GAIN_SPREAD_S = 10.0
CONCURRENCY = 512


def health_name(name: str) -> str:
    return f"poll:{name}"


def _rank(member: str, device_id: str) -> bytes:
    return hashlib.blake2b(f"{member}\0{device_id}".encode(), digest_size=8).digest()


def owner(device_id: str, members: Iterable[str]) -> str | None:
    """The member that polls this device (rendezvous hashing); None when there is none."""
    return max(members, key=lambda m: _rank(m, device_id), default=None)


def phase(device_id: str, poll_s: float) -> float:
    """Where in its period a device's slots fall (the same in every process)."""
    h = int.from_bytes(hashlib.blake2b(device_id.encode(), digest_size=8).digest(), "big")
    return (h / 2**64) * poll_s


def next_slot(device_id: str, poll_s: float, after: float) -> float:
    """The first slot of the device strictly after `after` (wall-clock seconds)."""
    p = phase(device_id, poll_s)
    return p + (math.floor((after - p) / poll_s) + 1) * poll_s


def budget_s(source: Source) -> float:
    """How long one probe of the source may take in all."""
    timeout = float(getattr(source, "timeout_s", 5.0))
    if isinstance(source, PingSource):
        return source.count * (timeout + 0.5) + 1.0
    return timeout + 2.0


def polled(device: Device) -> bool:
    return device.source is not None and device.source.kind in POLLED


def default_probers(profiles: Callable[[], Mapping[str, Any]] | None = None) -> dict[str, Prober]:
    """One prober per source kind; SNMP when its module imports (`profiles`: the profiles in
    effect, for vendor OIDs and vendor servers' lists)."""
    probers: dict[str, Prober] = {
        "ping": PingProber(),
        "tcp": TcpProber(),
        "http": HttpProber(profiles=profiles),
    }
    try:
        from ingest.sources.snmp import SnmpProber
    except ImportError as err:
        log.error("SNMP devices will not be polled: %s", err)
    else:
        probers["snmp"] = SnmpProber(profiles)
    return probers


@dataclass(frozen=True)
class _View:
    """What one control cycle read: the members, the devices ours, and for those newly ours
    their secrets and what the last poller published of them."""

    members: tuple[str, ...]
    mine: dict[str, Device]
    secrets: dict[str, dict[str, str]]
    seen: dict[str, tuple[bool | None, bool | None, int]]


@dataclass
class _Poll:
    """One owned device."""

    device: Device
    secrets: Mapping[str, str]
    next_at: float
    gen: int
    state: dict[str, Any] = field(default_factory=dict)
    fails: int = 0
    reachable: bool | None = None
    auth_failed: bool | None = None
    running: bool = False
    failing_logged: bool = False

    @property
    def source(self) -> Source:
        assert self.device.source is not None
        return self.device.source


class PollScheduler:
    """The scheduler of one `ioc ingest`; `run(stop)` in its own thread until `stop` is set."""

    def __init__(
        self,
        db_url: str,
        mqtt_url: str,
        secret_key: str | None,
        name: str,
        *,
        probers: dict[str, Prober] | None = None,
        concurrency: int = CONCURRENCY,
        members_s: float = MEMBERS_S,
        fresh_s: float = FRESH_S,
        gain_spread_s: float = GAIN_SPREAD_S,
        profiles_dir: Path | None = FROM_ENV,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db_url = db_url
        self._mqtt_url = mqtt_url
        self._vault = Vault(secret_key) if secret_key else None
        self.name = name
        self._probers = probers
        self._concurrency = concurrency
        self._members_s = members_s
        self._fresh_s = fresh_s
        self._gain_spread_s = gain_spread_s
        self._clock = clock
        self.registry = RegistryCache(profiles_dir)
        self.members: tuple[str, ...] = ()
        self.polls: dict[str, _Poll] = {}
        # every probe started, by device id (tests and the benchmark read it)
        self.started: dict[str, int] = {}
        self.probes_done = 0
        self.probes_failed = 0
        # how late probes start after their slot (the benchmark reads it)
        self.lag_sum_s = 0.0
        self.lag_max_s = 0.0
        self._gen = 0
        self._heap: list[tuple[float, int, str]] = []
        self._wake: asyncio.Event | None = None
        self._conn: psycopg.Connection | None = None
        self._publisher: IocPublisher | None = None
        self._dead: list[source_store.Unmappable] = []
        self._no_vault_logged: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the thread ----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        try:
            asyncio.run(self.main(stop))
        except BaseExceptionGroup as group:
            # the supervisor logs one error, the one that happened (not "unhandled errors in a TaskGroup")
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None

    async def main(self, stop: threading.Event) -> None:
        probers = self._probers
        if probers is None:
            probers = default_probers(lambda: self.registry.profiles)
        self._probers = probers
        self._wake = asyncio.Event()
        self._publisher = IocPublisher(self._mqtt_url, f"ioc-poll-{self.name}")
        self._publisher.start()
        sem = asyncio.Semaphore(self._concurrency)
        try:
            async with asyncio.TaskGroup() as tg:
                control = tg.create_task(self._control(), name="poll.control")
                dispatch = tg.create_task(self._dispatch(tg, sem), name="poll.dispatch")
                # `stop` is a threading.Event (the owner is a thread): looked at, not awaited
                while not stop.is_set() and not control.done() and not dispatch.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                for t in (control, dispatch, *self._tasks):
                    t.cancel()
        finally:
            await asyncio.to_thread(self._leave)
            await asyncio.to_thread(self._reset_db)
            for p in probers.values():
                closer = getattr(p, "aclose", None)
                if closer is not None:
                    await closer()
                elif hasattr(p, "close"):
                    p.close()
            self._publisher.stop()

    # -- membership, registry, secrets (the database, in a thread) -------------------------

    async def _control(self) -> None:
        backoff = 1.0
        while True:
            dead, self._dead = self._dead, []
            current = {i: p.device for i, p in self.polls.items()}
            http = (self._probers or {}).get("http")
            lists = dict(getattr(http, "lists", {}))
            try:
                view = await asyncio.to_thread(self._read, dead, current, lists)
                backoff = 1.0
            except (psycopg.OperationalError, psycopg.InterfaceError, Unavailable) as err:
                # Keep polling on the last view: the others keep theirs too (no double polling).
                log.warning("poller: database unavailable: %s", first_line(err))
                self._dead[:0] = dead
                await asyncio.to_thread(self._reset_db)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 15.0)
                continue
            if self._apply(view):
                assert self._wake is not None
                self._wake.set()
            await asyncio.sleep(self._members_s)

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._db_url, name="ioc-poll")
        return self._conn

    def _reset_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _read(
        self,
        dead: list[source_store.Unmappable],
        current: dict[str, Device],
        lists: Mapping[str, ListHealth] | None = None,
    ) -> _View:
        """One control cycle's database work (in a thread): write dead letters, report this
        member and the vendor lists' servers its devices are in, read the members and the
        registry, and what the devices newly ours need."""
        conn = self._db()
        source_store.dead_letters(conn, dead)
        hears = self._publisher is not None and self._publisher.connected.is_set()
        if hears:
            conn.execute(
                "INSERT INTO process_health (name, kind, seen_at, info) VALUES (%s, %s, now(), %s)"
                " ON CONFLICT (name) DO UPDATE SET seen_at = now(), info = EXCLUDED.info",
                (health_name(self.name), HEALTH_KIND, Jsonb({"devices": len(current)})),
            )
            ours = {d.source_broker for d in current.values() if isinstance(d.source, HttpSource)}
            for sid, h in (lists or {}).items():
                if sid in ours:
                    source_store.report(conn, sid, h.listening_since, h.error, refused=h.refused)
        rows = conn.execute(
            "SELECT name FROM process_health WHERE kind = %s"
            " AND seen_at > now() - make_interval(secs => %s) ORDER BY name",
            (HEALTH_KIND, self._fresh_s),
        ).fetchall()
        conn.commit()
        prefix = health_name("")
        members = tuple(r[0][len(prefix) :] for r in rows if r[0].startswith(prefix))
        if not hears:
            # our readings would not reach the IOC: leave our devices to the others
            members = tuple(m for m in members if m != self.name)
        self.registry.refresh_if_due(conn)
        mine = {
            d.id: d
            for d in self.registry.devices.values()
            if polled(d) and self.name in members and owner(d.id, members) == self.name
        }
        gained = [i for i, d in mine.items() if current.get(i) != d]
        secrets = self._secrets(conn, gained) if gained else {}
        seen = self._seen(conn, gained) if gained else {}
        conn.commit()
        return _View(members, mine, secrets, seen)

    def _apply(self, view: "_View") -> bool:
        """Re-split on the event loop: drop what is no longer ours, schedule what is newly ours."""
        if view.members != self.members:
            log.info("poller %s: members now %s", self.name, ", ".join(view.members) or "none")
            self.members = view.members
        lost = [i for i, p in self.polls.items() if view.mine.get(i) != p.device]
        for i in lost:
            del self.polls[i]
        gained = [d for i, d in view.mine.items() if i not in self.polls]
        now = self._clock()
        for d in gained:
            self._gen += 1
            poll_s = float(d.source.poll_s)  # type: ignore[union-attr]
            first = min(
                next_slot(d.id, poll_s, now),
                now + phase(d.id, min(poll_s, self._gain_spread_s)),
            )
            p = _Poll(d, view.secrets.get(d.id, {}), first, self._gen)
            p.reachable, p.auth_failed, p.fails = view.seen.get(d.id, (None, None, 0))
            self.polls[d.id] = p
            heapq.heappush(self._heap, (first, p.gen, d.id))
        return bool(lost or gained)

    def _secrets(self, conn: psycopg.Connection, ids: list[str]) -> dict[str, dict[str, str]]:
        rows = conn.execute(
            "SELECT id, source_secret FROM devices WHERE id = ANY(%s) AND source_secret IS NOT NULL",
            (ids,),
        ).fetchall()
        out: dict[str, dict[str, str]] = {}
        for device_id, token in rows:
            if self._vault is None:
                if device_id not in self._no_vault_logged:
                    log.error(
                        "device %s: its source has stored secrets but IOC_SECRET_KEY is not set:"
                        " polling without",
                        device_id,
                    )
                    self._no_vault_logged.add(device_id)
                continue
            out[device_id] = dict(orjson.loads(self._vault.decrypt(token)))
        return out

    @staticmethod
    def _seen(conn: psycopg.Connection, ids: list[str]) -> dict[str, tuple[bool | None, bool | None, int]]:
        """What the last poller (maybe another process) published: a takeover goes on from it."""
        rows = conn.execute(
            "SELECT device_id, metrics->'reachable', metrics->'auth_failed', metrics->'probe_fails'"
            " FROM device_state WHERE device_id = ANY(%s)",
            (ids,),
        ).fetchall()
        out = {}
        for device_id, reachable, auth_failed, fails in rows:
            out[device_id] = (
                reachable if isinstance(reachable, bool) else None,
                auth_failed if isinstance(auth_failed, bool) else None,
                fails if isinstance(fails, int) and not isinstance(fails, bool) else 0,
            )
        return out

    def _leave(self) -> None:
        """A stop on purpose: our devices go to the others now, not after FRESH_S."""
        try:
            with connect(self._db_url, name="ioc-poll-leave") as conn:
                conn.execute("DELETE FROM process_health WHERE name = %s", (health_name(self.name),))
        except (psycopg.Error, Unavailable) as err:
            log.warning("poller %s: could not leave: %s", self.name, first_line(err))

    # -- dispatch ------------------------------------------------------------------------

    async def _dispatch(self, tg: asyncio.TaskGroup, sem: asyncio.Semaphore) -> None:
        assert self._wake is not None
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                at, gen, device_id = heapq.heappop(self._heap)
                p = self.polls.get(device_id)
                if p is None or p.gen != gen:
                    continue  # no longer ours, or its configuration changed
                poll_s = float(p.source.poll_s)  # type: ignore[union-attr]
                p.next_at = next_slot(device_id, poll_s, max(at, now))
                heapq.heappush(self._heap, (p.next_at, gen, device_id))
                if p.running:
                    continue  # the previous probe still runs: this slot is skipped
                await sem.acquire()
                p.running = True
                task = tg.create_task(self._poll(p, at, sem), name=f"poll[{device_id}]")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                now = self._clock()
            delay = min(self._heap[0][0] - now, 1.0) if self._heap else 1.0
            self._wake.clear()
            try:
                async with asyncio.timeout(max(delay, 0.001)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _poll(self, p: _Poll, at: float, sem: asyncio.Semaphore) -> None:
        device, source = p.device, p.source
        self.started[device.id] = self.started.get(device.id, 0) + 1
        lag = max(0.0, self._clock() - at)
        self.lag_sum_s += lag
        self.lag_max_s = max(self.lag_max_s, lag)
        assert self._probers is not None
        prober = self._probers.get(source.kind)
        try:
            if prober is None:
                reading = Reading(False, error=f"no {source.kind} prober here", error_code="internal")
            else:
                try:
                    async with asyncio.timeout(budget_s(source)):
                        reading = await prober.probe(device, source, p.secrets, p.state)
                except TimeoutError:
                    reading = Reading(
                        False, error=f"no answer within {budget_s(source):g} s", error_code="timeout"
                    )
                except Exception as err:  # noqa: BLE001 - a prober's bug must not stop the others
                    log.exception("device %s: the %s prober failed", device.id, source.kind)
                    reading = Reading(
                        False, error=f"{type(err).__name__}: {err}"[:200], error_code="internal"
                    )
            if self.polls.get(device.id) is p:
                self._publish(p, reading, at)
            self.probes_done += 1
            self.probes_failed += not reading.ok
        finally:
            p.running = False
            sem.release()

    def _publish(self, p: _Poll, r: Reading, at: float) -> None:
        device, source = p.device, p.source
        ts = datetime.fromtimestamp(at, UTC)
        # an answer that could not be read (a listed device's fields, or a vendor's whole list)
        if r.error_code == "malformed" and (r.ok or "payload" in p.state):
            self._dead.append(
                source_store.Unmappable(
                    datetime.now(UTC),
                    (public(source) or {}).get("url") or f"{source.kind}://{getattr(source, 'host', '')}",
                    f"{source.kind} source of {device.id}: {r.error}",
                    device.id,
                    bytes(p.state.pop("payload", b"")),
                )
            )
        if r.source_down:
            # The vendor server listing it is lost: nothing is known of the device, whose state
            # freezes (services.liveness), and the server is one source_lost alert, not N outages.
            return
        p.fails = 0 if r.ok else p.fails + 1
        was_failing = p.reachable is False or p.auth_failed is True
        if r.auth_failed:
            p.reachable, p.auth_failed = True, True
        elif r.ok:
            p.reachable, p.auth_failed = True, False
        elif p.fails >= source.fail_after:  # type: ignore[union-attr]
            p.reachable, p.auth_failed = False, False
        self._log_transition(p, r, was_failing)
        if p.reachable is None:
            return  # never reached and not yet `fail_after` failures: it stays unknown
        metrics = dict(r.metrics)
        for name, value in list(metrics.items()):
            # A value of the kind's own field that has not its type (an SNMP `extra` OID answering
            # text where cpu_pct wants a number) would make ingest dead-letter the whole status, and
            # the device would go offline while it answers: it is dead-lettered alone.
            if name not in FIELDS.get(device.kind, {}):
                continue
            try:
                metrics[name] = typed(device.kind, name, value)
            except MappingError as err:
                del metrics[name]
                self._dead.append(
                    source_store.Unmappable(
                        datetime.now(UTC),
                        f"{source.kind}://{getattr(source, 'host', '')}",
                        f"{source.kind} source of {device.id}: {err}",
                        device.id,
                        orjson.dumps({name: value}, default=str),
                    )
                )
        body = {
            **metrics,
            "probe_ok": r.ok,
            "probe_error": r.error_code,
            "probe_detail": r.error,
            "probe_rtt_ms": r.rtt_ms,
            "probe_fails": p.fails,
            "reachable": p.reachable,
            "auth_failed": p.auth_failed is True,
        }
        assert self._publisher is not None
        self._publisher.status(device, body, ts=ts)
        for event_type, severity, fields in r.events:
            self._publisher.event(device, event_type, ts=ts, severity=severity, **fields)

    def _log_transition(self, p: _Poll, r: Reading, was_failing: bool) -> None:
        """Once when a device starts failing, once when it answers again (STYLE.md)."""
        device = p.device
        failing = p.reachable is False or p.auth_failed is True
        if failing and not p.failing_logged:
            p.failing_logged = True
            log.warning(
                "device %s (%s): %s after %d failed poll(s): %s",
                device.id,
                p.source.kind,
                "credentials refused" if p.auth_failed else "not answering",
                p.fails,
                r.error or r.error_code,
            )
        elif not failing and (p.failing_logged or was_failing) and r.ok:
            p.failing_logged = False
            log.info("device %s (%s) answers again", device.id, p.source.kind)

    # -- for tests and the benchmark ------------------------------------------------------

    def owned(self) -> set[str]:
        return set(self.polls)


__all__ = ["POLLED", "PollScheduler", "default_probers", "next_slot", "owner", "phase"]
