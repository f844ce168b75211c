"""The SNMP prober (SPEC §8): v1, v2c and v3 agents polled with pysnmp's asyncio API.

One poll is a GETBULK (v2c/v3; GETNEXT rows for v1) of sysUpTime, sysDescr and the IF-MIB columns
we need, repeated while a column has more rows, plus a GET of `extra` OIDs when there are any. From
it come `uptime_s`, `firmware`, the interface table, the uplink's state and counters, rates from the
previous poll's counters (kept in the scheduler's per-device `state`), and `rebooted` when sysUpTime
went down. A device's faults (timeouts, refused credentials, garbage on the wire) are a Reading with
ok=False, never an exception.
"""

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
    usmAesCfb128Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.proto import errind, rfc1902, rfc1905
from pysnmp.proto.rfc3412 import MsgAndPduDispatcher

from ingest.sources import snmp_wire as wire
from ingest.sources.reading import Reading
from ingest.sources.snmp_wire import Oid
from services.models import Device
from services.sources.model import SnmpSource, Source
from services.sources.profiles import Profile, read_once

log = logging.getLogger(__name__)

SYS_DESCR = "1.3.6.1.2.1.1.1"
SYS_UPTIME = "1.3.6.1.2.1.1.3"
_SYS_DESCR, _SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 1), (1, 3, 6, 1, 2, 1, 1, 3)
# IF-MIB columns, in request order
COLUMNS = {
    "descr": "1.3.6.1.2.1.2.2.1.2",
    "type": "1.3.6.1.2.1.2.2.1.3",
    "admin": "1.3.6.1.2.1.2.2.1.7",
    "oper": "1.3.6.1.2.1.2.2.1.8",
    "in32": "1.3.6.1.2.1.2.2.1.10",
    "out32": "1.3.6.1.2.1.2.2.1.16",
    "name": "1.3.6.1.2.1.31.1.1.1.1",
    "in64": "1.3.6.1.2.1.31.1.1.1.6",
    "out64": "1.3.6.1.2.1.31.1.1.1.10",
}
_COLUMNS = {name: tuple(int(x) for x in oid.split(".")) for name, oid in COLUMNS.items()}
IF_STATUS = {
    1: "up",
    2: "down",
    3: "testing",
    4: "unknown",
    5: "dormant",
    6: "notPresent",
    7: "lowerLayerDown",
}
SOFTWARE_LOOPBACK = 24
# the first poll of an agent (later ones ask for one row more than its longest column had)
MAX_REPETITIONS = 10
# A table longer than this many rounds is an agent that loops, not a device we poll.
MAX_ROUNDS = 64
TICKS_WRAP = 2**32
AUTH_PROTOCOLS = {
    "md5": usmHMACMD5AuthProtocol,
    "sha": usmHMACSHAAuthProtocol,
    "sha256": usmHMAC192SHA256AuthProtocol,
}
PRIV_PROTOCOLS = {"des": usmDESPrivProtocol, "aes": usmAesCfb128Protocol, "aes256": usmAesCfb256Protocol}
# What a v3 agent (or pysnmp, checking its answer) says when our credentials are not accepted.
AUTH_ERRORS = (
    errind.UnknownUserName,
    errind.WrongDigest,
    errind.AuthenticationFailure,
    errind.AuthenticationError,
    errind.UnknownSecurityName,
    errind.DecryptionError,
    errind.UnsupportedSecurityLevel,
)
AUTH_STATUS = {"authorizationError", "noAccess"}


class _Fault(Exception):
    def __init__(self, code: str, detail: str, *, auth: bool = False) -> None:
        super().__init__(detail)
        self.code, self.detail, self.auth = code, detail, auth


class _Heard:
    """Datagrams an engine received, by sender: a timeout after an agent sent us something we could
    not accept is a malformed reply, not silence. pysnmp drops unparsable messages without a word;
    its engine calls `message_dispatcher.receive_message` for each one (checked at import)."""

    def __init__(self, engine: SnmpEngine) -> None:
        self.count: dict[tuple[str, int], int] = {}
        dispatcher = engine.message_dispatcher
        inner = dispatcher.receive_message

        def receive(snmp_engine: Any, domain: Any, address: Any, whole: bytes) -> Any:
            key = (str(address[0]), int(address[1]))
            self.count[key] = self.count.get(key, 0) + 1
            return inner(snmp_engine, domain, address, whole)

        dispatcher.receive_message = receive  # type: ignore[method-assign]


if not callable(getattr(MsgAndPduDispatcher, "receive_message", None)):
    raise ImportError(
        "pysnmp's message dispatcher has no receive_message: ingest/sources/snmp.py needs review"
    )


def oid_tuple(oid: str) -> Oid:
    return tuple(int(x) for x in oid.strip(".").split("."))


def _value(v: Any) -> Any:
    """A pysnmp varbind value as the wire decoder gives it: numbers as numbers, OctetString as
    text, the v2c exceptions as `snmp_wire`'s NoValue, None for Null."""
    if isinstance(v, rfc1905.EndOfMibView):
        return wire.END_OF_MIB_VIEW
    if isinstance(v, rfc1905.NoSuchObject):
        return wire.NO_SUCH_OBJECT
    if isinstance(v, rfc1905.NoSuchInstance):
        return wire.NO_SUCH_INSTANCE
    if isinstance(v, univ.Null):
        return None
    if isinstance(v, rfc1902.IpAddress):
        return v.prettyPrint()
    if isinstance(v, univ.Integer):
        return int(v)
    if isinstance(v, univ.OctetString):
        return bytes(v.asOctets()).decode("utf-8", errors="replace").replace("\x00", "").strip()
    if isinstance(v, univ.ObjectIdentifier):
        return str(v)
    return v.prettyPrint()


def _status(v: Any) -> Any:
    return IF_STATUS.get(v, v) if isinstance(v, int) else v


class SnmpProber:
    """Polls SNMP agents: v1/v2c through `snmp_wire` (one UDP socket per address family), v3
    through pysnmp, one engine per v3 credential set (pysnmp keeps v3 users in the engine, so two
    agents with one user name and different keys need two engines)."""

    kind: ClassVar[str] = "snmp"

    def __init__(
        self,
        profiles: Callable[[], Mapping[str, Profile]] | None = None,
        *,
        max_repetitions: int = MAX_REPETITIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._profiles = profiles or read_once()
        self._max_rep = max_repetitions
        self._clock = clock
        self._engines: dict[tuple[str, ...], tuple[SnmpEngine, _Heard]] = {}
        self._targets: dict[tuple[str, int, float], Any] = {}
        self._wire: dict[bool, wire.Client] = {}
        # pysnmp resolves an ObjectType against its MIB on first use and keeps the result: built
        # once per OID for every poll (the columns asked each time; continuation cursors vary)
        self._types: dict[Oid, ObjectType] = {}
        self._addresses: dict[tuple[str, int], tuple[str, int]] = {}

    def close(self) -> None:
        """Close every socket (on the event loop they were opened on)."""
        for engine, _heard in self._engines.values():
            engine.close_dispatcher()
        self._engines.clear()
        for client in self._wire.values():
            client.close()
        self._wire.clear()

    def _engine(self, key: tuple[str, ...]) -> tuple[SnmpEngine, _Heard]:
        if key not in self._engines:
            engine = SnmpEngine()
            self._engines[key] = (engine, _Heard(engine))
        return self._engines[key]

    async def _address(self, host: str, port: int) -> tuple[str, int]:
        """Resolved once per host (a registry change of host makes a new key)."""
        found = self._addresses.get((host, port))
        if found is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as err:
                raise _Fault("dns", f"cannot resolve {host}: {err}") from err
            found = (str(infos[0][4][0]), port)
            self._addresses[(host, port)] = found
        return found

    async def _caller(self, src: SnmpSource, secrets: Mapping[str, str]) -> "_Caller":
        if src.version != "3":
            community = secrets.get("community")
            if not community:
                raise _Fault("config", "no community stored for this agent")
            addr = await self._address(src.host, src.port)
            v6 = ":" in addr[0]
            client = self._wire.get(v6)
            if client is None:
                client = self._wire[v6] = wire.Client(v6)
            return _WireCaller(client, addr, src.version, community.encode(), src.timeout_s)
        auth_key, priv_key = secrets.get("auth_key"), secrets.get("priv_key")
        if not src.user or not src.auth or not auth_key:
            raise _Fault("config", "v3 needs user, auth and auth_key")
        auth_proto = AUTH_PROTOCOLS[src.auth]
        if src.priv:
            if not priv_key:
                raise _Fault("config", "v3 priv needs priv_key")
            data = UsmUserData(
                src.user, auth_key, priv_key, authProtocol=auth_proto, privProtocol=PRIV_PROTOCOLS[src.priv]
            )
        else:
            data = UsmUserData(src.user, auth_key, authProtocol=auth_proto, privProtocol=usmNoPrivProtocol)
        engine, heard = self._engine(("v3", src.user, src.auth, auth_key, src.priv or "", priv_key or ""))
        tkey = (src.host, src.port, src.timeout_s)
        target = self._targets.get(tkey)
        if target is None:
            try:
                target = await UdpTransportTarget.create(
                    (src.host, src.port), timeout=src.timeout_s, retries=0
                )
            except Exception as err:
                raise _Fault("dns", f"cannot resolve {src.host}: {err}") from err
            self._targets[tkey] = target
        if len(self._types) > 4096:
            self._types.clear()
        return _EngineCaller(engine, heard, data, target, (src.host, src.port), self._types)

    async def probe(
        self, device: Device, source: Source, secrets: Mapping[str, str], state: dict[str, Any]
    ) -> Reading:
        """One poll of the device's agent (never raises for the device's own faults)."""
        if not isinstance(source, SnmpSource):
            return Reading(False, error=f"not an SNMP source: {source.kind}", error_code="config")
        started = self._clock()
        try:
            # each request is bounded by timeout_s; the whole poll too, for an agent that
            # answers every request slowly
            async with asyncio.timeout(source.timeout_s * 4):
                reading = await self._poll(source, secrets, state)
        except _Fault as f:
            return Reading(False, auth_failed=f.auth, error=f.detail, error_code=f.code)
        except TimeoutError:
            return Reading(
                False, error=f"no complete answer in {source.timeout_s * 4:g} s", error_code="timeout"
            )
        except Exception as err:  # a library or decoding fault on one device's reply
            log.debug("snmp %s: %r", device.id, err, exc_info=True)
            return Reading(
                False, error=f"unexpected reply: {type(err).__name__}: {err}"[:200], error_code="malformed"
            )
        return Reading(True, reading[0], reading[1], rtt_ms=round((self._clock() - started) * 1000, 2))

    async def _poll(
        self, src: SnmpSource, secrets: Mapping[str, str], state: dict[str, Any]
    ) -> tuple[dict[str, Any], tuple[tuple[str, str, dict[str, Any]], ...]]:
        call = await self._caller(src, secrets)
        profile = self._profiles().get(src.profile) if src.profile else None
        columns = dict(_COLUMNS)
        clients_oid = profile.snmp.clients if profile and profile.snmp else None
        if clients_oid and not clients_oid.endswith(".0"):
            columns["clients"] = oid_tuple(clients_oid)
        # An agent answers max-repetitions rows of every column, past a column's end into the next
        # one; decoding those is most of a poll's CPU. Ask for one row more than the longest column
        # had last time: the end of every column then shows in one round trip.
        rows = state.get("rows")
        max_rep = min(self._max_rep, rows + 1) if isinstance(rows, int) else self._max_rep
        scalars, table = await walk(call, src.version, [_SYS_UPTIME, _SYS_DESCR], columns, max_rep)
        state["rows"] = max((len(v) for v in table.values()), default=0)
        extra = dict(src.extra)
        if profile and profile.snmp:
            extra = {**dict(profile.snmp.extra), **extra}
        if clients_oid and clients_oid.endswith(".0"):
            extra["clients"] = clients_oid
        got = await get(call, src.version, [oid_tuple(o) for o in extra.values()]) if extra else {}
        values = {n: got.get(oid_tuple(o)) for n, o in extra.items()}
        return _metrics(src, scalars, table, values, state, self._clock())


# (error-status name or None, error-index, varbinds)
Answer = tuple[str | None, int, list[tuple[Oid, Any]]]


class _Caller(Protocol):
    async def ask(self, pdu: int, oids: list[Oid], a: int, b: int) -> Answer: ...


class _WireCaller:
    """v1/v2c requests of one poll through the shared socket."""

    def __init__(
        self, client: wire.Client, addr: tuple[str, int], version: str, community: bytes, timeout_s: float
    ) -> None:
        self.client, self.addr, self.version = client, addr, version
        self.community, self.timeout_s = community, timeout_s

    async def ask(self, pdu: int, oids: list[Oid], a: int, b: int) -> Answer:
        try:
            r = await self.client.ask(
                self.addr, self.version, self.community, pdu, oids, a, b, self.timeout_s
            )
        except wire.SnmpTimeout as t:
            if t.junk:
                raise _Fault(
                    "malformed", "the agent answered with a message that is not valid SNMP"
                ) from None
            raise _Fault("timeout", "no answer (wrong community, or the agent is down)") from None
        except wire.Malformed as err:
            raise _Fault("malformed", f"the agent's answer: {err}") from None
        if r.error_status in AUTH_STATUS:
            raise _Fault("auth", f"the agent refused access: {r.error_status}", auth=True)
        return r.error_status, r.error_index, r.varbinds


class _EngineCaller:
    """v3 requests of one poll through pysnmp's engine; its answers as `snmp_wire` gives them."""

    def __init__(
        self,
        engine: SnmpEngine,
        heard: _Heard,
        auth: Any,
        target: Any,
        addr: tuple[str, int],
        types: dict[Oid, ObjectType],
    ) -> None:
        self.engine, self.heard, self.auth, self.target = engine, heard, auth, target
        self.addr = addr
        self._types = types

    def _type(self, oid: Oid) -> ObjectType:
        t = self._types.get(oid)
        if t is None:
            t = self._types[oid] = ObjectType(ObjectIdentity(oid))
        return t

    async def ask(self, pdu: int, oids: list[Oid], a: int, b: int) -> Answer:
        before = self.heard.count.get(self.addr, 0)
        types = [self._type(o) for o in oids]
        if pdu == wire.GETBULK:
            ei, es, ex, vbs = await bulk_cmd(
                self.engine, self.auth, self.target, ContextData(), a, b, *types, lookupMib=False
            )
        else:
            cmd = get_cmd if pdu == wire.GET else next_cmd
            ei, es, ex, vbs = await cmd(
                self.engine, self.auth, self.target, ContextData(), *types, lookupMib=False
            )
        if ei:
            if isinstance(ei, AUTH_ERRORS):
                raise _Fault("auth", f"the agent refused our credentials: {ei}", auth=True)
            if isinstance(ei, errind.RequestTimedOut):
                if self.heard.count.get(self.addr, 0) > before:
                    raise _Fault("malformed", "the agent answered with a message that is not valid SNMP")
                raise _Fault("timeout", "no answer (the agent is down)")
            raise _Fault("snmp", str(ei))
        status = None
        if es:
            status = es.prettyPrint() if hasattr(es, "prettyPrint") else str(es)
            if status in AUTH_STATUS:
                raise _Fault("auth", f"the agent refused access: {status}", auth=True)
        return status, int(ex), [(tuple(name), _value(val)) for name, val in vbs]


async def ask_split(call: _Caller, pdu: int, oids: list[Oid]) -> Answer:
    """A GET or GETNEXT of these OIDs; answered tooBig (v1 has no GETBULK to ask fewer rows of, and
    an agent's message size may be RFC 1157's 484 bytes), asked again as two halves, down to one
    OID a request. An error of a half names its OID's place in the whole list."""
    status, index, vbs = await call.ask(pdu, oids, 0, 0)
    if status != "tooBig" or len(oids) < 2:
        return status, index, vbs
    half = len(oids) // 2
    status, index, first = await ask_split(call, pdu, oids[:half])
    if status:
        return status, index, first
    status, index, second = await ask_split(call, pdu, oids[half:])
    if status:
        return status, index + half if index else 0, second
    return status, 0, [*first, *second]


async def get(call: _Caller, version: str, oids: list[Oid]) -> dict[Oid, Any]:
    """The values of these OIDs (one the agent lacks is left out, as None)."""
    oids = list(oids)
    while oids:
        status, index, vbs = await ask_split(call, wire.GET, oids)
        if status == "noSuchName" and version == "1" and 0 < index <= len(oids):
            # v1 answers a missing OID with an error naming it: ask again without it
            del oids[index - 1]
            continue
        if status:
            raise _Fault("agent_error", f"the agent answered {status}")
        return {o: (None if isinstance(v, wire.NoValue) else v) for o, v in vbs}
    return {}


async def walk(
    call: _Caller, version: str, scalars: list[Oid], columns: dict[str, Oid], max_rep: int
) -> tuple[dict[Oid, Any], dict[str, dict[int, Any]]]:
    """The next instance of each scalar prefix, and every row of the columns (by last index)."""
    found: dict[Oid, Any] = {}
    table: dict[str, dict[int, Any]] = {c: {} for c in columns}
    cursor = dict(columns)
    active = list(columns)
    pending_scalars = list(scalars)
    for _ in range(MAX_ROUNDS):
        if not active and not pending_scalars:
            break
        names = [*pending_scalars, *(cursor[c] for c in active)]
        if version == "1":
            status, index, vbs = await ask_split(call, wire.GETNEXT, names)
        else:
            status, index, vbs = await call.ask(wire.GETBULK, names, len(pending_scalars), max_rep)
        if status == "tooBig" and version != "1" and max_rep > 1:
            # an agent with a small message size (484 bytes is all RFC 3416 asks for) refuses a
            # whole answer rather than cutting it: ask for fewer rows
            max_rep //= 2
            continue
        if status == "noSuchName" and version == "1" and 0 < index <= len(names):
            # v1: the end of the MIB past this column (or scalar)
            i = index - 1
            if i < len(pending_scalars):
                del pending_scalars[i]
            else:
                active.pop(i - len(pending_scalars))
            continue
        if status:
            raise _Fault("agent_error", f"the agent answered {status}")
        n_scalar = len(pending_scalars)
        for prefix, (name, val) in zip(pending_scalars, vbs[:n_scalar], strict=False):
            if name == (*prefix, 0) and not isinstance(val, wire.NoValue):
                found[prefix] = val
        pending_scalars = []
        rest = vbs[n_scalar:]
        width = len(active)
        if width == 0:
            continue
        if not rest:
            raise _Fault("malformed", "the agent answered a table request with no values")
        done: set[str] = set()
        for row in range(0, len(rest) - width + 1, width):
            for col, (oid, val) in zip(active, rest[row : row + width], strict=True):
                if col in done:
                    continue
                prefix = columns[col]
                if val is wire.END_OF_MIB_VIEW or len(oid) <= len(prefix) or oid[: len(prefix)] != prefix:
                    done.add(col)
                    continue
                if oid <= cursor[col]:
                    raise _Fault("malformed", f"the agent's OIDs do not increase ({'.'.join(map(str, oid))})")
                cursor[col] = oid
                table[col][oid[-1]] = None if isinstance(val, wire.NoValue) else val
        active = [c for c in active if c not in done]
    else:
        raise _Fault("malformed", f"the interface table did not end after {MAX_ROUNDS} requests")
    return found, table


def _metrics(
    src: SnmpSource,
    scalars: dict[Oid, Any],
    table: dict[str, dict[int, Any]],
    extra: dict[str, Any],
    state: dict[str, Any],
    now: float,
) -> tuple[dict[str, Any], tuple[tuple[str, str, dict[str, Any]], ...]]:
    metrics: dict[str, Any] = {}
    events: list[tuple[str, str, dict[str, Any]]] = []
    ticks = scalars.get(_SYS_UPTIME)
    rebooted = False
    if isinstance(ticks, int):
        metrics["uptime_s"] = ticks // 100
        prev = state.get("uptime_ticks")
        # a wrap of the 32-bit tick counter (every 497 days) is not a reboot
        wrapped = isinstance(prev, int) and prev > TICKS_WRAP - 100 * 86400 and ticks < 100 * 86400
        if isinstance(prev, int) and ticks < prev and not wrapped:
            rebooted = True
            events.append(
                ("rebooted", "warning", {"uptime_s": ticks // 100, "previous_uptime_s": prev // 100})
            )
        state["uptime_ticks"] = ticks
    descr = scalars.get(_SYS_DESCR)
    if isinstance(descr, str):
        # Its first line: Cisco's sysDescr goes on with "Technical Support: …", "Copyright …" lines.
        first = next((line.strip() for line in descr.splitlines() if line.strip()), "")
        metrics["firmware"] = first[:200]
    interfaces = []
    for index in sorted(set(table["descr"]) | set(table["name"]) | set(table["oper"])):
        in64, out64 = table["in64"].get(index), table["out64"].get(index)
        hc = isinstance(in64, int) and isinstance(out64, int)
        interfaces.append(
            {
                "index": index,
                "name": table["name"].get(index),
                "descr": table["descr"].get(index),
                "oper": _status(table["oper"].get(index)),
                "admin": _status(table["admin"].get(index)),
                "rx_bytes": in64 if hc else table["in32"].get(index),
                "tx_bytes": out64 if hc else table["out32"].get(index),
                "_hc": hc,
                "_loop": table["type"].get(index) == SOFTWARE_LOOPBACK or table["name"].get(index) == "lo",
            }
        )
    up = [i for i in interfaces if i["oper"] == "up"]
    metrics["if_up"] = len(up)
    metrics["if_down"] = len(interfaces) - len(up)
    uplink = None
    if src.uplink:
        uplink = next((i for i in interfaces if src.uplink in (i["name"], i["descr"])), None)
        if uplink is not None:
            metrics["uplink_up"] = uplink["oper"] == "up"
    elif interfaces:
        real = [i for i in interfaces if not i["_loop"]]
        metrics["uplink_up"] = any(i["oper"] == "up" for i in real)
        uplink = next((i for i in real if i["oper"] == "up"), real[0] if real else None)
    if uplink is not None:
        rx, tx = uplink["rx_bytes"], uplink["tx_bytes"]
        if isinstance(rx, int):
            metrics["rx_bytes"] = rx
        if isinstance(tx, int):
            metrics["tx_bytes"] = tx
        prev = state.get("uplink")
        if prev and prev["index"] == uplink["index"] and prev["hc"] == uplink["_hc"] and not rebooted:
            dt = now - prev["at"]
            for metric, new, old in (("rx_bps", rx, prev["rx"]), ("tx_bps", tx, prev["tx"])):
                # a counter below its last value wrapped or was reset: no rate this time
                if dt > 0 and isinstance(new, int) and isinstance(old, int) and new >= old:
                    metrics[metric] = round((new - old) * 8 / dt, 1)
        state["uplink"] = {"index": uplink["index"], "hc": uplink["_hc"], "rx": rx, "tx": tx, "at": now}
    metrics["interfaces"] = [{k: v for k, v in i.items() if not k.startswith("_")} for i in interfaces]
    if "clients" in table:
        counts = [v for v in table["clients"].values() if isinstance(v, int)]
        if counts:
            metrics["clients"] = sum(counts)
    for name, value in extra.items():
        if value is not None:
            metrics[name] = value
    return metrics, tuple(events)


__all__ = ["SnmpProber"]
