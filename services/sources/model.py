"""How the IOC hears a device that does not speak its MQTT (SPEC §8): frozen models of every source
kind, their stored (secret-free) JSON form and the view an API may show."""

from dataclasses import dataclass, fields
from typing import Any, ClassVar
from urllib.parse import urlsplit

from services.mapping import FieldMap, compile_field

SOURCE_KINDS = ("mqtt", "snmp", "ping", "tcp", "http")
# The broker id of the IOC's own broker (a profile source without `broker`), in health rows.
IOC_BROKER = "ioc"
DEFAULT_FAIL_AFTER = 2
SNMP_VERSIONS = ("1", "2c", "3")
SNMP_AUTH = ("md5", "sha", "sha256")
SNMP_PRIV = ("des", "aes", "aes256")
# What each source kind keeps apart, encrypted (devices.source_secret).
SECRET_KEYS = {"snmp": ("community", "auth_key", "priv_key"), "http": ("password",)}
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class MqttSource:
    """A vendor MQTT device: its profile, its id in the profile's topics, the broker (None: the IOC's)."""

    kind: ClassVar[str] = "mqtt"
    profile: str
    id: str
    broker: str | None = None

    @property
    def broker_id(self) -> str:
        return self.broker or IOC_BROKER


@dataclass(frozen=True)
class SnmpSource:
    """An SNMP agent; the community (v1/v2c) or the v3 keys are secrets, kept apart."""

    kind: ClassVar[str] = "snmp"
    host: str
    port: int = 161
    version: str = "2c"
    user: str | None = None
    auth: str | None = None
    priv: str | None = None
    # the interface whose state is `uplink_up` (ifName or ifDescr); None: any non-loopback one
    uplink: str | None = None
    # a profile naming vendor OIDs (client count of an access point)
    profile: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    poll_s: int = 60
    fail_after: int = DEFAULT_FAIL_AFTER
    timeout_s: float = 2.0


@dataclass(frozen=True)
class PingSource:
    kind: ClassVar[str] = "ping"
    host: str
    count: int = 3
    timeout_s: float = 1.0
    poll_s: int = 30
    fail_after: int = DEFAULT_FAIL_AFTER


@dataclass(frozen=True)
class TcpSource:
    kind: ClassVar[str] = "tcp"
    host: str
    port: int
    timeout_s: float = 3.0
    poll_s: int = 30
    fail_after: int = DEFAULT_FAIL_AFTER


@dataclass(frozen=True)
class HttpSource:
    """An HTTP(S) endpoint; `url` carries no password (that is a secret, kept apart)."""

    kind: ClassVar[str] = "http"
    url: str
    # accepted status ranges, inclusive
    expect_status: tuple[tuple[int, int], ...] = ((200, 399),)
    expect_text: str | None = None
    fields: tuple[FieldMap, ...] = ()
    username: str | None = None
    timeout_s: float = 10.0
    poll_s: int = 30
    fail_after: int = DEFAULT_FAIL_AFTER
    # a private CA (PEM) that signs the endpoint's certificate; None: the system's CAs
    ca_file: str | None = None
    # a vendor server listing its devices: the profile reading its answer, and the device's id there
    profile: str | None = None
    id: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def broker_id(self) -> str | None:
        """A vendor list's server as a source the IOC can lose, `scheme://host:port` (its devices
        freeze while it is lost, as a vendor broker's do); None when the URL is not a list."""
        if self.profile is None:
            return None
        u = urlsplit(self.url)
        return f"{u.scheme}://{u.netloc}"


Source = MqttSource | SnmpSource | PingSource | TcpSource | HttpSource


@dataclass(frozen=True)
class Broker:
    """An MQTT broker other than the IOC's own; the password is kept apart, encrypted."""

    id: str
    url: str  # mqtt://host:port or mqtts://host:port, no credentials
    client_id: str
    username: str | None = None
    ca_file: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = SESSION_EXPIRY_S

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


def _status_spec(ranges: tuple[tuple[int, int], ...]) -> Any:
    parts = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]
    return parts[0] if len(parts) == 1 else parts


_CLASSES: dict[str, type[Source]] = {
    c.kind: c for c in (MqttSource, SnmpSource, PingSource, TcpSource, HttpSource)
}


def to_json(src: Source) -> dict[str, Any]:
    """The stored form, `{kind: {...}}`, with every setting and no secret (the models hold none)."""
    body: dict[str, Any] = {f.name: getattr(src, f.name) for f in fields(src)}
    if isinstance(src, SnmpSource):
        body["extra"] = dict(src.extra)
    elif isinstance(src, HttpSource):
        body["expect_status"] = _status_spec(src.expect_status)
        body["fields"] = {f.name: f.spec() for f in src.fields}
    return {src.kind: body}


def from_json(doc: dict[str, Any]) -> Source:
    """The model from its stored form (trusted: it was checked on import); a key stored by an
    older version and no longer a setting is ignored, a setting it lacks takes its default."""
    (kind, b), *_ = doc.items()
    cls = _CLASSES[kind]
    names = {f.name for f in fields(cls)}
    kw = {k: v for k, v in b.items() if k in names}
    if kind == "snmp":
        kw["extra"] = tuple((kw.get("extra") or {}).items())
    elif kind == "http":
        from services.sources.spec import status_ranges  # the one parser of expect_status

        kw["expect_status"] = status_ranges(kw.get("expect_status", "200-399"))
        kw["fields"] = tuple(compile_field(k, v) for k, v in (kw.get("fields") or {}).items())
    return cls(**kw)


def public(src: Source | None) -> dict[str, Any] | None:
    """What an API may show of a source: how the device is heard, never a secret."""
    if src is None:
        return None
    if isinstance(src, MqttSource):
        return {"kind": "mqtt", "profile": src.profile, "id": src.id, "broker": src.broker}
    if isinstance(src, SnmpSource):
        return {
            "kind": "snmp",
            "host": src.host,
            "port": src.port,
            "version": src.version,
            "poll_s": src.poll_s,
        }
    if isinstance(src, HttpSource):
        u = urlsplit(src.url)  # a query string may carry a token: scheme, host and path only
        out = {
            "kind": "http",
            "host": src.host,
            "url": f"{u.scheme}://{u.netloc}{u.path}",
            "poll_s": src.poll_s,
        }
        if src.profile is not None:
            out.update(profile=src.profile, id=src.id)
        return out
    if isinstance(src, TcpSource):
        return {"kind": "tcp", "host": src.host, "port": src.port, "poll_s": src.poll_s}
    return {"kind": "ping", "host": src.host, "poll_s": src.poll_s}
