"""Profiles: how a family of devices speaks MQTT (topics, fields, availability, events), which
vendor OIDs an SNMP agent has, or how a vendor's HTTP server lists its devices. Shipped in `services/profiles/*.yaml`, overridden by
IOC_PROFILES_DIR files of the same name, overridden by the registry's `profiles:`."""

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services import payloads, yaml_limits
from services.mapping import FieldMap, TsSpec, compile_field, compile_path, compile_ts, map_key

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
OID_RE = re.compile(r"\.?[0-2](\.(0|[1-9][0-9]{0,9}))+")
METRIC_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "profiles"
SEVERITIES = ("info", "warning", "critical")
# Documentation kept in a profile file next to what the engine reads.
_DOC_KEYS = {"about", "references", "examples"}
_PROFILE_KEYS = {"mqtt", "snmp", "http"} | _DOC_KEYS
_MQTT_KEYS = {"availability", "status", "events"}
_STATUS_KEYS = {"topic", "fields", "split", "ts", "keep", "drop"}
_AVAIL_KEYS = {"topic", "path", "online", "offline"}
_EVENT_KEYS = {"topic", "type", "severity", "message", "fields", "ts", "drop"}
_SNMP_KEYS = {"clients", "extra"}
_HTTP_KEYS = {"devices", "id", "item", "fields", "keep", "drop", "repair"}
# How a vendor's answer is made JSON: `quoted_json` decodes objects and lists that arrive as strings
# (escaped, or written raw inside quotes; see ingest.sources.probes.repair_quoted_json).
REPAIRS = ("quoted_json",)
ALL_FIELDS = {name for kind in payloads.FIELDS.values() for name in kind}


class ProfileError(Exception):
    """Every problem of one profile, each `path: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class StatusRule:
    topic: str
    fields: tuple[FieldMap, ...]
    split: str | None = None
    ts: TsSpec | None = None
    # unmapped payload fields are kept in history as sent, except those named in `drop`
    keep: bool = True
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class AvailabilityRule:
    topic: str
    path: str | None
    expr: Any = field(compare=False, repr=False)
    online: tuple[str, ...] = ("online",)
    offline: tuple[str, ...] = ("offline",)


@dataclass(frozen=True)
class EventRule:
    topic: str
    type: str
    severity: str = "info"
    message: FieldMap | None = None
    fields: tuple[FieldMap, ...] = ()
    ts: TsSpec | None = None
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class MqttProfile:
    status: tuple[StatusRule, ...] = ()
    availability: tuple[AvailabilityRule, ...] = ()
    events: tuple[EventRule, ...] = ()


@dataclass(frozen=True)
class SnmpProfile:
    """Vendor OIDs: a client count for access points, more values as metrics."""

    clients: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HttpProfile:
    """A vendor server that lists its devices in one answer: where the list is, how an item names
    its device (`source.http.id`), where in the item the readings are, and the fields read there.
    A device the list does not name is not connected to its vendor's server."""

    devices: str
    devices_expr: Any = field(compare=False, repr=False)
    id: str = "id"
    id_expr: Any = field(default=None, compare=False, repr=False)
    item: str | None = None
    item_expr: Any = field(default=None, compare=False, repr=False)
    fields: tuple[FieldMap, ...] = ()
    keep: bool = True
    drop: tuple[str, ...] = ()
    repair: str | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    mqtt: MqttProfile | None = None
    snmp: SnmpProfile | None = None
    http: HttpProfile | None = None
    # the registry form, as stored (without the documentation keys)
    body: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    origin: str = "registry"  # shipped | dir | registry


def is_oid(value: Any) -> bool:
    return isinstance(value, str) and OID_RE.fullmatch(value) is not None


def check_topic(topic: Any) -> str | None:
    """Why a topic template is not one (None when it is)."""
    if not isinstance(topic, str) or not topic:
        return "a topic must be a non-empty string"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"{topic!r}: '#' may only be the whole last level"
        if "+" in level and level != "+":
            return f"{topic!r}: '+' must be a whole level"
        rest = level.replace("{id}", "")
        if "{" in rest or "}" in rest:
            return f"{topic!r}: the only placeholder is {{id}}"
    return None


def _values(v: Any) -> tuple[str, ...]:
    items = v if isinstance(v, list) else [v]
    return tuple(map_key(x) for x in items)


def _fields(err: list[str], path: str, spec: Any, names: set[str] | None) -> tuple[FieldMap, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, Mapping):
        err.append(f"{path}: must be a mapping of field name -> JMESPath or {{path, map, scale, offset}}")
        return ()
    out = []
    for name, fspec in spec.items():
        if names is not None and name not in names:
            err.append(f"{path}.{name}: no device kind has a field {name!r}")
            continue
        try:
            out.append(compile_field(str(name), fspec))
        except ValueError as e:
            err.append(f"{path}.{name}: {e}")
    return tuple(out)


def _ts(err: list[str], path: str, spec: Any) -> TsSpec | None:
    if spec is None:
        return None
    try:
        return compile_ts(spec)
    except ValueError as e:
        err.append(f"{path}: {e}")
        return None


def _unknown(err: list[str], path: str, spec: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(str(k) for k in set(spec) - allowed)
    if extra:
        err.append(f"{path}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def _topic(err: list[str], path: str, topic: Any) -> str:
    why = check_topic(topic)
    if why:
        err.append(f"{path}.topic: {why}")
    return str(topic)


def _drop(err: list[str], path: str, spec: Any) -> tuple[str, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, list) or not all(isinstance(x, str) for x in spec):
        err.append(f"{path}: must be a list of payload field names (e.g. a session key)")
        return ()
    return tuple(spec)


def _list(spec: Any) -> list[Any]:
    if spec is None:
        return []
    return spec if isinstance(spec, list) else [spec]


def _mqtt(err: list[str], path: str, spec: Any) -> MqttProfile | None:
    if not isinstance(spec, Mapping):
        err.append(f"{path}: must be a mapping with status, availability, events")
        return None
    _unknown(err, path, spec, _MQTT_KEYS)
    status = []
    for i, s in enumerate(_list(spec.get("status"))):
        p = f"{path}.status[{i}]"
        if not isinstance(s, Mapping):
            err.append(f"{p}: must be {{topic, fields, split, ts}}")
            continue
        _unknown(err, p, s, _STATUS_KEYS)
        split = s.get("split")
        if split is not None and (not isinstance(split, str) or not split):
            err.append(f"{p}.split: must be a non-empty separator string")
        keep = s.get("keep", True)
        if not isinstance(keep, bool):
            err.append(f"{p}.keep: must be true or false")
        status.append(
            StatusRule(
                _topic(err, p, s.get("topic")),
                _fields(err, f"{p}.fields", s.get("fields"), ALL_FIELDS),
                split if isinstance(split, str) and split else None,
                _ts(err, f"{p}.ts", s.get("ts")),
                keep is not False,
                _drop(err, f"{p}.drop", s.get("drop")),
            )
        )
    avail = []
    for i, a in enumerate(_list(spec.get("availability"))):
        p = f"{path}.availability" + (f"[{i}]" if isinstance(spec.get("availability"), list) else "")
        if isinstance(a, str):
            a = {"topic": a}
        if not isinstance(a, Mapping):
            err.append(f"{p}: must be a topic or {{topic, path, online, offline}}")
            continue
        _unknown(err, p, a, _AVAIL_KEYS)
        expr = None if a.get("path") is None else _path(err, f"{p}.path", a.get("path"))
        online, offline = _values(a.get("online", "online")), _values(a.get("offline", "offline"))
        if set(online) & set(offline):
            err.append(f"{p}: a payload cannot mean both online and offline")
        avail.append(
            AvailabilityRule(
                _topic(err, p, a.get("topic")),
                None if a.get("path") is None else str(a.get("path")),
                expr,
                online,
                offline,
            )
        )
    events = []
    for i, e in enumerate(_list(spec.get("events"))):
        p = f"{path}.events[{i}]"
        if not isinstance(e, Mapping):
            err.append(f"{p}: must be {{topic, type, severity, message, fields}}")
            continue
        _unknown(err, p, e, _EVENT_KEYS)
        etype = e.get("type")
        if not isinstance(etype, str) or not etype:
            err.append(f"{p}.type: an event needs a type (a non-empty string)")
        severity = e.get("severity", "info")
        if severity not in SEVERITIES:
            err.append(f"{p}.severity: must be one of info, warning, critical")
        message = None
        if e.get("message") is not None:
            try:
                message = compile_field("message", e.get("message"))
            except ValueError as x:
                err.append(f"{p}.message: {x}")
        events.append(
            EventRule(
                _topic(err, p, e.get("topic")),
                str(etype),
                str(severity),
                message,
                _fields(err, f"{p}.fields", e.get("fields"), None),
                _ts(err, f"{p}.ts", e.get("ts")),
                _drop(err, f"{p}.drop", e.get("drop")),
            )
        )
    if not (status or avail or events):
        err.append(f"{path}: names no status, availability or events topic")
    return MqttProfile(tuple(status), tuple(avail), tuple(events))


def _snmp(err: list[str], path: str, spec: Any) -> SnmpProfile | None:
    if not isinstance(spec, Mapping):
        err.append(f"{path}: must be {{clients: OID, extra: {{name: OID}}}}")
        return None
    _unknown(err, path, spec, _SNMP_KEYS)
    clients = spec.get("clients")
    if clients is not None and not is_oid(clients):
        err.append(
            f"{path}.clients: {clients!r} is not an OID (dotted numbers, e.g. 1.3.6.1.4.1.41112.1.6.1.2.1.8)"
        )
    return SnmpProfile(
        clients if is_oid(clients) else None, extra_oids(err, f"{path}.extra", spec.get("extra"))
    )


def _path(err: list[str], path: str, spec: Any) -> Any:
    try:
        return compile_path(spec)
    except ValueError as bad:
        err.append(f"{path}: {bad}")
        return None


def _http(err: list[str], path: str, spec: Any) -> HttpProfile | None:
    if not isinstance(spec, Mapping):
        err.append(f"{path}: must be {{devices, id, item, fields, keep, drop, repair}}")
        return None
    _unknown(err, path, spec, _HTTP_KEYS)
    if spec.get("devices") is None:
        err.append(f"{path}.devices: a JMESPath to the list of devices in the answer is required")
    devices = _path(err, f"{path}.devices", spec.get("devices")) if spec.get("devices") is not None else None
    id_path = spec.get("id", "id")
    id_expr = _path(err, f"{path}.id", id_path)
    item = spec.get("item")
    item_expr = None if item is None else _path(err, f"{path}.item", item)
    keep = spec.get("keep", True)
    if not isinstance(keep, bool):
        err.append(f"{path}.keep: must be true or false")
    repair = spec.get("repair")
    if repair is not None and repair not in REPAIRS:
        err.append(f"{path}.repair: {repair!r} must be one of {', '.join(REPAIRS)}")
    fields = _fields(err, f"{path}.fields", spec.get("fields"), ALL_FIELDS)
    if not fields and not err:
        err.append(f"{path}.fields: names no field (a device listed is online; say what it reports)")
    return HttpProfile(
        str(spec.get("devices")),
        devices,
        str(id_path),
        id_expr,
        None if item is None else str(item),
        item_expr,
        fields,
        keep is not False,
        _drop(err, f"{path}.drop", spec.get("drop")),
        repair if repair in REPAIRS else None,
    )


def extra_oids(err: list[str], path: str, spec: Any) -> tuple[tuple[str, str], ...]:
    """`extra: {name: OID}` checked: metric names and OIDs."""
    if spec is None:
        return ()
    if not isinstance(spec, Mapping):
        err.append(f"{path}: must be a mapping of metric name -> OID")
        return ()
    out = []
    for name, oid in spec.items():
        if not isinstance(name, str) or not METRIC_RE.fullmatch(name):
            err.append(f"{path}.{name}: metric names are lower case letters, digits and _")
        elif not is_oid(oid):
            err.append(f"{path}.{name}: {oid!r} is not an OID (dotted numbers, e.g. 1.3.6.1.2.1.1.3.0)")
        else:
            out.append((name, oid.lstrip(".")))
    return tuple(out)


def parse(name: str, body: Any, *, where: str = "profiles", origin: str = "registry") -> Profile:
    """A profile from its registry form; ProfileError listing every problem."""
    err: list[str] = []
    path = f"{where}.{name}"
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ProfileError([f"{path}: profile names match [a-z0-9][a-z0-9_-]{{0,62}}"])
    if not isinstance(body, Mapping):
        raise ProfileError([f"{path}: a profile is a mapping with mqtt:, snmp: or http:"])
    _unknown(err, path, body, _PROFILE_KEYS)
    mqtt = _mqtt(err, f"{path}.mqtt", body["mqtt"]) if "mqtt" in body else None
    snmp = _snmp(err, f"{path}.snmp", body["snmp"]) if "snmp" in body else None
    http = _http(err, f"{path}.http", body["http"]) if "http" in body else None
    if mqtt is None and snmp is None and http is None and not err:
        err.append(f"{path}: a profile needs mqtt:, snmp: or http:")
    if err:
        raise ProfileError(err)
    stored = {k: v for k, v in body.items() if k not in _DOC_KEYS}
    return Profile(name, mqtt, snmp, http, stored, origin)


def _load_file(path: Path, origin: str) -> Profile:
    try:
        doc = yaml_limits.load(path.read_text(encoding="utf-8")).data
    except yaml_limits.YamlRefused as err:
        raise ProfileError(
            [f"{path}:{err.line}: {err.message}" if err.line else f"{path}: {err.message}"]
        ) from err
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ProfileError([f"{path}: cannot read: {str(err).splitlines()[0]}"]) from err
    return parse(path.stem, doc, where=str(path), origin=origin)


def load_dir(directory: Path, origin: str) -> dict[str, Profile]:
    """One profile per `*.yaml` file, named after it."""
    out: dict[str, Profile] = {}
    errors: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            out[path.stem] = _load_file(path, origin)
        except ProfileError as err:
            errors.extend(err.errors)
    if errors:
        raise ProfileError(errors)
    return out


def shipped() -> dict[str, Profile]:
    return load_dir(SHIPPED_DIR, "shipped")


def env_dir() -> Path | None:
    """IOC_PROFILES_DIR, read when asked: `ioc devices import` and each process see it."""
    value = os.environ.get("IOC_PROFILES_DIR")
    return Path(value) if value else None


def catalogue(profiles_dir: Path | None) -> dict[str, Profile]:
    """Shipped profiles, replaced by IOC_PROFILES_DIR files of the same name."""
    out = shipped()
    if profiles_dir is not None:
        if not profiles_dir.is_dir():
            raise ProfileError([f"IOC_PROFILES_DIR {profiles_dir} is not a directory"])
        out.update(load_dir(profiles_dir, "dir"))
    return out


def read_once() -> Callable[[], dict[str, Profile]]:
    """The catalogue (shipped and IOC_PROFILES_DIR), read at the first call and kept: for a
    prober given no profiles, which must not read the files on every poll."""
    loaded: dict[str, Profile] | None = None

    def get() -> dict[str, Profile]:
        nonlocal loaded
        if loaded is None:
            loaded = catalogue(env_dir())
        return loaded

    return get


def effective(base: Mapping[str, Profile], registry: Iterable[Profile]) -> dict[str, Profile]:
    """The catalogue with the registry's profiles on top."""
    out = dict(base)
    out.update({p.name: p for p in registry})
    return out


def shipped_examples(name: str) -> list[dict[str, Any]]:
    """The examples a shipped profile file cites (payloads copied from its firmware's docs)."""
    doc = yaml.safe_load((SHIPPED_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    return list(doc.get("examples") or [])
