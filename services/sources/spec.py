"""Reading a device's `source` from the registry (a YAML mapping, or a CSV URL) and a `brokers:`
entry; every problem is a message for the file's line, secrets come back apart.

CSV URL forms (docs/sources.md):
    profile://PROFILE[/ID][?broker=BROKER]
    snmp://COMMUNITY@HOST[:PORT][?version=1|2c&uplink=eth0&poll_s=60&extra.NAME=OID]
    snmp://USER:AUTH_KEY[:PRIV_KEY]@HOST[:PORT]?auth=sha&priv=aes      (v3; keys percent-encoded)
    ping://HOST[?count=3&timeout_s=1&poll_s=30&fail_after=2]
    tcp://HOST:PORT[?timeout_s=3&poll_s=30&fail_after=2]
    http[s]://[USER:PASSWORD@]HOST/PATH?QUERY[#expect_status=200-299&expect_text=OK&field.NAME=PATH&poll_s=30]
    http[s]://HOST/PATH#profile=PROFILE&id=ID     (a device in its vendor server's list)
The http options go in the fragment: the query belongs to the endpoint, and a fragment is never sent.
"""

import re
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from services.mapping import FieldMap, compile_field
from services.payloads import FIELDS
from services.sources.model import (
    SNMP_AUTH,
    SNMP_PRIV,
    SNMP_VERSIONS,
    Broker,
    HttpSource,
    MqttSource,
    PingSource,
    SnmpSource,
    Source,
    TcpSource,
)
from services.sources.profiles import NAME_RE, extra_oids

HOST_RE = re.compile(r"[A-Za-z0-9._:\[\]-]{1,253}")
# Zigbee2MQTT lets a friendly_name hold "/" to structure topics (kitchen/floor_light): levels are
# allowed, empty ones and the wildcards are not
TOPIC_ID_RE = re.compile(r"(?=.{1,128}$)[^/+#\s]+(?:/[^/+#\s]+)*")
ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_KEYS = {
    "mqtt": {"profile", "id", "broker"},
    "snmp": {
        "host",
        "port",
        "version",
        "community",
        "user",
        "auth",
        "auth_key",
        "priv",
        "priv_key",
        "uplink",
        "profile",
        "extra",
        "poll_s",
        "fail_after",
        "timeout_s",
    },
    "ping": {"host", "count", "timeout_s", "poll_s", "fail_after"},
    "tcp": {"host", "port", "timeout_s", "poll_s", "fail_after"},
    "http": {
        "url",
        "expect_status",
        "expect_text",
        "fields",
        "ca_file",
        "timeout_s",
        "poll_s",
        "fail_after",
        "profile",
        "id",
    },
}
_BROKER_KEYS = {"id", "url", "client_id", "ca_file", "keepalive_s", "session_expiry_s"}


class _Err(list[str]):
    def add(self, msg: str) -> None:
        self.append(msg)


def _int(err: _Err, path: str, v: Any, default: int, lo: int, hi: int) -> int:
    if v is None or v == "":
        return default
    try:
        x = int(str(v))
    except ValueError:
        x = lo - 1
    if isinstance(v, bool) or not lo <= x <= hi:
        err.add(f"{path} {v!r} must be a whole number from {lo} to {hi}")
        return default
    return x


def _secs(err: _Err, path: str, v: Any, default: float, hi: float = 60.0) -> float:
    if v is None or v == "":
        return default
    try:
        x = float(str(v))
    except ValueError:
        x = -1.0
    if isinstance(v, bool) or not 0 < x <= hi:
        err.add(f"{path} {v!r} must be a number of seconds above 0, at most {hi:g}")
        return default
    return x


def _host(err: _Err, path: str, v: Any) -> str:
    if not isinstance(v, str) or not HOST_RE.fullmatch(v):
        err.add(f"{path} is required: a host name or IP address, got {v!r}")
        return ""
    return v


def _secret(err: _Err, path: str, v: Any, min_len: int = 1) -> str | None:
    if v is None or v == "":
        return None
    s = str(v)
    if len(s) < min_len:
        err.add(f"{path} must be at least {min_len} characters (RFC 3414)")
    return s


def status_ranges(spec: Any) -> tuple[tuple[int, int], ...]:
    """`200`, `"200-399"` or a list of them (a YAML list, or text with commas as a CSV cell gives
    it: `200,204`); ValueError when it is none of those."""
    items = spec if isinstance(spec, list) else str(spec).split(",") if isinstance(spec, str) else [spec]
    out = []
    for item in items:
        text = str(item).strip()
        lo_s, _, hi_s = text.partition("-")
        try:
            lo, hi = int(lo_s), int(hi_s or lo_s)
        except ValueError:
            raise ValueError(f"{item!r} is not a status or a range like 200-399") from None
        if isinstance(item, bool) or not 100 <= lo <= hi <= 599:
            raise ValueError(f"{item!r} is not a status or a range within 100-599")
        out.append((lo, hi))
    if not out:
        raise ValueError("names no status")
    return tuple(out)


def _http_fields(err: _Err, kind: str, spec: Any) -> tuple[FieldMap, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, Mapping):
        err.add("source.http.fields must be a mapping of field name -> JMESPath")
        return ()
    out = []
    for name, fspec in spec.items():
        if name not in FIELDS.get(kind, {}):
            err.add(
                f"source.http.fields.{name}: a {kind} has no field {name!r} ({kind} fields: {', '.join(FIELDS[kind])})"
            )
            continue
        try:
            out.append(compile_field(str(name), fspec))
        except ValueError as e:
            err.add(f"source.http.fields.{name}: {e}")
    return tuple(out)


def _snmp(err: _Err, b: Mapping[str, Any], secrets: dict[str, str]) -> SnmpSource:
    version = str(b.get("version", "2c")).lower()
    version = {"2": "2c", "v1": "1", "v2c": "2c", "v3": "3"}.get(version, version)
    if version not in SNMP_VERSIONS:
        err.add(f"source.snmp.version {b.get('version')!r} must be 1, 2c or 3")
    user = b.get("user")
    auth = b.get("auth")
    priv = b.get("priv")
    if version == "3":
        if b.get("community") is not None:
            err.add("source.snmp.community is for v1/v2c; v3 takes user, auth, auth_key, priv, priv_key")
        if not isinstance(user, str) or not user:
            err.add("source.snmp.user is required for SNMP v3")
        if auth is None:
            err.add(
                "source.snmp.auth is required for SNMP v3 (md5, sha or sha256; noAuthNoPriv is not offered)"
            )
        elif auth not in SNMP_AUTH:
            err.add(f"source.snmp.auth {auth!r} must be one of {', '.join(SNMP_AUTH)}")
        key = _secret(err, "source.snmp.auth_key", b.get("auth_key"), 8)
        if key is None and auth is not None:
            err.add("source.snmp.auth_key is required with auth")
        elif key is not None:
            secrets["auth_key"] = key
        if priv is not None and priv not in SNMP_PRIV:
            err.add(f"source.snmp.priv {priv!r} must be one of {', '.join(SNMP_PRIV)}")
        pkey = _secret(err, "source.snmp.priv_key", b.get("priv_key"), 8)
        if priv is not None and pkey is None:
            err.add("source.snmp.priv_key is required with priv")
        if pkey is not None and priv is None:
            err.add("source.snmp.priv_key needs priv (des, aes or aes256)")
        elif pkey is not None:
            secrets["priv_key"] = pkey
    else:
        for k in ("user", "auth", "auth_key", "priv", "priv_key"):
            if b.get(k) is not None:
                err.add(f"source.snmp.{k} is for SNMP v3 (version: 3)")
        community = _secret(err, "source.snmp.community", b.get("community"))
        if community is None:
            err.add("source.snmp.community is required for v1/v2c (there is no default 'public')")
        else:
            secrets["community"] = community
    profile = b.get("profile")
    if profile is not None and (not isinstance(profile, str) or not NAME_RE.fullmatch(profile)):
        err.add(f"source.snmp.profile {profile!r} is not a profile name")
    uplink = b.get("uplink")
    return SnmpSource(
        _host(err, "source.snmp.host", b.get("host")),
        _int(err, "source.snmp.port", b.get("port"), 161, 1, 65535),
        version,
        None if user is None else str(user),
        None if auth is None else str(auth),
        None if priv is None else str(priv),
        None if uplink is None else str(uplink),
        profile,
        extra_oids(err, "source.snmp.extra", b.get("extra")),
        _int(err, "source.snmp.poll_s", b.get("poll_s"), 60, 5, 86400),
        _int(err, "source.snmp.fail_after", b.get("fail_after"), 2, 1, 100),
        _secs(err, "source.snmp.timeout_s", b.get("timeout_s"), 2.0),
    )


def _http(err: _Err, kind: str, b: Mapping[str, Any], secrets: dict[str, str]) -> HttpSource:
    url = b.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        err.add(f"source.http.url {url!r} must be an http:// or https:// URL")
        clean, username = str(url), None
    else:
        username = unquote(parts.username) if parts.username else None
        if parts.password:
            secrets["password"] = unquote(parts.password)
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            netloc += f":{parts.port}"
        clean = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    try:
        ranges = status_ranges(b.get("expect_status", "200-399"))
    except ValueError as e:
        err.add(f"source.http.expect_status: {e}")
        ranges = ((200, 399),)
    text = b.get("expect_text")
    ca_file = _ca_file(err, b.get("ca_file"), parts)
    profile, item_id = b.get("profile"), b.get("id")
    if profile is not None and (not isinstance(profile, str) or not NAME_RE.fullmatch(profile)):
        err.add(
            f"source.http.profile {profile!r} is not a profile name (lower case letters, digits, - and _)"
        )
    if profile is not None and (item_id is None or not str(item_id).strip() or len(str(item_id)) > 128):
        err.add(
            "source.http.id is required with a profile: the device's id in its vendor's list (1-128 characters)"
        )
    if profile is None and item_id is not None:
        err.add("source.http.id needs source.http.profile (the profile that reads the vendor's list)")
    return HttpSource(
        clean,
        ranges,
        None if text is None else str(text),
        _http_fields(err, kind, b.get("fields")),
        username,
        _secs(err, "source.http.timeout_s", b.get("timeout_s"), 10.0),
        _int(err, "source.http.poll_s", b.get("poll_s"), 30, 5, 86400),
        _int(err, "source.http.fail_after", b.get("fail_after"), 2, 1, 100),
        ca_file,
        profile if isinstance(profile, str) else None,
        None if item_id is None else str(item_id),
    )


def _ca_file(err: _Err, v: Any, parts: Any) -> str | None:
    """An absolute path to PEM certificates that this machine can read now (ingest reads the same
    file: an import is refused rather than a device that can never be verified)."""
    if v is None or v == "":
        return None
    if not isinstance(v, str) or not v.startswith("/"):
        err.add(f"source.http.ca_file {v!r} must be an absolute path")
        return None
    if parts is not None and parts.scheme != "https":
        err.add("source.http.ca_file is for https:// URLs")
    try:
        ssl.create_default_context(cafile=v)
    except (OSError, ssl.SSLError) as e:
        err.add(f"source.http.ca_file {v}: not a readable file of PEM certificates ({e})")
    return v


def parse(spec: Any, *, device_id: str, kind: str) -> tuple[Source | None, dict[str, str], list[str]]:
    """A device's `source:` mapping: the model, its secrets, and every problem found."""
    err = _Err()
    secrets: dict[str, str] = {}
    if not isinstance(spec, Mapping) or len(spec) != 1:
        return None, {}, ["source must be a mapping with one of mqtt, snmp, ping, tcp, http"]
    (skind, body), *_ = spec.items()
    if skind not in _KEYS:
        return None, {}, [f"source {skind!r} must be one of mqtt, snmp, ping, tcp, http"]
    if not isinstance(body, Mapping):
        return None, {}, [f"source.{skind} must be a mapping"]
    extra = sorted(str(k) for k in set(body) - _KEYS[skind])
    if extra:
        err.add(
            f"unknown source.{skind} key(s) {', '.join(extra)} (allowed: {', '.join(sorted(_KEYS[skind]))})"
        )
    src: Source
    if skind == "mqtt":
        profile = body.get("profile")
        if profile is None or profile == "":
            err.add("source.mqtt.profile is required: a profile name")
        elif not isinstance(profile, str) or not NAME_RE.fullmatch(profile):
            err.add(
                f"source.mqtt.profile {profile!r} is not a profile name (lower case letters, digits, - and _)"
            )
        topic_id = body.get("id", device_id)
        if not isinstance(topic_id, str | int) or not TOPIC_ID_RE.fullmatch(str(topic_id)):
            err.add(
                f"source.mqtt.id {topic_id!r} cannot be part of a topic (no +, # or spaces; / only between levels)"
            )
        broker = body.get("broker")
        if broker is not None and (not isinstance(broker, str) or not ID_RE.fullmatch(broker)):
            err.add(f"source.mqtt.broker {broker!r} is not a broker id")
        src = MqttSource(str(profile), str(topic_id), broker)
    elif skind == "snmp":
        src = _snmp(err, body, secrets)
    elif skind == "ping":
        src = PingSource(
            _host(err, "source.ping.host", body.get("host")),
            _int(err, "source.ping.count", body.get("count"), 3, 1, 20),
            _secs(err, "source.ping.timeout_s", body.get("timeout_s"), 1.0, 10.0),
            _int(err, "source.ping.poll_s", body.get("poll_s"), 30, 5, 86400),
            _int(err, "source.ping.fail_after", body.get("fail_after"), 2, 1, 100),
        )
    elif skind == "tcp":
        if body.get("port") in (None, ""):
            err.add("source.tcp.port is required")
        src = TcpSource(
            _host(err, "source.tcp.host", body.get("host")),
            _int(err, "source.tcp.port", body.get("port"), 1, 1, 65535),
            _secs(err, "source.tcp.timeout_s", body.get("timeout_s"), 3.0),
            _int(err, "source.tcp.poll_s", body.get("poll_s"), 30, 5, 86400),
            _int(err, "source.tcp.fail_after", body.get("fail_after"), 2, 1, 100),
        )
    else:
        src = _http(err, kind, body, secrets)
    return (None if err else src), secrets, list(err)


def _query(parts: Any, err: _Err) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in parse_qsl(parts, keep_blank_values=True):
        if k.startswith("extra."):
            out.setdefault("extra", {})[k[6:]] = v
        elif k.startswith("field."):
            out.setdefault("fields", {})[k[6:]] = v
        elif k in out:
            err.add(f"source option {k} is given twice")
        else:
            out[k] = v
    return out


def parse_url(url: str, *, device_id: str, kind: str) -> tuple[Source | None, dict[str, str], list[str]]:
    """A CSV `source` cell (a URL, forms in the module docstring)."""
    err = _Err()
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        return None, {}, [f"source {url[:80]!r} is not a URL: {e}"]
    scheme = u.scheme.lower()
    if scheme == "profile":
        body: dict[str, Any] = {"profile": u.netloc}
        path = u.path.strip("/")
        if path:
            body["id"] = unquote(path)
        body.update(_query(u.query, err))
        spec: dict[str, Any] = {"mqtt": body}
    elif scheme == "snmp":
        body = {"host": u.hostname}
        if port:
            body["port"] = port
        body.update(_query(u.query, err))
        user = unquote(u.username) if u.username else None
        if "auth" in body or str(body.get("version", "")) in ("3", "v3"):
            body.setdefault("version", "3")
            body["user"] = user
            auth_key, _, priv_key = (u.password or "").partition(":")
            if auth_key:
                body["auth_key"] = unquote(auth_key)
            if priv_key:
                body["priv_key"] = unquote(priv_key)
        else:
            if u.password:
                err.add("snmp://COMMUNITY@HOST takes no password; v3 needs auth= (and priv=)")
            body["community"] = user
        spec = {"snmp": body}
    elif scheme in ("ping", "tcp"):
        body = {"host": u.hostname}
        if port:
            body["port"] = port
        body.update(_query(u.query, err))
        spec = {scheme: body}
    elif scheme in ("http", "https"):
        body = _query(u.fragment, err)
        body["url"] = urlunsplit((u.scheme, u.netloc, u.path, u.query, ""))
        spec = {"http": body}
    else:
        return None, {}, [f"source {url[:80]!r}: the scheme must be profile, snmp, ping, tcp, http or https"]
    if err:
        return None, {}, list(err)
    return parse(spec, device_id=device_id, kind=kind)


def parse_broker(row: Any) -> tuple[Broker | None, str | None, list[str]]:
    """A `brokers:` entry: the broker, its password (apart), and every problem found."""
    err = _Err()
    if not isinstance(row, Mapping):
        return None, None, ["a broker must be a mapping {id, url, client_id}"]
    extra = sorted(str(k) for k in set(row) - _BROKER_KEYS)
    if extra:
        err.add(f"unknown broker field(s) {', '.join(extra)} (allowed: {', '.join(sorted(_BROKER_KEYS))})")
    bid = row.get("id")
    if not isinstance(bid, str) or not ID_RE.fullmatch(bid) or bid == "ioc":
        err.add(f"broker id {bid!r} must match [a-z0-9][a-z0-9-]{{0,62}} (and is not 'ioc', the IOC's own)")
    url = row.get("url")
    password = None
    clean = ""
    username = None
    try:
        u = urlsplit(url) if isinstance(url, str) else None
        port = u.port if u else None
    except ValueError:
        u, port = None, None
    if u is None or u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        err.add(f"broker url {url!r} must be mqtt://[user:pass@]host[:port] or mqtts://…")
    else:
        username = unquote(u.username) if u.username else None
        password = unquote(u.password) if u.password else None
        clean = f"{u.scheme}://{u.hostname}:{port or (8883 if u.scheme == 'mqtts' else 1883)}"
    client_id = row.get("client_id") or f"ioc-{bid}"
    if not isinstance(client_id, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", client_id):
        err.add(f"broker client_id {client_id!r} must be 1-64 letters, digits, . _ -")
    ca_file = row.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file.startswith("/")):
        err.add(f"broker ca_file {ca_file!r} must be an absolute path")
    if ca_file is not None and u is not None and u.scheme != "mqtts":
        err.add("broker ca_file is for mqtts:// brokers")
    keepalive = _int(err, "broker keepalive_s", row.get("keepalive_s"), 30, 5, 3600)
    expiry = _int(err, "broker session_expiry_s", row.get("session_expiry_s"), 7 * 24 * 3600, 60, 2**32 - 1)
    if err:
        return None, None, list(err)
    return Broker(str(bid), clean, str(client_id), username, ca_file, keepalive, expiry), password, []
