"""WS-Discovery Probe for ONVIF devices (UDP multicast 239.255.255.250:3702, or unicast)."""

import asyncio
import socket
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from lxml import etree

MULTICAST_GROUP = "239.255.255.250"
PORT = 3702
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "dn": "http://www.onvif.org/ver10/network/wsdl",
}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@dataclass(frozen=True)
class Found:
    """One device that answered: its endpoint reference, service addresses and scopes."""

    endpoint: str
    xaddrs: tuple[str, ...]
    scopes: tuple[str, ...]
    types: tuple[str, ...]

    @property
    def xaddr(self) -> str | None:
        """The device service address to register (the first http one)."""
        return next((x for x in self.xaddrs if x.startswith(("http://", "https://"))), None)

    def _scope(self, kind: str) -> str | None:
        prefix = f"onvif://www.onvif.org/{kind}/"
        v = next((s[len(prefix) :] for s in self.scopes if s.startswith(prefix)), None)
        return unquote(v) if v else None

    @property
    def name(self) -> str | None:
        return self._scope("name")

    @property
    def hardware(self) -> str | None:
        return self._scope("hardware")

    @property
    def location(self) -> tuple[str, int, str] | None:
        """(host, port, path) of the device service."""
        if not self.xaddr:
            return None
        u = urlsplit(self.xaddr)
        if not u.hostname:
            return None
        return u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path or "/onvif/device_service"


def probe_message(message_id: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" '
        f'xmlns:d="{NS["d"]}" xmlns:dn="{NS["dn"]}"><s:Header>'
        f'<a:Action s:mustUnderstand="1">{NS["d"]}/Probe</a:Action><a:MessageID>{message_id}</a:MessageID>'
        f"<a:ReplyTo><a:Address>{NS['a']}/role/anonymous</a:Address></a:ReplyTo>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>'
        "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>"
    ).encode()


def parse_matches(data: bytes, message_id: str) -> list[Found]:
    """The ProbeMatch entries of a reply to our probe (anything else: empty)."""
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError:
        return []
    if root is None:
        return []
    relates = root.findtext("s:Header/a:RelatesTo", default="", namespaces=NS).strip()
    if relates and relates != message_id:
        return []
    out = []
    for m in root.iterfind("s:Body/d:ProbeMatches/d:ProbeMatch", NS):
        endpoint = (m.findtext("a:EndpointReference/a:Address", default="", namespaces=NS) or "").strip()
        out.append(
            Found(
                endpoint,
                tuple((m.findtext("d:XAddrs", default="", namespaces=NS) or "").split()),
                tuple((m.findtext("d:Scopes", default="", namespaces=NS) or "").split()),
                tuple((m.findtext("d:Types", default="", namespaces=NS) or "").split()),
            )
        )
    return out


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.found: dict[str, Found] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        for f in parse_matches(data, self.message_id):
            self.found.setdefault(f.endpoint or (f.xaddr or ""), f)


async def probe(
    *, interface: str | None = None, address: tuple[str, int] | None = None, timeout_s: float = 3.0
) -> list[Found]:
    """Send a Probe (multicast from `interface`, or unicast to `address`) and collect answers."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # A thousand cameras answer at once: give their datagrams room.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((interface or "0.0.0.0", 0))  # noqa: S104
    if interface and address is None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    message_id = f"uuid:{uuid.uuid4()}"
    transport, proto = await loop.create_datagram_endpoint(lambda: _Collector(message_id), sock=sock)
    try:
        target = address or (MULTICAST_GROUP, PORT)
        msg = probe_message(message_id)
        # UDP may drop a datagram; WS-Discovery repeats the probe (answers are deduplicated).
        for _ in range(2):
            transport.sendto(msg, target)
            await asyncio.sleep(min(0.1, timeout_s / 10))
        await asyncio.sleep(max(timeout_s - 0.2, 0.1))
    finally:
        transport.close()
    return sorted(proto.found.values(), key=lambda f: (f.xaddr or "", f.endpoint))
