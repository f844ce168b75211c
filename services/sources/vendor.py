"""A vendor MQTT message turned into the IOC's own messages (SPEC §4 on the device's topics): which
device and rule a topic belongs to (`Router`), and what the rule makes of the payload (`translate`).
Pure, no I/O; a payload that does not fit is a `MappingError` naming the profile's field."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from paho.mqtt.client import topic_matches_sub

from services import topics
from services.mapping import SEARCH, MappingError, apply_fields, decode, kept, map_key, read, read_ts
from services.models import Device
from services.payloads import MAX_PAYLOAD
from services.sources.model import MqttSource
from services.sources.profiles import AvailabilityRule, EventRule, Profile, StatusRule

Rule = StatusRule | AvailabilityRule | EventRule


@dataclass(frozen=True)
class Route:
    """A topic filter of one device: what its messages are."""

    filter: str
    device: Device
    profile: Profile
    rule: Rule

    @property
    def channel(self) -> str:
        if isinstance(self.rule, StatusRule):
            return "status"
        return "availability" if isinstance(self.rule, AvailabilityRule) else "event"

    def where(self) -> str:
        """The profile and rule, for a dead letter's reason."""
        return f"profile {self.profile.name}, {self.channel} topic {self.rule.topic}"


@dataclass(frozen=True)
class Publication:
    """One IOC message: QoS 1 on the device's own topic."""

    topic: str
    payload: bytes


def topic_for(template: str, topic_id: str) -> str:
    return template.replace("{id}", topic_id)


class Router:
    """The routes of one broker's devices: exact topics by dict, wildcard filters by scan."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = list(routes)
        self._exact: dict[str, list[Route]] = {}
        self._wild: list[Route] = []
        for r in self.routes:
            if "+" in r.filter or "#" in r.filter:
                self._wild.append(r)
            else:
                self._exact.setdefault(r.filter, []).append(r)

    @property
    def filters(self) -> set[str]:
        return {r.filter for r in self.routes}

    def match(self, topic: str) -> list[Route]:
        out = list(self._exact.get(topic, ()))
        out += [r for r in self._wild if topic_matches_sub(r.filter, topic)]
        return out


def routes(devices: Iterable[Device], profiles: Mapping[str, Profile], broker_id: str) -> list[Route]:
    """Every topic filter of the devices heard through this broker (unknown profiles are skipped:
    the import refused them; a profile file removed since is logged by the caller)."""
    out: list[Route] = []
    for d in devices:
        src = d.source
        if not isinstance(src, MqttSource) or src.broker_id != broker_id:
            continue
        profile = profiles.get(src.profile)
        if profile is None or profile.mqtt is None:
            continue
        m = profile.mqtt
        rules: list[Rule] = [*m.availability, *m.status, *m.events]
        out += [Route(topic_for(rule.topic, src.id), d, profile, rule) for rule in rules]
    return out


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


def _status(route: Route, rule: StatusRule, payload: bytes, received_at: datetime) -> dict[str, Any]:
    kind = route.device.kind
    doc = decode(payload, rule.split)
    metrics = apply_fields(kind, rule.fields, doc)
    ts = read_ts(rule.ts, doc) if rule.ts is not None else None
    out = kept(kind, doc, metrics, drop=rule.drop) if rule.keep else {}
    out.update(metrics)
    out["ts"] = _iso(ts or received_at)
    return out


def _availability(rule: AvailabilityRule, payload: bytes) -> str:
    value: Any = None
    if rule.expr is not None:
        doc = decode(payload)
        if isinstance(doc, dict | list):
            value = rule.expr.search(doc, options=SEARCH)
    if value is None:
        value = payload.decode("utf-8", errors="replace").strip()
    # compared without case: a profile written `online: online` still reads Tasmota's "Online"
    key = map_key(value)
    if key.casefold() in {v.casefold() for v in rule.online}:
        return "online"
    if key.casefold() in {v.casefold() for v in rule.offline}:
        return "offline"
    expect = "/".join(rule.online + rule.offline)
    raise MappingError("availability", f"{key[:40]!r} is none of {expect}")


def _event(route: Route, rule: EventRule, payload: bytes, received_at: datetime) -> dict[str, Any]:
    doc = decode(payload)
    fields: dict[str, Any] = {}
    for fm in rule.fields:
        v = read(fm, doc)
        if v is not None:
            fields[fm.name] = v
    if isinstance(doc, dict):
        reserved = ("ts", "type", "severity", "message")
        fields = {**kept(route.device.kind, doc, fields, reserved, rule.drop), **fields}
    elif doc not in (None, ""):
        fields.setdefault("value", doc)
    ts = read_ts(rule.ts, doc) if rule.ts is not None else None
    out: dict[str, Any] = {
        **fields,
        "type": rule.type,
        "severity": rule.severity,
        "ts": _iso(ts or received_at),
    }
    if rule.message is not None:
        message = read(rule.message, doc)
        if message is not None:
            out["message"] = str(message)
    return out


def translate(route: Route, payload: bytes, received_at: datetime) -> Publication:
    """The IOC message for a vendor message (MappingError when it does not fit its profile).

    Without a device time in the profile, `ts` is the receive time: a status or event the vendor
    broker redelivers is then stored once more (at least once); with one, exactly once.
    """
    if len(payload) > MAX_PAYLOAD:
        raise MappingError("payload", f"{len(payload)} bytes exceeds {MAX_PAYLOAD}")
    d = route.device
    topic = topics.device_topic(d.commune_id, d.kind, d.id, route.channel)
    rule = route.rule
    if isinstance(rule, AvailabilityRule):
        return Publication(topic, _availability(rule, payload).encode())
    if isinstance(rule, StatusRule):
        body = _status(route, rule, payload, received_at)
    else:
        body = _event(route, rule, payload, received_at)
    try:
        return Publication(topic, orjson.dumps(body))
    except (TypeError, orjson.JSONEncodeError) as err:
        raise MappingError("payload", f"cannot be written as JSON: {err}") from None
