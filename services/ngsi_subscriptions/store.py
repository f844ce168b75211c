"""NGSI-LD subscriptions as stored (ETSI GS CIM 009 §5.2.12, §5.8): validated, kept with the API key
that made them, and rendered with their notification status (§5.2.13).

A key sees and changes only its own subscriptions (another's is 404, as if it did not exist).
Every create, update and delete bumps `ngsi_subscriptions_version` and notifies `NOTIFY_CHANNEL`,
so the producer of `ioc alerts` reloads them at once.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
import re2  # type: ignore[import-untyped]
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services import audit, timerange
from services.errors import Conflict, InvalidInput, NotFound
from services.keys import ApiKey
from services.models import KINDS
from services.ngsi_entities import ATTRS, CONTEXT, NAME_RE, RESERVED, TERMS, URN_RE, iso
from services.ngsi_query import Query
from services.ngsi_subscriptions.matching import compile_id_pattern

NOTIFY_CHANNEL = "ioc_ngsi_subscriptions"
ID_PREFIX = "urn:ngsi-ld:Subscription:"
# Each subscription is matched against every change: a key may hold this many.
MAX_PER_KEY = 100
# What notifies (CIM 009 §5.2.12): the default, and all the view has.
NOTIFICATION_TRIGGERS = ("attributeCreated", "attributeUpdated")
# A periodic subscription sends every matching entity each time: not more often than this.
MIN_INTERVAL_S = 5
DEVICE_TYPES = ("Device", "https://smartdatamodels.org/dataModel.Device/Device")
FORMATS = ("normalized", "keyValues", "concise")
ACCEPTS = ("application/json", "application/ld+json")
# Headers the push worker sets itself: receiverInfo may not replace them.
OWN_HEADERS = frozenset(
    {"content-type", "content-length", "host", "idempotency-key", "link", "transfer-encoding", "connection"}
)
_HEADER_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")
# a URI that stays one path segment of /ngsi-ld/v1/subscriptions/{id} (no /, ?, # or %)
_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`/?#%]{1,300}")
# Expanded attribute names (the @context's IRIs) are taken for their short terms.
_TERMS: dict[str, str] = {
    v if isinstance(v, str) else v["@id"]: k
    for k, v in CONTEXT["@context"][0].items()  # type: ignore[index, attr-defined]
}
_READ_ONLY = ("timesSent", "lastNotification", "lastSuccess", "lastFailure", "status")


@dataclass(frozen=True)
class Target:
    """Where and how one subscription's notifications are POSTed."""

    uri: str
    headers: dict[str, str]


def known_attributes(conn: psycopg.Connection, key: ApiKey) -> set[str]:
    """The Device attributes the view can show the key: its fixed ones and every status field
    reported so far by a device the key reaches (another commune's field names are not told)."""
    names = set(ATTRS)
    for (k,) in conn.execute(
        "SELECT DISTINCT k FROM device_state s JOIN devices d ON d.id = s.device_id,"
        " jsonb_object_keys(s.metrics) k WHERE (%(c)s::text[] IS NULL OR d.commune_id = ANY(%(c)s))"
        " AND (%(k)s::text[] IS NULL OR d.kind = ANY(%(k)s))",
        {
            "c": list(key.communes) if key.communes is not None else None,
            "k": list(key.kinds) if key.kinds is not None else None,
        },
    ):
        if k not in RESERVED and NAME_RE.fullmatch(k):
            names.add(k)
    return names


def _attributes(what: str, given: Any, known: set[str]) -> list[str] | None:
    if given is None:
        return None
    out = [_TERMS.get(a, a) for a in given]
    unknown = [a for a in out if a not in known]
    if unknown:
        raise InvalidInput(
            f"{what}: no Device attribute {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})"
        )
    if not out:
        raise InvalidInput(f"{what} is empty; leave it out for every attribute")
    return list(dict.fromkeys(out))


def _entities(given: Any, key: ApiKey) -> list[dict[str, str]] | None:
    if given is None:
        return None
    if not given:
        raise InvalidInput("entities is empty; leave it out to watch every Device")
    out = []
    for i, sel in enumerate(given):
        if sel.get("type") not in DEVICE_TYPES:
            raise InvalidInput(f"entities[{i}].type {sel.get('type')!r} is not offered; only Device is")
        e = {"type": "Device"}
        if sel.get("id") is not None:
            m = URN_RE.fullmatch(sel["id"])
            if not m:
                raise InvalidInput(
                    f"entities[{i}].id {sel['id']!r} is not like urn:ngsi-ld:Device:{{commune}}:{{device}}"
                )
            key.check_commune(m[1])
            e["id"] = sel["id"]
        if sel.get("idPattern") is not None:
            try:
                compile_id_pattern(sel["idPattern"])
            except re2.error as err:
                raise InvalidInput(
                    f"entities[{i}].idPattern is not a regular expression we take (RE2 syntax: no"
                    f" backreferences or lookarounds): {err}"
                ) from err
            e["idPattern"] = sel["idPattern"]
        out.append(e)
    return out


def _endpoint(given: dict[str, Any]) -> dict[str, Any]:
    uri = str(given.get("uri") or "")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"notification.endpoint.uri {uri!r} is not an http:// or https:// URL")
    accept = given.get("accept") or "application/json"
    if accept not in ACCEPTS:
        raise InvalidInput(f"notification.endpoint.accept {accept!r} is not one of {', '.join(ACCEPTS)}")
    out: dict[str, Any] = {"uri": uri, "accept": accept}
    info = given.get("receiverInfo")
    if info is not None:
        for i, kv in enumerate(info):
            name = str(kv.get("key", ""))
            if not _HEADER_RE.fullmatch(name) or name.lower() in OWN_HEADERS:
                raise InvalidInput(
                    f"notification.endpoint.receiverInfo[{i}].key {name!r} is not a header we may set"
                )
            if any(c in str(kv.get("value", "")) for c in "\r\n\x00"):
                raise InvalidInput(f"notification.endpoint.receiverInfo[{i}].value has a line break")
        out["receiverInfo"] = [{"key": str(kv["key"]), "value": str(kv.get("value", ""))} for kv in info]
    return out


def validate(conn: psycopg.Connection, key: ApiKey, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The subscription as stored: every field checked (400 InvalidInput, 403 outside the key)."""
    known = known_attributes(conn, key)
    if doc.get("type") != "Subscription":
        raise InvalidInput(f"type must be Subscription, not {doc.get('type')!r}")
    out: dict[str, Any] = {"type": "Subscription"}
    for name in ("subscriptionName", "description"):
        if doc.get(name) is not None:
            out[name] = str(doc[name])
    entities = _entities(doc.get("entities"), key)
    watched = _attributes("watchedAttributes", doc.get("watchedAttributes"), known)
    if entities is None and watched is None:
        raise InvalidInput("give entities or watchedAttributes (or both)")
    if entities is not None:
        out["entities"] = entities
    if watched is not None:
        out["watchedAttributes"] = watched
    if doc.get("q") is not None:
        query = Query.parse(doc["q"], TERMS)
        # A term on an attribute no Device has would match nothing, ever: say so now (as for
        # watchedAttributes) instead of storing a subscription that never fires.
        unknown = sorted(a for a in query.attributes if a.split(".")[0] not in known)
        if unknown:
            raise InvalidInput(
                f"q: no Device attribute {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})"
            )
        eq = {k: str(v) for k, v in query.equalities.items()}
        if eq.get("kind") is not None and eq["kind"] not in KINDS:
            raise InvalidInput(f"q: kind {eq['kind']!r} is not one of {', '.join(KINDS)}")
        key.check_commune(eq.get("commune"))
        key.check_kind(eq.get("kind"))
        out["q"] = doc["q"]
    n = doc.get("notification")
    if not isinstance(n, dict) or not isinstance(n.get("endpoint"), dict):
        raise InvalidInput("notification.endpoint.uri is required")
    notification: dict[str, Any] = {"format": n.get("format") or "normalized"}
    if notification["format"] not in FORMATS:
        raise InvalidInput(
            f"notification.format {notification['format']!r} is not one of {', '.join(FORMATS)}"
        )
    attrs = _attributes("notification.attributes", n.get("attributes"), known)
    if attrs is not None:
        notification["attributes"] = attrs
    if n.get("sysAttrs") is not None:
        if not isinstance(n["sysAttrs"], bool):
            raise InvalidInput("notification.sysAttrs is true or false")
        if n["sysAttrs"]:
            notification["sysAttrs"] = True
    notification["endpoint"] = _endpoint(n["endpoint"])
    out["notification"] = notification
    if doc.get("expiresAt") is not None:
        at = timerange.parse_time("expiresAt", str(doc["expiresAt"]))
        if at <= now:
            raise InvalidInput(f"expiresAt {doc['expiresAt']} is in the past")
        out["expiresAt"] = iso(at)
    if doc.get("throttling") is not None:
        t = doc["throttling"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 86400:
            raise InvalidInput("throttling is seconds between notifications, more than 0 and at most 86400")
        out["throttling"] = t
    if doc.get("timeInterval") is not None:
        t = doc["timeInterval"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not MIN_INTERVAL_S <= t <= 86400:
            raise InvalidInput(
                f"timeInterval is seconds between periodic notifications, {MIN_INTERVAL_S} to 86400"
            )
        if "watchedAttributes" in out or "throttling" in out:
            raise InvalidInput("timeInterval excludes watchedAttributes and throttling (CIM 009 §5.2.12)")
        out["timeInterval"] = t
    if doc.get("isActive") is not None:
        # Kept only when given: ETSI's fixtures (028_06) expect a default left out of the answer.
        out["isActive"] = bool(doc["isActive"])
    if doc.get("notificationTrigger") is not None:
        triggers = doc["notificationTrigger"]
        if (
            not isinstance(triggers, list)
            or not triggers
            or any(t not in NOTIFICATION_TRIGGERS for t in triggers)
        ):
            raise InvalidInput(
                f"notificationTrigger may list {', '.join(NOTIFICATION_TRIGGERS)}: devices are never"
                " created or deleted through the view, their attributes change"
            )
        out["notificationTrigger"] = list(dict.fromkeys(triggers))
    return out


def _bump(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE ngsi_subscriptions_version SET version = version + 1")
    conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))


def create(conn: psycopg.Connection, key: ApiKey, doc: dict[str, Any], context_url: str) -> dict[str, Any]:
    """Store a new subscription of `key` (the caller commits); 409 when its id is taken."""
    nulls = [k for k, v in doc.items() if v is None and k != "@context"]
    if nulls:
        raise InvalidInput(f"{', '.join(nulls)} is null; leave a member out instead")
    sub_id = doc["id"] if "id" in doc else f"{ID_PREFIX}{uuid.uuid4()}"
    check_id(sub_id)
    stored = validate(conn, key, doc, datetime.now(UTC))
    # The key's row locked: two creates at once cannot both pass the count.
    conn.execute("SELECT 1 FROM api_keys WHERE id = %s FOR UPDATE", (key.id,))
    held = conn.execute("SELECT count(*) FROM ngsi_subscriptions WHERE key_id = %s", (key.id,)).fetchone()
    if held and held[0] >= MAX_PER_KEY:
        raise InvalidInput(
            f"this key already has {held[0]} subscriptions, the most it may hold; delete one first"
        )
    row = conn.execute(
        "INSERT INTO ngsi_subscriptions (id, key_id, doc, context_url, is_active, expires_at, throttling_s)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
        (sub_id, key.id, Jsonb(stored), context_url, *_columns(stored)),
    ).fetchone()
    if row is None:
        raise Conflict(f"a subscription {sub_id} already exists")
    _bump(conn)
    return get(conn, key, sub_id)


def _columns(stored: dict[str, Any]) -> tuple[Any, ...]:
    expires = stored.get("expiresAt")
    return (
        stored.get("isActive", True),
        datetime.fromisoformat(expires) if expires else None,
        stored.get("throttling"),
    )


_SELECT = (
    "SELECT id, doc, is_active, expires_at, times_sent, last_notification, last_success, last_failure,"
    " last_failure_reason, created_at, modified_at FROM ngsi_subscriptions"
)


def render(r: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The subscription as NGSI-LD shows it: receiverInfo values that are credentials hidden."""
    now = now or datetime.now(UTC)
    doc = dict(r["doc"])
    out: dict[str, Any] = {"id": r["id"], "notificationTrigger": list(NOTIFICATION_TRIGGERS), **doc}
    n = dict(doc["notification"])
    endpoint = dict(n["endpoint"])
    if "receiverInfo" in endpoint:
        endpoint["receiverInfo"] = [
            {"key": kv["key"], "value": audit.REDACTED if audit.is_secret(kv["key"]) else kv["value"]}
            for kv in endpoint["receiverInfo"]
        ]
    n["endpoint"] = endpoint
    n["timesSent"] = r["times_sent"]
    for name, column in (
        ("lastNotification", "last_notification"),
        ("lastSuccess", "last_success"),
        ("lastFailure", "last_failure"),
    ):
        if r[column] is not None:
            n[name] = iso(r[column])
    if r["last_notification"] is not None:
        failed = r["last_failure"] is not None and (
            r["last_success"] is None or r["last_failure"] > r["last_success"]
        )
        n["status"] = "failed" if failed else "ok"
    out["notification"] = n
    expired = r["expires_at"] is not None and r["expires_at"] <= now
    out["status"] = "expired" if expired else "active" if r["is_active"] else "paused"
    return out


def check_id(sub_id: Any) -> None:
    """400 for an id that is not a URI (CIM 009 §5.8: BadRequestData, before any lookup)."""
    if not isinstance(sub_id, str) or not _ID_RE.fullmatch(sub_id):
        raise InvalidInput(f"id {sub_id!r} is not a URI")


def get(conn: psycopg.Connection, key: ApiKey, sub_id: str) -> dict[str, Any]:
    """One of the key's subscriptions; 404 for another key's or none."""
    check_id(sub_id)
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(f"{_SELECT} WHERE id = %s AND key_id = %s", (sub_id, key.id)).fetchone()  # noqa: S608
    if r is None:
        raise NotFound(f"no subscription {sub_id}")
    return render(r)


def page(conn: psycopg.Connection, key: ApiKey, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The key's subscriptions, oldest first, and how many it has."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"{_SELECT} WHERE key_id = %s ORDER BY created_at, id LIMIT %s OFFSET %s",  # noqa: S608
            (key.id, limit, offset),
        ).fetchall()
    total = conn.execute("SELECT count(*) FROM ngsi_subscriptions WHERE key_id = %s", (key.id,)).fetchone()
    now = datetime.now(UTC)
    return [render(r, now) for r in rows], int(total[0]) if total else 0


def update(conn: psycopg.Connection, key: ApiKey, sub_id: str, fragment: dict[str, Any]) -> dict[str, Any]:
    """Apply a fragment (CIM 009 §5.8.2): the fields it names replace the stored ones, those of
    `notification` and `notification.endpoint` one by one; the result is checked as a whole."""
    check_id(sub_id)
    row = conn.execute(
        "SELECT doc FROM ngsi_subscriptions WHERE id = %s AND key_id = %s FOR UPDATE", (sub_id, key.id)
    ).fetchone()
    if row is None:
        raise NotFound(f"no subscription {sub_id}")
    if fragment.get("id") not in (None, sub_id):
        raise InvalidInput("id cannot be changed")
    doc = dict(row[0])
    for name, value in fragment.items():
        if name in ("id", "@context"):
            continue
        if name == "notification" and isinstance(value, dict):
            n = dict(doc["notification"])
            for k, v in value.items():
                if k == "endpoint" and isinstance(v, dict):
                    n["endpoint"] = {**n["endpoint"], **v}
                elif k not in _READ_ONLY:
                    n[k] = v
            doc["notification"] = n
        elif name not in _READ_ONLY:
            doc[name] = value
    doc = {k: v for k, v in doc.items() if v is not None}
    stored = validate(conn, key, doc, datetime.now(UTC))
    conn.execute(
        "UPDATE ngsi_subscriptions SET doc = %s, is_active = %s, expires_at = %s, throttling_s = %s,"
        " modified_at = now() WHERE id = %s",
        (Jsonb(stored), *_columns(stored), sub_id),
    )
    _bump(conn)
    return get(conn, key, sub_id)


def delete(conn: psycopg.Connection, key: ApiKey, sub_id: str) -> None:
    """Remove one of the key's subscriptions; its queued notifications are then dropped."""
    check_id(sub_id)
    cur = conn.execute("DELETE FROM ngsi_subscriptions WHERE id = %s AND key_id = %s", (sub_id, key.id))
    if cur.rowcount == 0:
        raise NotFound(f"no subscription {sub_id}")
    _bump(conn)


def audit_params(sub_id: str | None, doc: dict[str, Any] | None) -> dict[str, Any]:
    """What a create or update gave, for its audit row: receiverInfo values (often credentials) left out."""
    out: dict[str, Any] = {"subscription_id": sub_id}
    if doc is not None:
        body = {k: v for k, v in doc.items() if k != "@context"}
        n = body.get("notification")
        if isinstance(n, dict) and isinstance(n.get("endpoint"), dict) and "receiverInfo" in n["endpoint"]:
            info = n["endpoint"]["receiverInfo"] or []
            endpoint = {**n["endpoint"], "receiverInfo": [{"header": kv.get("key")} for kv in info]}
            body["notification"] = {**n, "endpoint": endpoint}
        out["body"] = body
    return out
