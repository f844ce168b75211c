"""A camera as the poller sees it: onvif-zeep-async behind a small async API whose errors are
ours (unreachable / auth refused / protocol), with every call under `asyncio.timeout`."""

import asyncio
import base64
import logging
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import zeep.exceptions
from lxml import etree

from services.errors import IocError, Unavailable

# onvif.client calls logging.basicConfig() when imported; keep the process's own logging setup.
_root = logging.getLogger()
_handlers, _level = list(_root.handlers), _root.level
import onvif  # noqa: E402
from onvif.client import ONVIFCamera, ONVIFService  # noqa: E402
from onvif.exceptions import ONVIFError  # noqa: E402

for _h in _root.handlers[len(_handlers) :]:
    _root.removeHandler(_h)
_root.setLevel(_level)
# Their DEBUG lines carry whole SOAP envelopes (digests, nonces) and snapshot URLs.
for _name in ("onvif", "zeep", "onvif.zeep_aiohttp"):
    logging.getLogger(_name).setLevel(logging.WARNING)

T = TypeVar("T")
EVENTS_NS = "http://www.onvif.org/ver10/events/wsdl"
PULLPOINT_NS = f"{EVENTS_NS}/PullPointSubscription"
# Below this the WS-Security timestamps need no correction (cameras accept a few minutes).
SKEW_COMPENSATE_S = 5.0
_AUTH_SUBCODES = ("NotAuthorized", "FailedAuthentication", "InvalidSecurity", "FailedCheck")
_AUTH_WORDS = ("not authorized", "unauthorized", "authority failure", "authentication", "sender not auth")


class CameraError(IocError):
    """A camera call failed; `kind` says how the poller should see it."""

    code = "camera"
    kind = "protocol"


class CameraUnreachable(CameraError, Unavailable):
    kind = "unreachable"


class CameraAuthError(CameraError):
    kind = "auth"


class CameraProtocolError(CameraError):
    """The camera answered, but not as ONVIF says (SOAP fault, malformed XML, missing service)."""

    kind = "protocol"


def _is_auth_fault(err: zeep.exceptions.Fault) -> bool:
    subcodes = [str(getattr(s, "localname", s)) for s in (err.subcodes or [])]
    text = f"{err.message or ''} {err.code or ''}".lower()
    return any(c.endswith(_AUTH_SUBCODES) for c in subcodes) or any(w in text for w in _AUTH_WORDS)


def translate(err: BaseException, what: str) -> CameraError:
    """Library and network errors as one of our three kinds (messages carry no credentials)."""
    if isinstance(err, CameraError):
        return err
    if isinstance(err, TimeoutError):
        return CameraUnreachable(f"{what}: no answer in time")
    if isinstance(err, zeep.exceptions.Fault):
        if _is_auth_fault(err):
            return CameraAuthError(f"{what}: credentials refused ({err.message})")
        return CameraProtocolError(f"{what}: SOAP fault: {err.message}")
    if isinstance(err, zeep.exceptions.TransportError):
        if err.status_code in (401, 403):
            return CameraAuthError(f"{what}: HTTP {err.status_code}")
        if "invalid XML" in str(err.message):
            return CameraProtocolError(f"{what}: malformed XML in reply (HTTP {err.status_code})")
        return CameraProtocolError(f"{what}: HTTP {err.status_code}")
    if isinstance(err, zeep.exceptions.XMLSyntaxError | zeep.exceptions.XMLParseError | etree.LxmlError):
        return CameraProtocolError(f"{what}: malformed XML in reply")
    if isinstance(err, aiohttp.ClientResponseError):
        return CameraProtocolError(f"{what}: HTTP {err.status}")
    if isinstance(err, aiohttp.ClientError | OSError):
        return CameraUnreachable(f"{what}: {type(err).__name__}")
    if isinstance(err, ONVIFError) and err.__cause__ is not None:
        return translate(err.__cause__, what)
    return CameraProtocolError(f"{what}: {type(err).__name__}: {err}")


def strip_credentials(url: str | None) -> str | None:
    """Cameras embed user:pass in stream URIs; they must never reach MQTT, the database or a log."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def rewrite_host(url: str | None, host: str, port: int | None) -> str | None:
    """Cameras behind NAT advertise their LAN address: point such URLs at the configured one.

    `port=None` keeps the advertised port (RTSP has its own forward); URLs that already name
    the configured host are kept as they are.
    """
    url = strip_credentials(url)
    if not url:
        return url
    parts = urlsplit(url)
    if parts.hostname is None or parts.hostname == host:
        return url
    netloc = f"[{host}]" if ":" in host else host
    p = port if port is not None else parts.port
    return urlunsplit(parts._replace(netloc=f"{netloc}:{p}" if p else netloc))


class _Camera(ONVIFCamera):
    """ONVIFCamera with a configurable device service path and NAT-safe XAddrs."""

    def __init__(self, host: str, port: int, user: str | None, passwd: str | None, path: str) -> None:
        super().__init__(host, port, user, passwd, no_cache=True)
        self.path = path

    def get_definition(self, name: str, port_type: str | None = None) -> tuple[str, str, str]:
        xaddr, wsdl, binding = super().get_definition(name, port_type)
        if name == "devicemgmt":
            # The library pins /onvif/device_service; the registry lets each camera name its own.
            xaddr = f"http://{self.host}:{self.port}{self.path}"
        return xaddr, wsdl, binding

    def rewrite_url(self, url: str | None) -> str | None:
        from onvif.util import normalize_url

        return rewrite_host(normalize_url(url), self.host, self.port)


_WSDLS = (
    ("devicemgmt.wsdl", "DeviceBinding", "device"),
    ("media.wsdl", "MediaBinding", "media"),
    ("events.wsdl", "EventBinding", "events"),
)
_wsdls_loaded = False
_wsdl_locks: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = (
    weakref.WeakKeyDictionary()
)


async def load_wsdls() -> None:
    """Parse the WSDLs once per process, one at a time.

    The library parses a WSDL on first use without a lock: a thousand cameras starting at once
    would each parse it in parallel (seconds of CPU each) and time out.
    """
    global _wsdls_loaded
    if _wsdls_loaded:
        return
    lock = _wsdl_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        if _wsdls_loaded:
            return
        for wsdl, binding, ns in _WSDLS:
            svc = ONVIFService(
                "http://127.0.0.1/",
                None,
                None,
                str(Path(onvif.__file__).parent / "wsdl" / wsdl),
                binding_name=f"{{http://www.onvif.org/ver10/{ns}/wsdl}}{binding}",
                no_cache=True,
            )
            try:
                await svc.setup()
            finally:
                await svc.close()
        _wsdls_loaded = True


@dataclass(frozen=True)
class Clock:
    offset_s: float
    rtt_ms: float
    camera_at: datetime


@dataclass(frozen=True)
class DeviceInfo:
    manufacturer: str | None
    model: str | None
    firmware: str | None
    serial: str | None
    hardware_id: str | None


@dataclass(frozen=True)
class Profile:
    token: str
    name: str | None
    encoding: str | None
    width: int | None
    height: int | None
    stream_uri: str | None = None
    snapshot_uri: str | None = None


@dataclass(frozen=True)
class Subscription:
    address: str
    expires_at: float  # monotonic


class CameraClient:
    """One camera's ONVIF session. Create, `await connect()`, call, `await close()`."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        username: str | None,
        password: str | None,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.timeout_s = timeout_s
        self._user, self._password = username, password
        self._cam: _Camera | None = None
        self.xaddrs: dict[str, str] = {}
        self.dt_diff_s: float | None = None
        self.subscription: Subscription | None = None

    def __repr__(self) -> str:  # never show the password, even in a traceback's locals
        return f"CameraClient({self.host}:{self.port}{self.path})"

    async def _call(self, what: str, aw: Awaitable[T], timeout_s: float | None = None) -> T:
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s):
                return await aw
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001  # every library/network failure becomes ours
            raise translate(err, what) from err

    async def _service(self, name: str) -> Any:
        """A service proxy. Not under the call timeout: building one is local work, and a
        timeout cancelling it half-way would leak its HTTP session."""
        await load_wsdls()
        cam = self.cam
        try:
            if name == "pullpoint":
                return await cam.create_pullpoint_service()
            if name == "subscription":
                return await cam.create_subscription_service("PullPointSubscription")
            return await cam.create_onvif_service(name)
        except Exception as err:  # noqa: BLE001  # "service not offered" and the like
            raise translate(err, f"{name} service") from err

    @property
    def cam(self) -> _Camera:
        if self._cam is None:
            raise CameraUnreachable("not connected")
        return self._cam

    @property
    def is_open(self) -> bool:
        return self._cam is not None

    @property
    def has_events(self) -> bool:
        return EVENTS_NS in self.xaddrs

    async def open(self) -> None:
        """A fresh library session (after close, or when the clock offset changed)."""
        await self.close()
        self._cam = _Camera(self.host, self.port, self._user, self._password, self.path)
        if self.dt_diff_s is not None:
            self._cam.dt_diff = timedelta(seconds=self.dt_diff_s)

    async def close(self) -> None:
        cam, self._cam, self.subscription = self._cam, None, None
        if cam is not None:
            try:
                await cam.close()
            except Exception:  # noqa: BLE001, S110  # closing sockets to a dead camera may fail
                pass

    async def clock(self) -> Clock:
        """GetSystemDateAndTime without credentials (PRE_AUTH): reachability, rtt, clock offset."""
        dm = await self._service("devicemgmt")
        t0 = time.time()
        try:
            res = await self._call("GetSystemDateAndTime", dm.authless_GetSystemDateAndTime())
        except CameraAuthError:
            # Some firmwares want credentials even for the PRE_AUTH calls (HTTP 401 or a fault).
            t0 = time.time()
            res = await self._call("GetSystemDateAndTime", dm.GetSystemDateAndTime())
        t1 = time.time()
        u = getattr(res, "UTCDateTime", None)
        if u is None:
            raise CameraProtocolError("GetSystemDateAndTime: no UTCDateTime")
        try:
            cam_at = datetime(
                u.Date.Year, u.Date.Month, u.Date.Day, u.Time.Hour, u.Time.Minute, u.Time.Second, tzinfo=UTC
            )
        except (TypeError, ValueError, AttributeError) as err:
            raise CameraProtocolError(f"GetSystemDateAndTime: bad date {u!r}") from err
        # The camera truncates to whole seconds: its true time is half a second later on average.
        offset = cam_at.timestamp() + 0.5 - (t0 + t1) / 2
        return Clock(round(offset, 1), round((t1 - t0) * 1000, 1), cam_at)

    async def compensate(self, offset_s: float) -> bool:
        """Sign WS-Security tokens in the camera's time; True when the session was rebuilt."""
        want = offset_s if abs(offset_s) >= SKEW_COMPENSATE_S else None
        have = self.dt_diff_s
        if want is None and have is None:
            return False
        if want is not None and have is not None and abs(want - have) < SKEW_COMPENSATE_S:
            return False
        self.dt_diff_s = want
        await self.open()
        return True

    async def device_info(self) -> DeviceInfo:
        dm = await self._service("devicemgmt")
        r = await self._call("GetDeviceInformation", dm.GetDeviceInformation())
        info = DeviceInfo(
            _s(r, "Manufacturer"),
            _s(r, "Model"),
            _s(r, "FirmwareVersion"),
            _s(r, "SerialNumber"),
            _s(r, "HardwareId"),
        )
        if info == DeviceInfo(None, None, None, None, None):
            # zeep recovers what it can from broken XML: an empty reply is a malformed one.
            raise CameraProtocolError("GetDeviceInformation: empty or malformed reply")
        return info

    async def discover_services(self) -> dict[str, str]:
        """XAddrs by namespace: GetServices, or GetCapabilities on older firmware."""
        cam = self.cam
        dm = await self._service("devicemgmt")
        xaddrs: dict[str, str] = {}
        try:
            services = await self._call("GetServices", dm.GetServices({"IncludeCapability": False}))
            for s in services or []:
                ns, x = getattr(s, "Namespace", None), getattr(s, "XAddr", None)
                if ns and x:
                    xaddrs[ns] = cam.rewrite_url(x) or x
        except CameraProtocolError:
            pass
        if not xaddrs:
            caps = await self._call("GetCapabilities", dm.GetCapabilities({"Category": "All"}))
            for name, ns in (
                ("Media", "http://www.onvif.org/ver10/media/wsdl"),
                ("Events", EVENTS_NS),
                ("Device", "http://www.onvif.org/ver10/device/wsdl"),
            ):
                c = getattr(caps, name, None)
                x = getattr(c, "XAddr", None) if c is not None else None
                if x:
                    xaddrs[ns] = cam.rewrite_url(x) or x
        cam.xaddrs = dict(xaddrs)
        self.xaddrs = xaddrs
        return xaddrs

    async def profiles(self) -> list[Profile]:
        """Media profiles with their RTSP stream and snapshot URIs (credentials stripped)."""
        media = await self._service("media")
        out = []
        for p in await self._call("GetProfiles", media.GetProfiles()) or []:
            token = getattr(p, "token", None)
            if not token:
                continue
            enc = getattr(p, "VideoEncoderConfiguration", None)
            res = getattr(enc, "Resolution", None) if enc is not None else None
            stream = snapshot = None
            try:
                r = await self._call(
                    "GetStreamUri",
                    media.GetStreamUri(
                        {
                            "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                            "ProfileToken": token,
                        }
                    ),
                )
                stream = rewrite_host(_s(r, "Uri"), self.host, None)
            except CameraProtocolError:
                pass
            try:
                r = await self._call("GetSnapshotUri", media.GetSnapshotUri({"ProfileToken": token}))
                snapshot = rewrite_host(_s(r, "Uri"), self.host, self.port)
            except CameraProtocolError:
                pass
            out.append(
                Profile(
                    token,
                    _s(p, "Name"),
                    _s(enc, "Encoding") if enc is not None else None,
                    getattr(res, "Width", None),
                    getattr(res, "Height", None),
                    stream,
                    snapshot,
                )
            )
        return out

    async def snapshot(self, uri: str) -> tuple[bytes, str]:
        """A JPEG and the HTTP auth scheme that got it: Digest, or Basic for firmware that only does that."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                async with http.get(
                    uri, middlewares=(aiohttp.DigestAuthMiddleware(self._user or "", self._password or ""),)
                ) as r:
                    body, status = await r.read(), r.status
                    challenge = r.headers.get("WWW-Authenticate", "")
                if status == 401 and challenge.lower().startswith("basic"):
                    basic = base64.b64encode(f"{self._user or ''}:{self._password or ''}".encode()).decode()
                    async with http.get(uri, headers={"Authorization": f"Basic {basic}"}) as r:
                        body, status = await r.read(), r.status
                    scheme = "basic"
                else:
                    scheme = "digest"
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001
                raise translate(err, "snapshot") from err
        if status in (401, 403):
            raise CameraAuthError(f"snapshot: HTTP {status}")
        if status >= 300:
            raise CameraProtocolError(f"snapshot: HTTP {status}")
        return body, scheme

    # -- PullPoint events --------------------------------------------------------------------

    async def subscribe(self, ttl_s: float) -> Subscription:
        cam = self.cam
        events = await self._service("events")
        r = await self._call(
            "CreatePullPointSubscription",
            events.CreatePullPointSubscription({"InitialTerminationTime": f"PT{int(ttl_s)}S"}),
        )
        ref = getattr(r, "SubscriptionReference", None)
        addr = getattr(getattr(ref, "Address", None), "_value_1", None)
        if not addr:
            raise CameraProtocolError("CreatePullPointSubscription: no subscription address")
        cam.xaddrs[PULLPOINT_NS] = cam.rewrite_url(addr) or addr
        self.subscription = Subscription(cam.xaddrs[PULLPOINT_NS], _expiry(r, ttl_s))
        return self.subscription

    async def pull(self, wait_s: float, limit: int = 100) -> list[Any]:
        """PullMessages, waiting up to `wait_s` on the camera for something to happen."""
        pp = await self._service("pullpoint")
        r = await self._call(
            "PullMessages",
            pp.PullMessages({"Timeout": timedelta(seconds=wait_s), "MessageLimit": limit}),
            wait_s + self.timeout_s,
        )
        return list(getattr(r, "NotificationMessage", None) or [])

    async def renew(self, ttl_s: float) -> None:
        sub = await self._service("subscription")
        r = await self._call("Renew", sub.Renew(f"PT{int(ttl_s)}S"))
        if self.subscription is not None:
            self.subscription = Subscription(self.subscription.address, _expiry(r, ttl_s))

    async def unsubscribe(self) -> None:
        if self.subscription is None or self._cam is None:
            return
        try:
            sub = await self._service("subscription")
            await self._call("Unsubscribe", sub.Unsubscribe())
        except CameraError:
            pass  # a courtesy: the camera drops it at its termination time anyway
        self.subscription = None


def _s(obj: Any, name: str) -> str | None:
    v = getattr(obj, name, None) if obj is not None else None
    return str(v) if v is not None else None


def _expiry(reply: Any, ttl_s: float) -> float:
    """When a subscription ends, in our monotonic clock (camera times are in the camera's clock)."""
    cur, term = getattr(reply, "CurrentTime", None), getattr(reply, "TerminationTime", None)
    left = ttl_s
    if isinstance(cur, datetime) and isinstance(term, datetime):
        try:
            left = (term - cur).total_seconds()
        except TypeError:
            pass
    return time.monotonic() + max(left, 1.0)


__all__ = [
    "CameraClient",
    "CameraError",
    "CameraUnreachable",
    "CameraAuthError",
    "CameraProtocolError",
    "Clock",
    "DeviceInfo",
    "Profile",
    "onvif",
]
