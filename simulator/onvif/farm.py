"""Many simulated cameras behind one HTTP port, routed by path: `/onvif/{device_id}/...`."""

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from simulator.onvif import soap
from simulator.onvif.camera import Camera, SoapFault, Unauthorized
from simulator.onvif.discovery import DiscoveryResponder

log = logging.getLogger(__name__)

SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
REALM = "onvif-sim"
# A 1x1 grey JPEG: enough for a client to check that a snapshot is an image.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////"
    "////////////////////////////2wBDAf//////////////////////////////////////////////////////////"
    "////////////////////////////wAARCAABAAEDASIAAhEBAxEB/8QAFAABAAAAAAAAAAAAAAAAAAAAA//EABQQAQAAAAAA"
    "AAAAAAAAAAAAAAD/xAAUAQEAAAAAAAAAAAAAAAAAAAAA/8QAFBEBAAAAAAAAAAAAAAAAAAAAAP/aAAwDAQACEQMRAD8AH//Z"
)
_DIGEST_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class CameraSpec:
    device_id: str
    username: str
    password: str
    faults: frozenset[str] = frozenset()
    clock_offset_s: float = 0.0


class CameraFarm:
    """Serve every camera of `specs` on one port; `async with CameraFarm(specs) as farm: farm.port`.

    `slow_s` is the delay of the "slow" fault; `discovery` also answers WS-Discovery probes
    (unicast on `discovery_port`, and multicast 239.255.255.250:3702 on `host`'s interface).
    `sock` is a listening socket to serve on instead of binding `host:port` (no window in
    which another program can take a port already written into a registry).
    `off_air(device_id)` says whether a camera is cut off right now (its router lost power):
    such a camera resets every connection and answers no discovery probe, as an unpowered
    network does, until `off_air` says otherwise.
    """

    def __init__(
        self,
        specs: Iterable[CameraSpec],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        slow_s: float = 2.0,
        discovery: bool = True,
        multicast: bool = True,
        sock: socket.socket | None = None,
        off_air: Callable[[str], bool] | None = None,
    ) -> None:
        self.host, self._want_port = host, port
        self.off_air = off_air or (lambda _device_id: False)
        self._sock = sock
        self.slow_s = slow_s
        self.cameras: dict[str, Camera] = {}
        for s in specs:
            self.cameras[s.device_id] = Camera(
                s.device_id, s.username, s.password, s.faults, s.clock_offset_s
            )
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._discovery = DiscoveryResponder(self, multicast=multicast) if discovery else None
        self._nonces: set[str] = set()

    @property
    def discovery_port(self) -> int:
        """The unicast UDP port that answers WS-Discovery probes (0 when disabled)."""
        return self._discovery.port if self._discovery else 0

    def url(self, device_id: str) -> str:
        return f"http://{self.host}:{self.port}/onvif/{device_id}/device_service"

    def set_faults(self, device_id: str, faults: Iterable[str]) -> None:
        """Change a camera's behaviour at run time (events for tamper etc. are raised)."""
        self.cameras[device_id].set_faults(frozenset(faults))

    async def __aenter__(self) -> "CameraFarm":
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_post("/onvif/{device_id}/subscription/{sub_id}", self._soap)
        app.router.add_post("/onvif/{device_id}/{service}", self._soap)
        app.router.add_get("/onvif/{device_id}/snapshot.jpg", self._snapshot)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site: web.BaseSite
        if self._sock is not None:
            site = web.SockSite(self._runner, self._sock, backlog=4096)
        else:
            site = web.TCPSite(self._runner, self.host, self._want_port, backlog=4096, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        if self._discovery:
            await self._discovery.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._discovery:
            self._discovery.close()
        for cam in self.cameras.values():
            for sub in cam.subscriptions.values():
                sub.wake.set()
        if self._runner:
            await self._runner.cleanup()

    # -- HTTP --------------------------------------------------------------------------------

    async def _misbehave(self, request: web.Request, cam: Camera) -> None:
        cam.requests += 1
        if self.off_air(cam.device_id):
            _drop(request)
        if "hang" in cam.faults:
            await asyncio.sleep(3600)
        if "down" in cam.faults:
            _drop(request)
        if "slow" in cam.faults:
            await asyncio.sleep(self.slow_s)

    async def _soap(self, request: web.Request) -> web.StreamResponse:
        cam = self.cameras.get(request.match_info["device_id"])
        service = request.match_info.get("service", "subscription").removesuffix("_service")
        if cam is None or service not in ("device", "media", "events", "subscription"):
            raise web.HTTPNotFound()
        await self._misbehave(request, cam)
        if service in ("events", "subscription") and "no_events" in cam.faults:
            raise web.HTTPNotFound()
        sub_id = int(request.match_info["sub_id"]) if "sub_id" in request.match_info else None
        raw = await request.read()
        try:
            req = soap.Request(raw)
        except (ValueError, SyntaxError) as err:
            return self._fault(cam, SoapFault("ter:WellFormed", f"not a SOAP request: {err}"))
        try:
            body = await cam.call(service, req, request.host, sub_id)
        except Unauthorized:
            return web.Response(
                status=401,
                headers={
                    "WWW-Authenticate": f'Digest realm="{REALM}", qop="auth", nonce="{secrets.token_hex(16)}"'
                },
            )
        except SoapFault as err:
            return self._fault(cam, err)
        except ConnectionAbortedError:
            _drop(request)
        if self.off_air(cam.device_id):
            # cut off while a long PullMessages waited: that reply never leaves the camera
            _drop(request)
        if "malformed_xml" in cam.faults and req.operation in ("GetDeviceInformation", "GetProfiles"):
            # Firmware that cuts its reply short mid-element, or sends junk that is not XML at all.
            raw = soap.envelope(body)
            junk = raw[: raw.index(b"<s:Body>") + 20] if req.operation == "GetDeviceInformation" else b""
            return web.Response(body=junk + b"\x00\xff\xfe<<", headers={"Content-Type": SOAP_CONTENT_TYPE})
        return web.Response(body=soap.envelope(body), headers={"Content-Type": SOAP_CONTENT_TYPE})

    @staticmethod
    def _fault(cam: Camera, err: SoapFault) -> web.Response:
        status = 200 if "soap_fault_200" in cam.faults else err.status
        return web.Response(
            status=status,
            body=soap.fault(err.subcode, err.reason),
            headers={"Content-Type": SOAP_CONTENT_TYPE},
        )

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        cam = self.cameras.get(request.match_info["device_id"])
        if cam is None:
            raise web.HTTPNotFound()
        await self._misbehave(request, cam)
        auth = request.headers.get("Authorization", "")
        if "basic_only_snapshot" in cam.faults:
            ok = auth.startswith("Basic ") and _basic_ok(auth, cam)
            challenge = f'Basic realm="{REALM}"'
        else:
            ok = auth.startswith("Digest ") and self._digest_ok(auth, cam, request.method)
            nonce = secrets.token_hex(16)
            self._nonces.add(nonce)
            challenge = f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", algorithm=MD5'
        if not ok or "auth_fail" in cam.faults:
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return web.Response(body=JPEG, content_type="image/jpeg")

    def _digest_ok(self, header: str, cam: Camera, method: str) -> bool:
        p = {m[0]: m[1] or m[2] for m in _DIGEST_PARAM.findall(header[7:])}
        if p.get("username") != cam.username or p.get("nonce") not in self._nonces:
            return False
        ha1 = _md5(f"{cam.username}:{p.get('realm', '')}:{cam.password}")
        ha2 = _md5(f"{method}:{p.get('uri', '')}")
        if p.get("qop"):
            want = _md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p['qop']}:{ha2}")
        else:
            want = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        return secrets.compare_digest(want, p.get("response", ""))


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()  # noqa: S324  # HTTP Digest (RFC 7616) is MD5


def _basic_ok(header: str, cam: Camera) -> bool:
    try:
        user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return secrets.compare_digest(user, cam.username) and secrets.compare_digest(pw, cam.password)


def _drop(request: web.Request) -> None:
    """Close the connection without a reply, as an unplugged camera (or a reboot) does."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # RST instead of FIN: the client fails at once rather than on its read timeout.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        transport.abort()
    raise web.HTTPServiceUnavailable()
