"""SNMP v1/v2c on the wire, for the prober's community agents (SPEC §8): BER encoding of GET,
GETNEXT and GETBULK requests, decoding of their responses, and one UDP socket for every agent.

Why not pysnmp's engine for these: measured on this machine (docs/sources.md), a v2c poll through
pysnmp's hlapi cost ~8 ms of CPU, half of it pyasn1 decoding the response into ASN.1 objects and
most of the rest the engine's per-message work (the community-to-security-name lookup in its own
MIB, which grows with every agent configured, and the MIB resolution of each varbind). An SNMP
message is a handful of BER types (RFC 1157, RFC 3416): reading them straight into Python values
costs a few hundredths of that. v3 (USM: keys, digests, privacy, engine discovery) stays with
pysnmp (`ingest.sources.snmp`), which is well tested for it.
"""

import asyncio
import itertools
import random
import struct
from dataclasses import dataclass, field
from typing import Any

Oid = tuple[int, ...]

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
VERSION = {"1": 0, "2c": 1}
# RFC 3416 error-status names, as pysnmp names them
ERROR_STATUS = (
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
)


class NoValue:
    """noSuchObject, noSuchInstance or endOfMibView: a v2c varbind without a value."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NO_SUCH_OBJECT = NoValue("noSuchObject")
NO_SUCH_INSTANCE = NoValue("noSuchInstance")
END_OF_MIB_VIEW = NoValue("endOfMibView")
_EXCEPTIONS = {0x80: NO_SUCH_OBJECT, 0x81: NO_SUCH_INSTANCE, 0x82: END_OF_MIB_VIEW}


class Malformed(ValueError):
    """A datagram that is not a well-formed SNMP v1/v2c response."""


# -- encoding --------------------------------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _len(len(body)) + body


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _oid(oid: Oid) -> bytes:
    out = bytearray((oid[0] * 40 + oid[1],))
    for arc in oid[2:]:
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = bytearray()
        while arc:
            chunk.append((arc & 0x7F) | 0x80)
            arc >>= 7
        chunk[0] &= 0x7F
        out += chunk[::-1]
    return _tlv(0x06, bytes(out))


_NULL = b"\x05\x00"
_OID_CACHE: dict[Oid, bytes] = {}


def _varbind(oid: Oid) -> bytes:
    vb = _OID_CACHE.get(oid)
    if vb is None:
        vb = _tlv(0x30, _oid(oid) + _NULL)
        if len(_OID_CACHE) < 4096:  # the columns asked every poll; cursors vary
            _OID_CACHE[oid] = vb
    return vb


def request(
    version: str, community: bytes, pdu: int, request_id: int, oids: list[Oid], a: int, b: int
) -> bytes:
    """A request message; `a`, `b` are error-status and error-index (GET/GETNEXT: 0, 0) or
    non-repeaters and max-repetitions (GETBULK)."""
    body = _int(request_id) + _int(a) + _int(b) + _tlv(0x30, b"".join(_varbind(o) for o in oids))
    return _tlv(0x30, _int(VERSION[version]) + _tlv(0x04, community) + _tlv(pdu, body))


# -- decoding --------------------------------------------------------------------------------


def _head(data: bytes, i: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the TLV at i."""
    if i + 2 > end:
        raise Malformed("truncated")
    tag, n = data[i], data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or i + k > end:
            raise Malformed("bad length")
        n = int.from_bytes(data[i : i + k], "big")
        i += k
    if i + n > end:
        raise Malformed("truncated")
    return tag, i, i + n


def _decode_oid(data: bytes, i: int, end: int) -> Oid:
    if i >= end:
        raise Malformed("empty OID")
    first = data[i]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)] if first < 0x80 else None
    if arcs is None:
        raise Malformed("long first OID arc")
    arc = 0
    for b in data[i + 1 : end]:
        arc = (arc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(arc)
            arc = 0
    if data[end - 1] & 0x80:
        raise Malformed("OID ends inside an arc")
    return tuple(arcs)


def _value(data: bytes, tag: int, i: int, end: int) -> Any:
    if tag == 0x02:  # INTEGER
        return int.from_bytes(data[i:end], "big", signed=True) if end > i else 0
    if tag in (0x41, 0x42, 0x43, 0x46, 0x47):  # Counter32, Gauge32, TimeTicks, Counter64, UInteger32
        return int.from_bytes(data[i:end], "big", signed=False)
    if tag == 0x04 or tag == 0x44:  # OCTET STRING, Opaque
        return data[i:end].decode("utf-8", errors="replace").replace("\x00", "").strip()
    if tag == 0x40:  # IpAddress
        if end - i != 4:
            raise Malformed("IpAddress of the wrong size")
        return ".".join(str(b) for b in data[i:end])
    if tag == 0x06:
        return ".".join(map(str, _decode_oid(data, i, end)))
    if tag == 0x05:
        return None
    exc = _EXCEPTIONS.get(tag)
    if exc is not None:
        return exc
    raise Malformed(f"unknown value type 0x{tag:02x}")


@dataclass
class Response:
    request_id: int
    community: bytes
    error_status: str | None  # None for noError
    error_index: int
    varbinds: list[tuple[Oid, Any]] = field(default_factory=list)


def decode(data: bytes) -> Response:
    """A GetResponse (v1 or v2c); Malformed for anything else."""
    end = len(data)
    tag, i, msg_end = _head(data, 0, end)
    if tag != 0x30:
        raise Malformed("not a SEQUENCE")
    tag, i, j = _head(data, i, msg_end)
    if tag != 0x02 or int.from_bytes(data[i:j], "big") not in (0, 1):
        raise Malformed("not an SNMP v1/v2c message")
    tag, i, j = _head(data, j, msg_end)
    if tag != 0x04:
        raise Malformed("no community")
    community = data[i:j]
    tag, i, pdu_end = _head(data, j, msg_end)
    if tag != RESPONSE:
        raise Malformed(f"not a response PDU (0x{tag:02x})")
    fields = []
    for _ in range(3):
        tag, i, j = _head(data, i, pdu_end)
        if tag != 0x02:
            raise Malformed("bad PDU header")
        fields.append(int.from_bytes(data[i:j], "big", signed=True))
        i = j
    tag, i, vbl_end = _head(data, i, pdu_end)
    if tag != 0x30:
        raise Malformed("no varbind list")
    varbinds = []
    while i < vbl_end:
        tag, k, vb_end = _head(data, i, vbl_end)
        if tag != 0x30:
            raise Malformed("bad varbind")
        tag, k, j = _head(data, k, vb_end)
        if tag != 0x06:
            raise Malformed("varbind without an OID")
        oid = _decode_oid(data, k, j)
        tag, k, j = _head(data, j, vb_end)
        varbinds.append((oid, _value(data, tag, k, j)))
        i = vb_end
    status = fields[1]
    name = None if status == 0 else (ERROR_STATUS[status] if 0 < status < len(ERROR_STATUS) else str(status))
    return Response(fields[0], community, name, fields[2], varbinds)


# -- transport -------------------------------------------------------------------------------


class SnmpTimeout(Exception):
    """No answer; `junk` when the agent sent datagrams we could not read meanwhile."""

    def __init__(self, junk: bool) -> None:
        super().__init__("malformed" if junk else "timeout")
        self.junk = junk


class Client(asyncio.DatagramProtocol):
    """One UDP socket for every v1/v2c agent; answers matched by request id and sender."""

    def __init__(self, v6: bool = False) -> None:
        self._local = ("::", 0) if v6 else ("0.0.0.0", 0)
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, tuple[tuple[str, int], asyncio.Future[Response]]] = {}
        self._junk: dict[tuple[str, int], int] = {}
        self._ids = itertools.count(random.randrange(1, 2**30))

    async def _open(self) -> asyncio.DatagramTransport:
        if self._transport is None or self._transport.is_closing():
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=self._local)
            self._transport = transport
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for _addr, fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        key = (addr[0], addr[1])
        try:
            resp = decode(data)
        except (Malformed, IndexError, ValueError, struct.error):
            self._junk[key] = self._junk.get(key, 0) + 1
            return
        entry = self._pending.get(resp.request_id)
        if entry is None or entry[0] != key or entry[1].done():
            return  # a late answer to a request that timed out, or not for us
        entry[1].set_result(resp)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable and the like: the request times out

    async def ask(
        self,
        addr: tuple[str, int],
        version: str,
        community: bytes,
        pdu: int,
        oids: list[Oid],
        a: int,
        b: int,
        timeout_s: float,
    ) -> Response:
        transport = await self._open()
        request_id = next(self._ids) & 0x7FFFFFFF
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (addr, fut)
        junk = self._junk.get(addr, 0)
        try:
            transport.sendto(request(version, community, pdu, request_id, oids, a, b), addr)
            async with asyncio.timeout(timeout_s):
                resp = await fut
        except TimeoutError:
            raise SnmpTimeout(self._junk.get(addr, 0) > junk) from None
        finally:
            self._pending.pop(request_id, None)
            if not self._pending:
                self._junk.clear()
        if resp.community != community:
            raise Malformed("the answer carries another community")
        return resp


__all__ = [
    "END_OF_MIB_VIEW",
    "GET",
    "GETBULK",
    "GETNEXT",
    "NO_SUCH_INSTANCE",
    "NO_SUCH_OBJECT",
    "Client",
    "Malformed",
    "NoValue",
    "Response",
    "SnmpTimeout",
    "decode",
    "request",
]
