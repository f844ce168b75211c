"""One simulated ONVIF camera: its services, its faults, its events."""

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from simulator.onvif import soap
from simulator.onvif.soap import text, xml_time

# "clock_skew" puts the camera's clock this far ahead: cameras that lost their RTC battery
# often come back years off.
CLOCK_SKEW_S = 3 * 365 * 86400.0
# Faults a camera understands; anything else in `faults` is ignored.
FAULTS = frozenset(
    {
        "down",
        "slow",
        "hang",
        "clock_skew",
        "auth_fail",
        "no_events",
        "soap_fault_200",
        "malformed_xml",
        "preauth_401",
        "nat_xaddrs",
        "basic_only_snapshot",
        "no_getservices",
        "uri_credentials",
        "tamper",
        "image_too_dark",
        "motion",
        "signal_loss",
        "storage_failure",
        "not_recording",
    }
)
PRE_AUTH = frozenset(
    {
        "GetSystemDateAndTime",
        "GetServices",
        "GetCapabilities",
        "GetWsdlUrl",
        "GetServiceCapabilities",
        "GetHostname",
        "GetEndpointReference",
    }
)
# The address a camera behind NAT believes it has.
LAN_HOSTPORT = "192.168.1.64:80"
# signal -> (topic, source item, data item); values are true/false except recording.
TOPICS = {
    "tamper": ("tns1:VideoSource/GlobalSceneChange/ImagingService", "Source", "State"),
    "image_too_dark": ("tns1:VideoSource/ImageTooDark/ImagingService", "Source", "State"),
    "motion": ("tns1:VideoSource/MotionAlarm", "Source", "State"),
    "signal_loss": ("tns1:VideoSource/SignalLoss", "Source", "State"),
    "storage_failure": ("tns1:Device/HardwareFailure/StorageFailure", "Token", "Failed"),
    "recording": ("tns1:RecordingConfig/JobState", "RecordingJobToken", "State"),
}
SIGNALS = ("tamper", "image_too_dark", "motion", "signal_loss", "storage_failure")
MAX_SUBSCRIPTIONS = 8
PROFILES = (("main", 1920, 1080, 4096), ("sub", 640, 360, 512))
_sub_ids = itertools.count(1)


class SoapFault(Exception):
    def __init__(self, subcode: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.subcode, self.reason, self.status = subcode, reason, status


class Unauthorized(Exception):
    """HTTP 401 with no SOAP body (cameras that want credentials even for pre-auth calls)."""


@dataclass
class Subscription:
    id: int
    expires: float
    queue: list[str] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Camera:
    """State and SOAP operations of one simulated camera."""

    def __init__(
        self, device_id: str, username: str, password: str, faults: frozenset[str], clock_offset_s: float
    ) -> None:
        self.device_id, self.username, self.password = device_id, username, password
        self.base_offset_s = clock_offset_s
        self.faults: frozenset[str] = frozenset()
        self.subscriptions: dict[int, Subscription] = {}
        self.requests = 0
        self.set_faults(faults)

    # -- state -------------------------------------------------------------------------------

    @property
    def clock_offset_s(self) -> float:
        return self.base_offset_s + (CLOCK_SKEW_S if "clock_skew" in self.faults else 0.0)

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)

    def signal(self, name: str) -> bool:
        return name in self.faults

    def recording_state(self, faults: frozenset[str] | None = None) -> str:
        f = self.faults if faults is None else faults
        return "Idle" if "storage_failure" in f or "not_recording" in f else "Active"

    def set_faults(self, faults: frozenset[str] | set[str]) -> None:
        new = frozenset(faults)
        old = self.faults
        self.faults = new
        if "down" in new and "down" not in old:
            # A camera that goes away loses its subscriptions, like a reboot.
            for sub in self.subscriptions.values():
                sub.wake.set()
            self.subscriptions.clear()
            return
        for name in SIGNALS:
            if (name in new) != (name in old):
                self._notify(name, "true" if name in new else "false", "Changed")
        if self.recording_state(new) != self.recording_state(old):
            self._notify("recording", self.recording_state(new), "Changed")

    def _notify(
        self, signal: str, value: str, operation: str, subs: list[Subscription] | None = None
    ) -> None:
        if "no_events" in self.faults:
            return
        topic, source_item, data_item = TOPICS[signal]
        source = "rec-1" if signal == "recording" else ("storage-1" if signal == "storage_failure" else "vs0")
        msg = (
            '<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/'
            f'ConcreteSet">{topic}</wsnt:Topic><wsnt:Message><tt:Message UtcTime="{xml_time(self.now())}" '
            f'PropertyOperation="{operation}"><tt:Source><tt:SimpleItem Name="{source_item}" Value="{source}"/>'
            f'</tt:Source><tt:Data><tt:SimpleItem Name="{data_item}" Value="{value}"/></tt:Data></tt:Message>'
            "</wsnt:Message></wsnt:NotificationMessage>"
        )
        for sub in subs if subs is not None else list(self.subscriptions.values()):
            sub.queue.append(msg)
            sub.wake.set()

    def _initialized(self, sub: Subscription) -> None:
        for name in SIGNALS:
            self._notify(name, "true" if self.signal(name) else "false", "Initialized", [sub])
        self._notify("recording", self.recording_state(), "Initialized", [sub])

    # -- services ----------------------------------------------------------------------------

    def base(self, host: str) -> str:
        return f"http://{LAN_HOSTPORT if 'nat_xaddrs' in self.faults else host}/onvif/{self.device_id}"

    def authorize(self, req: soap.Request) -> None:
        if req.operation in PRE_AUTH:
            if req.token is None and "preauth_401" in self.faults:
                raise Unauthorized
            return
        if req.token is None:
            raise SoapFault("ter:NotAuthorized", "Sender not Authorized", 401)
        ok = soap.check_token(req.token, self.username, self.password, self.now())
        if not ok or "auth_fail" in self.faults:
            raise SoapFault("ter:NotAuthorized", "Sender not Authorized", 400)

    async def call(self, service: str, req: soap.Request, host: str, sub_id: int | None = None) -> str:
        """The body of the reply to one SOAP request (raises SoapFault / Unauthorized)."""
        self.authorize(req)
        op = req.operation
        handler = getattr(self, f"_{service}_{op}", None)
        if handler is None:
            raise SoapFault("ter:ActionNotSupported", f"{op} is not supported by the {service} service")
        if service == "subscription":
            return await handler(req, host, sub_id)  # type: ignore[no-any-return]
        return handler(req, host)  # type: ignore[no-any-return]

    def _device_GetSystemDateAndTime(self, req: soap.Request, host: str) -> str:
        t = self.now()
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>"
            "<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>ICT-7</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime><tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}</tt:Minute>"
            f"<tt:Second>{t.second}</tt:Second></tt:Time><tt:Date><tt:Year>{t.year}</tt:Year>"
            f"<tt:Month>{t.month}</tt:Month><tt:Day>{t.day}</tt:Day></tt:Date></tt:UTCDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def _device_GetDeviceInformation(self, req: soap.Request, host: str) -> str:
        return (
            "<tds:GetDeviceInformationResponse><tds:Manufacturer>Commune IOC</tds:Manufacturer>"
            "<tds:Model>SimCam 1080p</tds:Model><tds:FirmwareVersion>2.4.1</tds:FirmwareVersion>"
            f"<tds:SerialNumber>SIM-{text(self.device_id)}</tds:SerialNumber>"
            "<tds:HardwareId>simcam-1</tds:HardwareId></tds:GetDeviceInformationResponse>"
        )

    def _services(self, host: str) -> list[tuple[str, str]]:
        b = self.base(host)
        out = [(soap.NS["tds"], f"{b}/device_service"), (soap.NS["trt"], f"{b}/media_service")]
        if "no_events" not in self.faults:
            out.append((soap.NS["tev"], f"{b}/events_service"))
        return out

    def _device_GetServices(self, req: soap.Request, host: str) -> str:
        if "no_getservices" in self.faults:
            raise SoapFault("ter:ActionNotSupported", "GetServices is not supported")
        items = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{x}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for ns, x in self._services(host)
        )
        return f"<tds:GetServicesResponse>{items}</tds:GetServicesResponse>"

    def _device_GetCapabilities(self, req: soap.Request, host: str) -> str:
        b = self.base(host)
        events = (
            ""
            if "no_events" in self.faults
            else (
                f"<tt:Events><tt:XAddr>{b}/events_service</tt:XAddr><tt:WSSubscriptionPolicySupport>false"
                "</tt:WSSubscriptionPolicySupport><tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
                "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
                "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>"
            )
        )
        return (
            f"<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Device><tt:XAddr>{b}/device_service</tt:XAddr>"
            f"</tt:Device>{events}<tt:Media><tt:XAddr>{b}/media_service</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true"
            "</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media></tds:Capabilities>"
            "</tds:GetCapabilitiesResponse>"
        )

    def _media_GetProfiles(self, req: soap.Request, host: str) -> str:
        profiles = "".join(
            f'<trt:Profiles token="{tok}" fixed="true"><tt:Name>{tok}</tt:Name>'
            '<tt:VideoSourceConfiguration token="vsc0"><tt:Name>vsc0</tt:Name><tt:UseCount>2</tt:UseCount>'
            '<tt:SourceToken>vs0</tt:SourceToken><tt:Bounds x="0" y="0" width="1920" height="1080"/>'
            f'</tt:VideoSourceConfiguration><tt:VideoEncoderConfiguration token="vec-{tok}">'
            f"<tt:Name>{tok}</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
            f"<tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution>"
            "<tt:Quality>5</tt:Quality><tt:RateControl><tt:FrameRateLimit>25</tt:FrameRateLimit>"
            f"<tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>{kbps}</tt:BitrateLimit>"
            "</tt:RateControl><tt:H264><tt:GovLength>50</tt:GovLength><tt:H264Profile>Main</tt:H264Profile>"
            "</tt:H264><tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0"
            "</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port><tt:TTL>1</tt:TTL><tt:AutoStart>false"
            "</tt:AutoStart></tt:Multicast><tt:SessionTimeout>PT60S</tt:SessionTimeout>"
            "</tt:VideoEncoderConfiguration></trt:Profiles>"
            for tok, w, h, kbps in PROFILES
        )
        return f"<trt:GetProfilesResponse>{profiles}</trt:GetProfilesResponse>"

    def _profile(self, req: soap.Request) -> str:
        token = req.find("trt:ProfileToken") or ""
        if token not in {p[0] for p in PROFILES}:
            raise SoapFault("ter:InvalidArgVal/ter:NoProfile", f"no profile {token!r}")
        return token

    @staticmethod
    def _media_uri(uri: str, tag: str) -> str:
        return (
            f"<trt:{tag}><trt:MediaUri><tt:Uri>{text(uri)}</tt:Uri><tt:InvalidAfterConnect>false"
            "</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
            f"<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:{tag}>"
        )

    def _media_GetStreamUri(self, req: soap.Request, host: str) -> str:
        token = self._profile(req)
        h = (LAN_HOSTPORT if "nat_xaddrs" in self.faults else host).rsplit(":", 1)[0]
        creds = f"{self.username}:{self.password}@" if "uri_credentials" in self.faults else ""
        return self._media_uri(f"rtsp://{creds}{h}:554/{self.device_id}/{token}", "GetStreamUriResponse")

    def _media_GetSnapshotUri(self, req: soap.Request, host: str) -> str:
        token = self._profile(req)
        return self._media_uri(f"{self.base(host)}/snapshot.jpg?profile={token}", "GetSnapshotUriResponse")

    def _events_CreatePullPointSubscription(self, req: soap.Request, host: str) -> str:
        if "no_events" in self.faults:
            raise SoapFault("ter:ActionNotSupported", "no event service")
        ttl = soap.duration_s(req.find("tev:InitialTerminationTime"), 60.0)
        sub = Subscription(next(_sub_ids), time.monotonic() + ttl)
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            self.subscriptions.pop(next(iter(self.subscriptions)))
        self.subscriptions[sub.id] = sub
        self._initialized(sub)
        now = self.now()
        return (
            f"<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference><wsa:Address>"
            f"{self.base(host)}/subscription/{sub.id}</wsa:Address></tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{xml_time(now)}</wsnt:CurrentTime><wsnt:TerminationTime>"
            f"{xml_time(now + timedelta(seconds=ttl))}</wsnt:TerminationTime>"
            "</tev:CreatePullPointSubscriptionResponse>"
        )

    def _subscription_of(self, sub_id: int | None) -> Subscription:
        sub = self.subscriptions.get(sub_id or 0)
        if sub is None or sub.expires < time.monotonic():
            self.subscriptions.pop(sub_id or 0, None)
            raise SoapFault("wsrf-rw:ResourceUnknownFault", "no such subscription", 400)
        return sub

    async def _subscription_PullMessages(self, req: soap.Request, host: str, sub_id: int | None) -> str:
        sub = self._subscription_of(sub_id)
        timeout = min(soap.duration_s(req.find("tev:Timeout"), 10.0), 120.0)
        limit = int(req.find("tev:MessageLimit") or 100)
        if not sub.queue:
            sub.wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await sub.wake.wait()
            except TimeoutError:
                pass
        if "down" in self.faults or self.subscriptions.get(sub.id) is not sub:
            raise ConnectionAbortedError
        out, sub.queue[:] = sub.queue[:limit], sub.queue[limit:]
        now = self.now()
        left = sub.expires - time.monotonic()
        return (
            f"<tev:PullMessagesResponse><tev:CurrentTime>{xml_time(now)}</tev:CurrentTime>"
            f"<tev:TerminationTime>{xml_time(now + timedelta(seconds=left))}</tev:TerminationTime>"
            f"{''.join(out)}</tev:PullMessagesResponse>"
        )

    async def _subscription_Renew(self, req: soap.Request, host: str, sub_id: int | None) -> str:
        sub = self._subscription_of(sub_id)
        ttl = soap.duration_s(req.find("wsnt:TerminationTime"), 60.0)
        sub.expires = time.monotonic() + ttl
        now = self.now()
        return (
            f"<wsnt:RenewResponse><wsnt:TerminationTime>{xml_time(now + timedelta(seconds=ttl))}"
            f"</wsnt:TerminationTime><wsnt:CurrentTime>{xml_time(now)}</wsnt:CurrentTime></wsnt:RenewResponse>"
        )

    async def _subscription_Unsubscribe(self, req: soap.Request, host: str, sub_id: int | None) -> str:
        self._subscription_of(sub_id)
        sub = self.subscriptions.pop(sub_id or 0)
        sub.wake.set()
        return "<wsnt:UnsubscribeResponse/>"

    async def _subscription_SetSynchronizationPoint(
        self, req: soap.Request, host: str, sub_id: int | None
    ) -> str:
        self._initialized(self._subscription_of(sub_id))
        return "<tev:SetSynchronizationPointResponse/>"
