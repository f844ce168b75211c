"""What a subscription is matched against and what its notifications hold: a device's registry
row, a subscription as the producer sees it (scope, entities, watched attributes, q), and the
notification bodies (CIM 009 §5.11.2) in the subscription's format."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import re2  # type: ignore[import-untyped]

from services.ngsi_entities import CORE_CONTEXT, TERMS, iso, key_values, normalized, pick, sys_attrs
from services.ngsi_query import Query

MAX_DATA = 500  # entities per notification; more go in several


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a partner's bad pattern is their 400, not a line on our stderr


def compile_id_pattern(text: str) -> Any:
    """A subscription's `idPattern`, compiled by RE2: matching takes time linear in the id whatever
    the pattern. Python's `re` backtracks, so a partner's `(a|a)*$` would have held the event loop
    of `ioc alerts` (and its alert engine) for hours on one device id. RE2 has no backreferences or
    lookarounds: such a pattern raises `re2.error`."""
    return re2.compile(text, _RE2_OPTIONS)


@dataclass(frozen=True)
class Device:
    commune: str
    village: str | None
    kind: str
    name: str | None
    lat: float | None
    lon: float | None
    parent: str | None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Selector:
    id: str | None
    pattern: Any  # compile_id_pattern(...) or None

    def matches(self, entity_id: str) -> bool:
        return (self.id is None or self.id == entity_id) and (
            self.pattern is None or self.pattern.search(entity_id) is not None
        )


@dataclass(frozen=True)
class Sub:
    """A subscription as the producer matches it."""

    id: str
    communes: frozenset[str] | None
    kinds: frozenset[str] | None
    usable: bool  # its key is not revoked
    key_expires_at: datetime | None
    active: bool
    expires_at: datetime | None
    throttling_s: float | None
    time_interval_s: float | None  # periodic (CIM 009 §5.8.6): every matching entity this often
    entities: tuple[Selector, ...]
    watched: frozenset[str] | None
    q: Query | None
    attrs: list[str] | None
    format: str
    sys_attrs: bool  # notification.sysAttrs: createdAt and modifiedAt in the entities
    ld: bool  # application/ld+json: the @context in the body
    context_url: str

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> "Sub":
        (
            sub_id,
            doc,
            context_url,
            active,
            expires_at,
            throttling_s,
            communes,
            kinds,
            usable,
            key_expires_at,
        ) = row
        n = doc["notification"]
        return cls(
            id=sub_id,
            communes=frozenset(communes) if communes is not None else None,
            kinds=frozenset(kinds) if kinds is not None else None,
            usable=usable,
            key_expires_at=key_expires_at,
            active=active,
            expires_at=expires_at,
            throttling_s=throttling_s,
            time_interval_s=doc.get("timeInterval"),
            entities=tuple(
                Selector(e.get("id"), compile_id_pattern(e["idPattern"]) if e.get("idPattern") else None)
                for e in doc.get("entities") or ()
            ),
            watched=frozenset(doc["watchedAttributes"]) if doc.get("watchedAttributes") else None,
            q=Query.parse(doc["q"], TERMS) if doc.get("q") else None,
            attrs=n.get("attributes"),
            format=n.get("format", "normalized"),
            sys_attrs=bool(n.get("sysAttrs")),
            ld=n["endpoint"].get("accept") == "application/ld+json",
            context_url=context_url,
        )

    def live(self, now: datetime) -> bool:
        return (
            self.usable
            and self.active
            and (self.expires_at is None or self.expires_at > now)
            and (self.key_expires_at is None or self.key_expires_at > now)
        )

    def selects(self, kv: dict[str, Any], changed: set[str]) -> bool:
        """A change of this entity concerns the subscription (its watched attributes, scope, entities, q)."""
        if self.watched is not None and self.watched.isdisjoint(changed):
            return False
        if self.communes is not None and kv["commune"] not in self.communes:
            return False
        if self.kinds is not None and kv["kind"] not in self.kinds:
            return False
        if self.entities and not any(s.matches(kv["id"]) for s in self.entities):
            return False
        return self.q is None or self.q.matches(kv)

    def entity(self, r: dict[str, Any]) -> dict[str, Any]:
        if self.format == "keyValues":
            e = pick(key_values(r), self.attrs)
            return sys_attrs(e, r, normalized_attrs=False) if self.sys_attrs else e
        e = pick(normalized(r), self.attrs)
        if self.sys_attrs:
            e = sys_attrs(e, r, normalized_attrs=True)
        return concise(e) if self.format == "concise" else e


def concise(e: dict[str, Any]) -> dict[str, Any]:
    """The concise representation (CIM 009 §4.5.3.6): Properties without `type`, a bare value when
    nothing else is said of it; Relationships as `object`; GeoProperties as their GeoJSON."""
    out: dict[str, Any] = {}
    for k, v in e.items():
        if not isinstance(v, dict) or k in ("id", "type"):
            out[k] = v
        elif v.get("type") == "GeoProperty":
            out[k] = v["value"]
        elif v.get("type") == "Relationship":
            out[k] = {"object": v["object"]}
        else:
            rest = {a: b for a, b in v.items() if a != "type"}
            out[k] = (
                rest["value"] if list(rest) == ["value"] and not isinstance(rest["value"], dict) else rest
            )
    return out


def bodies(
    sub: Sub, rows: Iterable[dict[str, Any]], now: datetime
) -> Iterable[tuple[dict[str, Any], list[str]]]:
    """Notification bodies (CIM 009 §5.11.2) of these entity rows, at most MAX_DATA entities each,
    with the communes each carries."""
    ordered = sorted(rows, key=lambda r: r["device_id"])
    for i in range(0, len(ordered), MAX_DATA):
        chunk = ordered[i : i + MAX_DATA]
        body: dict[str, Any] = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
            "type": "Notification",
            "subscriptionId": sub.id,
            "notifiedAt": iso(now),
            "data": [sub.entity(r) for r in chunk],
        }
        if sub.ld:
            # In the notification and in each entity: the ETSI suite (046_14) reads data[0]["@context"].
            body["@context"] = [sub.context_url, CORE_CONTEXT]
            for e in body["data"]:
                e["@context"] = [sub.context_url, CORE_CONTEXT]
        yield body, sorted({r["commune"] for r in chunk})
