"""SNMP agents for simulated devices, one loopback UDP port each: v1/v2c through pysnmp's message
layer (`Agent`), v3 authNoPriv and authPriv through pysnmp's engine and command responder (`V3Agent`).

Each agent answers GET, GETNEXT and GETBULK from a table built at every request from the device's
readings: system group (sysDescr with the firmware, sysUpTime advancing from the last boot), the
IF-MIB table and ifXTable (an uplink `eth0` and a radio `wlan0`, octet counters growing with the
simulated traffic, 32-bit ones wrapping), and for Wi-Fi points UniFi's per-VAP client count
(unifiVapNumStations, services/profiles/unifi.yaml). A wrong community or a device off the air
gets no answer at all, as a real agent gives.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import socket
from collections.abc import Callable
from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.proto import api, rfc1902, rfc1905

log = logging.getLogger(__name__)

Oid = tuple[int, ...]
SYS = (1, 3, 6, 1, 2, 1, 1)
IF_TABLE = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_TABLE = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
UNIFI_VAP_STATIONS = (1, 3, 6, 1, 4, 1, 41112, 1, 6, 1, 2, 1, 8)
ENTERPRISE = {"wifi": (1, 3, 6, 1, 4, 1, 41112), "gateway": (1, 3, 6, 1, 4, 1, 14988)}


def table(device_id: str, kind: str, readings: dict[str, Any], uptime_s: int) -> list[tuple[Oid, Any]]:
    """The agent's MIB view now, sorted by OID."""
    firmware = readings.get("firmware", "1.0")
    descr = f"UniFi UAP-AC-Lite {firmware}" if kind == "wifi" else f"RouterOS RB951Ui-2HnD {firmware}"
    rx, tx = int(readings.get("rx_bytes", 0)), int(readings.get("tx_bytes", 0))
    up = readings.get("uplink_up", True) is not False
    rows: list[tuple[Oid, Any]] = [
        ((*SYS, 1, 0), rfc1902.OctetString(descr)),
        ((*SYS, 2, 0), univ.ObjectIdentifier(ENTERPRISE.get(kind, (1, 3, 6, 1, 4, 1, 8072)))),
        ((*SYS, 3, 0), rfc1902.TimeTicks(uptime_s * 100 % 2**32)),
        ((*SYS, 5, 0), rfc1902.OctetString(device_id)),
        ((1, 3, 6, 1, 2, 1, 2, 1, 0), rfc1902.Integer32(2)),
    ]
    ifs = ((1, "eth0", 6, up, rx, tx), (2, "wlan0", 71, True, tx // 2, rx // 2))
    for col, value in (
        (1, lambda i: rfc1902.Integer32(i[0])),
        (2, lambda i: rfc1902.OctetString(i[1])),
        (3, lambda i: rfc1902.Integer32(i[2])),
        (8, lambda i: rfc1902.Integer32(1 if i[3] else 2)),
        (10, lambda i: rfc1902.Counter32(i[4] % 2**32)),
        (16, lambda i: rfc1902.Counter32(i[5] % 2**32)),
    ):
        rows += [((*IF_TABLE, col, i[0]), value(i)) for i in ifs]
    for col, value in (
        (1, lambda i: rfc1902.OctetString(i[1])),
        (6, lambda i: rfc1902.Counter64(i[4] % 2**64)),
        (10, lambda i: rfc1902.Counter64(i[5] % 2**64)),
    ):
        rows += [((*IFX_TABLE, col, i[0]), value(i)) for i in ifs]
    if kind == "wifi":
        clients = int(readings.get("clients", 0))
        # two VAPs (2.4 GHz and 5 GHz of one SSID), as the UniFi MIB shows them
        rows += [
            ((*UNIFI_VAP_STATIONS, 0), rfc1902.Integer32(clients // 3)),
            ((*UNIFI_VAP_STATIONS, 1), rfc1902.Integer32(clients - clients // 3)),
        ]
    rows.sort(key=lambda r: r[0])
    return rows


class Agent(asyncio.DatagramProtocol):
    """One device's agent. `view()` gives the table now, or None while the device is off the air."""

    def __init__(self, community: str, view: Callable[[], list[tuple[Oid, Any]] | None]) -> None:
        self.community = community.encode()
        self.view = view
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            reply = self.answer(data)
        except (PyAsn1Error, ValueError, KeyError, IndexError) as err:
            log.debug("snmp agent: dropped a malformed request: %s", err)
            return
        if reply is not None and self.transport is not None:
            self.answered += 1
            self.transport.sendto(reply, addr)

    def answer(self, data: bytes) -> bytes | None:
        version = int(api.decodeMessageVersion(data))
        if version not in api.PROTOCOL_MODULES:
            return None
        p = api.PROTOCOL_MODULES[version]
        msg, _ = decoder.decode(data, asn1Spec=p.Message())
        if bytes(p.apiMessage.get_community(msg)) != self.community:
            return None  # a real agent says nothing to a wrong community
        rows = self.view()
        if rows is None:
            return None  # off the air
        v2 = version == api.SNMP_VERSION_2C
        if not v2:  # SNMPv1 has no Counter64: a v1 agent skips those objects, as net-snmp does
            rows = [r for r in rows if not isinstance(r[1], rfc1902.Counter64)]
        oids = [r[0] for r in rows]
        req = p.apiMessage.get_pdu(msg)
        rsp_msg = p.apiMessage.get_response(msg)
        rsp = p.apiMessage.get_pdu(rsp_msg)
        asked = [tuple(o) for o, _ in p.apiPDU.get_varbinds(req)]
        out: list[tuple[Any, Any]] = []

        def after(oid: Oid) -> tuple[Oid, Any] | None:
            i = bisect.bisect_right(oids, oid)
            return rows[i] if i < len(rows) else None

        def none(oid: Oid, exc: Any) -> tuple[Any, Any]:
            return univ.ObjectIdentifier(oid), exc

        if req.isSameTypeWith(p.GetRequestPDU()):
            values = dict(rows)
            for oid in asked:
                if oid in values:
                    out.append((univ.ObjectIdentifier(oid), values[oid]))
                elif v2:
                    out.append(
                        none(oid, rfc1905.noSuchInstance if _under(oid, oids) else rfc1905.noSuchObject)
                    )
                else:
                    p.apiPDU.set_error_status(rsp, 2)  # noSuchName
                    p.apiPDU.set_error_index(rsp, asked.index(oid) + 1)
                    out = [(univ.ObjectIdentifier(o), univ.Null("")) for o in asked]
                    break
        elif req.isSameTypeWith(p.GetNextRequestPDU()):
            for oid in asked:
                nxt = after(oid)
                if nxt is not None:
                    out.append((univ.ObjectIdentifier(nxt[0]), nxt[1]))
                elif v2:
                    out.append(none(oid, rfc1905.endOfMibView))
                else:
                    p.apiPDU.set_error_status(rsp, 2)
                    p.apiPDU.set_error_index(rsp, asked.index(oid) + 1)
                    out = [(univ.ObjectIdentifier(o), univ.Null("")) for o in asked]
                    break
        elif v2 and req.isSameTypeWith(p.GetBulkRequestPDU()):
            non_rep = int(p.apiBulkPDU.get_non_repeaters(req))
            max_rep = min(int(p.apiBulkPDU.get_max_repetitions(req)), 50)
            for oid in asked[:non_rep]:
                nxt = after(oid)
                out.append(
                    (univ.ObjectIdentifier(nxt[0]), nxt[1]) if nxt else none(oid, rfc1905.endOfMibView)
                )
            cursors = asked[non_rep:]
            for _ in range(max_rep if cursors else 0):
                row = []
                for k, oid in enumerate(cursors):
                    nxt = after(oid)
                    if nxt is None:
                        row.append(none(oid, rfc1905.endOfMibView))
                    else:
                        row.append((univ.ObjectIdentifier(nxt[0]), nxt[1]))
                        cursors[k] = nxt[0]
                out += row
                if all(after(c) is None for c in cursors):
                    break
        else:
            return None  # SET and anything else: read-only agent
        p.apiPDU.set_varbinds(rsp, out)
        return bytes(encoder.encode(rsp_msg))


def _under(oid: Oid, oids: list[Oid]) -> bool:
    """Whether `oid` names an instance of an object the agent has (v2c: noSuchInstance)."""
    return any(o[:-1] == oid[:-1] for o in oids)


async def serve(sock: socket.socket | None, port: int, agent: Agent) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    if sock is not None:
        transport, _ = await loop.create_datagram_endpoint(lambda: agent, sock=sock)
    else:
        transport, _ = await loop.create_datagram_endpoint(lambda: agent, local_addr=("127.0.0.1", port))
    return transport


# -- SNMP v3 (USM): pysnmp's own command responder over the same tables ----------------------

V3_AUTH = {"md5": "USM_AUTH_HMAC96_MD5", "sha": "USM_AUTH_HMAC96_SHA", "sha256": "USM_AUTH_HMAC192_SHA256"}
V3_PRIV = {"des": "USM_PRIV_CBC56_DES", "aes": "USM_PRIV_CFB128_AES", "aes256": "USM_PRIV_CFB256_AES"}


class _TableInstrum:
    """pysnmp's MIB instrumentation read from a device's table (GET and GETNEXT; GETBULK is
    GETNEXT repeated by pysnmp's responder). Read-only."""

    def __init__(self, view: Callable[[], list[tuple[Oid, Any]] | None]) -> None:
        self.view = view

    def read_variables(self, *var_binds: Any, **_context: Any) -> list[tuple[Any, Any]]:
        rows = self.view() or []
        values, oids = dict(rows), [r[0] for r in rows]
        out = []
        for oid, _value in var_binds:
            t = tuple(oid)
            if t in values:
                out.append((univ.ObjectIdentifier(t), values[t]))
            else:
                out.append((oid, rfc1905.noSuchInstance if _under(t, oids) else rfc1905.noSuchObject))
        return out

    def read_next_variables(self, *var_binds: Any, **_context: Any) -> list[tuple[Any, Any]]:
        rows = self.view() or []
        oids = [r[0] for r in rows]
        out = []
        for oid, _value in var_binds:
            i = bisect.bisect_right(oids, tuple(oid))
            out.append(
                (univ.ObjectIdentifier(rows[i][0]), rows[i][1])
                if i < len(rows)
                else (oid, rfc1905.endOfMibView)
            )
        return out

    def write_variables(self, *var_binds: Any, **_context: Any) -> list[tuple[Any, Any]]:
        from pysnmp.smi import error

        raise error.NotWritableError(idx=0)


class V3Agent:
    """One device's SNMP v3 agent: one USM user (authNoPriv without `priv`, else authPriv) and
    read-only access to the device's table. pysnmp's engine does USM (keys, digests, privacy,
    engine discovery) as a real agent would; while `view()` is None (off the air) every datagram
    is dropped before it, so the agent is silent, as an unpowered one."""

    def __init__(
        self,
        user: str,
        auth: str,
        auth_key: str,
        priv: str | None,
        priv_key: str | None,
        view: Callable[[], list[tuple[Oid, Any]] | None],
    ) -> None:
        from pysnmp.entity import config, engine
        from pysnmp.entity.rfc3413 import cmdrsp, context

        self.engine = engine.SnmpEngine()
        self.view = view
        if priv:
            config.add_v3_user(
                self.engine,
                user,
                getattr(config, V3_AUTH[auth]),
                auth_key,
                getattr(config, V3_PRIV[priv]),
                priv_key,
            )
        else:
            config.add_v3_user(self.engine, user, getattr(config, V3_AUTH[auth]), auth_key)
        config.add_vacm_user(self.engine, 3, user, "authPriv" if priv else "authNoPriv", (1, 3, 6), ())
        ctx = context.SnmpContext(self.engine)
        # the default context reads the device's table (pysnmp's own MIB instrumentation of the
        # engine stays for its USM and VACM tables)
        ctx.unregister_context_name(b"")
        ctx.register_context_name(b"", _TableInstrum(view))  # type: ignore[arg-type]
        for responder in (
            cmdrsp.GetCommandResponder,
            cmdrsp.NextCommandResponder,
            cmdrsp.BulkCommandResponder,
        ):
            responder(self.engine, ctx)
        dispatcher = self.engine.message_dispatcher
        inner = dispatcher.receive_message

        def receive(snmp_engine: Any, domain: Any, address: Any, whole: bytes) -> Any:
            if self.view() is None:
                return None  # off the air
            return inner(snmp_engine, domain, address, whole)

        dispatcher.receive_message = receive  # type: ignore[method-assign]
        self._transport: Any = None

    async def serve(self, sock: socket.socket | None, port: int) -> None:
        from pysnmp.carrier.asyncio.dgram import udp
        from pysnmp.entity import config

        t = udp.UdpTransport()
        self._transport = (
            t.open_server_mode(("127.0.0.1", port), sock=sock)
            if sock
            else t.open_server_mode(("127.0.0.1", port))
        )
        # the engine's dispatcher runs on the event loop that is already running
        config.add_transport(self.engine, udp.DOMAIN_NAME, self._transport)

    def close(self) -> None:
        self.engine.close_dispatcher()
