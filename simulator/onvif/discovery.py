"""WS-Discovery (ONVIF profile) responder: answers Probe with one ProbeMatches per camera."""

import asyncio
import logging
import socket
import struct
import uuid
from typing import TYPE_CHECKING, Any

from lxml import etree

if TYPE_CHECKING:
    from simulator.onvif.farm import CameraFarm

log = logging.getLogger(__name__)

MULTICAST_GROUP = "239.255.255.250"
PORT = 3702
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "dn": "http://www.onvif.org/ver10/network/wsdl",
}
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"


def endpoint_uuid(device_id: str) -> str:
    """A stable endpoint reference per camera, as a real device keeps across reboots."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'commune-ioc-sim:' + device_id)}"


def probe_match(relates_to: str, device_id: str, xaddr: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" '
        f'xmlns:d="{NS["d"]}" xmlns:dn="{NS["dn"]}" xmlns:tds="http://www.onvif.org/ver10/device/wsdl">'
        f"<s:Header><a:Action>{NS['d']}/ProbeMatches</a:Action><a:MessageID>uuid:{uuid.uuid4()}"
        f"</a:MessageID><a:RelatesTo>{relates_to}</a:RelatesTo><a:To>{_ANONYMOUS}</a:To></s:Header>"
        f"<s:Body><d:ProbeMatches><d:ProbeMatch><a:EndpointReference><a:Address>{endpoint_uuid(device_id)}"
        "</a:Address></a:EndpointReference><d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
        "<d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/Profile/Streaming "
        f"onvif://www.onvif.org/name/{device_id} onvif://www.onvif.org/hardware/SimCam_1080p "
        "onvif://www.onvif.org/location/country/vietnam</d:Scopes>"
        f"<d:XAddrs>{xaddr}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch>"
        "</d:ProbeMatches></s:Body></s:Envelope>"
    ).encode()


def parse_probe(data: bytes) -> str | None:
    """The MessageID of an ONVIF-relevant Probe, or None when it is not one."""
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    probe = root.find("s:Body/d:Probe", NS)
    if probe is None:
        return None
    types = (probe.findtext("d:Types", default="", namespaces=NS) or "").split()
    if types and not any(t.endswith(("NetworkVideoTransmitter", "Device")) for t in types):
        return None
    return root.findtext("s:Header/a:MessageID", default="", namespaces=NS) or ""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, responder: "DiscoveryResponder") -> None:
        self.responder = responder

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.responder.answer(data, addr)


class DiscoveryResponder:
    def __init__(self, farm: "CameraFarm", *, multicast: bool = True) -> None:
        self.farm = farm
        self.multicast = multicast
        self.port = 0
        self._transports: list[asyncio.DatagramTransport] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        uni = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        uni.bind((self.farm.host, 0))
        self.port = uni.getsockname()[1]
        t, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=uni)
        self._transports.append(t)
        if not self.multicast:
            return
        try:
            mc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            mc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            mc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            mc.bind(("", PORT))
            iface = socket.inet_aton(self.farm.host if self.farm.host != "0.0.0.0" else "0.0.0.0")  # noqa: S104
            mc.setsockopt(
                socket.IPPROTO_IP,
                socket.IP_ADD_MEMBERSHIP,
                struct.pack("4s4s", socket.inet_aton(MULTICAST_GROUP), iface),
            )
        except OSError as err:
            # Another program may hold 3702 without SO_REUSEPORT; unicast probes still work.
            log.warning("WS-Discovery multicast unavailable on %s: %s", self.farm.host, err)
            mc.close()
            return
        t, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=mc)
        self._transports.append(t)

    def answer(self, data: bytes, addr: Any) -> None:
        relates_to = parse_probe(data)
        if relates_to is None or not self._transports:
            return
        out = self._transports[0]
        host = f"{self.farm.host}:{self.farm.port}"
        for cam in self.farm.cameras.values():
            if "down" in cam.faults or "hang" in cam.faults or self.farm.off_air(cam.device_id):
                continue
            out.sendto(probe_match(relates_to, cam.device_id, f"{cam.base(host)}/device_service"), addr)

    def close(self) -> None:
        for t in self._transports:
            t.close()
        self._transports.clear()
