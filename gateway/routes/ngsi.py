"""NGSI-LD view of the shared data (ETSI GS CIM 009 subset), with the same API keys as /api/share.

Entities follow the Smart Data Models `Device` schema; ids are `urn:ngsi-ld:Device:{commune}:{device}`.
`Accept: application/ld+json` puts the `@context` in the body; otherwise it is given in a `Link`
header (an Accept that admits neither JSON nor JSON-LD is 406). The context document itself is
served, without a key, at `CONTEXT_PATH`. Errors are NGSI-LD ProblemDetails (gateway.problems).
"""

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway import problems
from gateway.deps import Conn
from gateway.routes.share import MAX_RANGE, ShareKey
from services import history, share
from services.errors import InvalidInput, NotFound
from services.share import Scope


def negotiate(request: Request) -> None:
    """406 before anything else when the caller accepts neither JSON nor JSON-LD (CIM 009 6.3.4)."""
    accept = request.headers.get("accept", "")
    if not problems.acceptable(accept):
        raise HTTPException(406, f"Accept {accept!r} admits neither {' nor '.join(problems.OFFERED)}")


router = APIRouter(
    prefix="/ngsi-ld/v1", tags=["ngsi-ld"], responses=problems.OPENAPI, dependencies=[Depends(negotiate)]
)
CONTEXT_PATH = "/ngsi-ld/v1/jsonldContexts/commune-ioc.jsonld"
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
SDM = "https://smartdatamodels.org/"
IOC = "https://commune-ioc.org/ns/"
LD_JSON = "application/ld+json"
URN_RE = re.compile(r"urn:ngsi-ld:Device:([a-z0-9][a-z0-9-]{0,62}):([a-z0-9][a-z0-9-]{0,62})")
MAX_ENTITIES = 1000
MAX_INSTANCES = 10000

# Smart Data Models categories and controlled properties (their enumerations) for our kinds.
CATEGORY = {
    "camera": ["sensor", "multimedia"],
    "speaker": ["actuator", "multimedia"],
    "eboard": ["multimedia"],
    "wifi": ["network"],
    "gateway": ["network"],
}
CONTROLLED = {
    "camera": ["motion"],
    "speaker": ["noiseLevel"],
    "eboard": ["light"],
    "wifi": ["occupancy"],
    "gateway": ["power"],
}
# Status fields that map onto Smart Data Models Device attributes.
FIRMWARE, BATTERY, RSSI = "firmware", "battery_pct", "rssi_dbm"
CONTEXT = {
    "@context": [
        {
            "Device": f"{SDM}dataModel.Device/Device",
            "category": f"{SDM}dataModel.Device/category",
            "controlledProperty": f"{SDM}dataModel.Device/controlledProperty",
            "deviceState": f"{SDM}dataModel.Device/deviceState",
            "dateLastValueReported": f"{SDM}dataModel.Device/dateLastValueReported",
            "firmwareVersion": f"{SDM}dataModel.Device/firmwareVersion",
            "batteryLevel": f"{SDM}dataModel.Device/batteryLevel",
            "rssi": f"{SDM}dataModel.Device/rssi",
            "value": f"{SDM}dataModel.Device/value",
            "name": "https://schema.org/name",
            "commune": f"{IOC}commune",
            "village": f"{IOC}village",
            "kind": f"{IOC}kind",
            "refParent": {"@id": f"{IOC}refParent", "@type": "@id"},
        },
        CORE_CONTEXT,
    ]
}
_ATTRS = (
    "name",
    "category",
    "controlledProperty",
    "deviceState",
    "dateLastValueReported",
    "location",
    "commune",
    "village",
    "kind",
    "refParent",
    "firmwareVersion",
    "batteryLevel",
    "rssi",
    "value",
)
_RESERVED = {*_ATTRS, "id", "type", "scope", "observedAt", "createdAt", "modifiedAt", "@context"}
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_Q_TERM = re.compile(r'\s*(deviceState|commune|village|kind|name)\s*(==|!=)\s*"?([^";]*)"?\s*')


def urn(commune: str, device_id: str) -> str:
    return f"urn:ngsi-ld:Device:{commune}:{device_id}"


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t else None


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(metrics.items()) if isinstance(v, bool | int | float | str)}


def key_values(r: dict[str, Any]) -> dict[str, Any]:
    """The entity in the simplified (keyValues) representation: Smart Data Models `Device` as is."""
    m = r["metrics"]
    e: dict[str, Any] = {
        "id": urn(r["commune"], r["device_id"]),
        "type": "Device",
        "category": CATEGORY[r["kind"]],
        "controlledProperty": CONTROLLED[r["kind"]] + (["temperature"] if "temperature_c" in m else []),
        "deviceState": r["state"],
        "commune": r["commune"],
        "kind": r["kind"],
    }
    if r["name"]:
        e["name"] = r["name"]
    if r["village"]:
        e["village"] = r["village"]
    if r["last_seen"]:
        e["dateLastValueReported"] = _iso(r["last_seen"])
    if r["lat"] is not None and r["lon"] is not None:
        e["location"] = {"type": "Point", "coordinates": [r["lon"], r["lat"]]}
    if r["parent"]:
        e["refParent"] = f"urn:ngsi-ld:Device:{r['commune']}:{r['parent']}"
    if isinstance(m.get(FIRMWARE), str):
        e["firmwareVersion"] = m[FIRMWARE]
    if (
        isinstance(m.get(BATTERY), int | float)
        and not isinstance(m.get(BATTERY), bool)
        and 0 <= m[BATTERY] <= 100
    ):
        e["batteryLevel"] = round(m[BATTERY] / 100, 4)
    if isinstance(m.get(RSSI), int | float) and not isinstance(m.get(RSSI), bool):
        e["rssi"] = m[RSSI]
    values = _scalars(m)
    for k, v in values.items():
        # Each measured value as its own attribute too (names of ours and NGSI-LD's win).
        if k not in e and k not in _RESERVED and _NAME_RE.fullmatch(k):
            e[k] = v
    if values:
        # Smart Data Models' `value`: the last measurements, URL-encoded `name=value;...`.
        e["value"] = quote(";".join(f"{k}={_text(v)}" for k, v in values.items()), safe="")
    return e


def _text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def normalized(r: dict[str, Any]) -> dict[str, Any]:
    """The entity in the normalized representation: each attribute a Property, GeoProperty or Relationship."""
    e: dict[str, Any] = {}
    for k, v in key_values(r).items():
        if k in ("id", "type"):
            e[k] = v
        elif k == "location":
            e[k] = {"type": "GeoProperty", "value": v}
        elif k == "refParent":
            e[k] = {"type": "Relationship", "object": v}
        elif k == "dateLastValueReported":
            e[k] = {"type": "Property", "value": {"@type": "DateTime", "@value": v}}
        elif k == "deviceState" and r["since"]:
            e[k] = {"type": "Property", "value": v, "observedAt": _iso(r["since"])}
        elif k not in _RESERVED or k in ("value", "batteryLevel", "rssi"):
            e[k] = {"type": "Property", "value": v}
            if r["metrics_ts"]:
                e[k]["observedAt"] = _iso(r["metrics_ts"])
        else:
            e[k] = {"type": "Property", "value": v}
    return e


def _pick(e: dict[str, Any], attrs: list[str] | None) -> dict[str, Any]:
    return e if attrs is None else {k: v for k, v in e.items() if k in ("id", "type") or k in attrs}


def _attrs(text: str | None) -> list[str] | None:
    return [a.strip() for a in text.split(",") if a.strip()] if text else None


def _respond(request: Request, body: Any, headers: dict[str, str] | None = None, rows: int = 1) -> Response:
    """JSON-LD with the @context in the body when asked for, else JSON with the context in a Link header."""
    request.state.audit_rows = rows
    headers = dict(headers or {})
    ctx = str(request.base_url).rstrip("/") + CONTEXT_PATH
    if LD_JSON in request.headers.get("accept", ""):
        items = body if isinstance(body, list) else [body]
        for item in items:
            item["@context"] = [ctx, CORE_CONTEXT]
        return Response(orjson.dumps(body), media_type=LD_JSON, headers=headers)
    headers["Link"] = f'<{ctx}>; rel="http://www.w3.org/ns/json-ld#context"; type="{LD_JSON}"'
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


class EntitiesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["Device"] = Field(description="entity type; only Device is offered")
    q: str | None = Field(
        None,
        max_length=500,
        description='e.g. deviceState=="offline";kind=="speaker" '
        "(== and != on deviceState, commune, village, kind, name; ; is AND)",
    )
    attrs: str | None = Field(None, max_length=500, description="comma-separated attributes to return")
    options: Literal["keyValues", "normalized", "count"] | None = Field(
        None, description="keyValues: simplified"
    )
    format: Literal["simplified", "normalized"] | None = Field(None, description="simplified = keyValues")
    count: bool = Field(False, description="add the NGSILD-Results-Count header")
    limit: int = Field(20, ge=1, le=MAX_ENTITIES)
    offset: int = Field(0, ge=0, le=10_000_000)


def _simplified(options: str | None, fmt: str | None) -> bool:
    return options == "keyValues" or fmt == "simplified"


def _parse_q(q: str) -> tuple[dict[str, str], dict[str, str]]:
    eq: dict[str, str] = {}
    ne: dict[str, str] = {}
    for term in q.split(";"):
        m = _Q_TERM.fullmatch(term)
        if not m:
            raise InvalidInput(
                f'q term {term!r} is not supported; use attr=="value" or attr!="value" with '
                "attr one of deviceState, commune, village, kind, name, joined by ;"
            )
        (eq if m[2] == "==" else ne)[m[1]] = m[3]
    return eq, ne


@router.get("/entities", responses={200: {"content": {LD_JSON: {}}}})
def entities(request: Request, conn: Conn, key: ShareKey, p: Annotated[EntitiesQuery, Query()]) -> Response:
    """Device entities in the key's scope, by id (Smart Data Models `Device`). / Thực thể thiết bị NGSI-LD."""
    eq, ne = _parse_q(p.q) if p.q else ({}, {})
    scope = Scope.of(key, eq.get("commune"), eq.get("village"), eq.get("kind"))
    rows, total = share.entity_rows(
        conn,
        scope,
        state=eq.get("deviceState"),
        name=eq.get("name"),
        not_equal=ne,
        limit=p.limit,
        offset=p.offset,
    )
    shape = key_values if _simplified(p.options, p.format) else normalized
    body = [_pick(shape(r), _attrs(p.attrs)) for r in rows]
    headers = {"NGSILD-Results-Count": str(total)} if p.count or p.options == "count" else {}
    return _respond(request, body, headers, rows=len(body))


def _device(conn: Any, key: Any, entity_id: str) -> dict[str, Any]:
    m = URN_RE.fullmatch(entity_id)
    if not m:
        raise InvalidInput(f"{entity_id!r} is not an id like urn:ngsi-ld:Device:{{commune}}:{{device}}")
    scope = Scope(key.communes, key.kinds)
    share.device_in_scope(conn, scope, m[2])
    rows, _ = share.entity_rows(conn, scope, device_id=m[2], limit=1)
    if not rows or rows[0]["commune"] != m[1]:
        raise NotFound(f"no entity {entity_id}")
    return rows[0]


class EntityQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attrs: str | None = Field(None, max_length=500)
    options: Literal["keyValues", "normalized"] | None = None
    format: Literal["simplified", "normalized"] | None = None


@router.get("/entities/{entity_id}", responses={200: {"content": {LD_JSON: {}}}})
def entity(
    entity_id: str, request: Request, conn: Conn, key: ShareKey, p: Annotated[EntityQuery, Query()]
) -> Response:
    """One device entity; 404 when unknown or retired, 403 outside the key's scope."""
    r = _device(conn, key, entity_id)
    shape = key_values if _simplified(p.options, p.format) else normalized
    return _respond(request, _pick(shape(r), _attrs(p.attrs)))


class TemporalQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timerel: Literal["between", "before", "after"] | None = Field(
        None, description="with timeAt (and endTimeAt)"
    )
    timeAt: str | None = Field(None, max_length=64, description="ISO 8601")  # noqa: N815 - NGSI-LD's name
    endTimeAt: str | None = Field(None, max_length=64, description="ISO 8601, for between")  # noqa: N815
    attrs: str | None = Field(None, max_length=500)
    lastN: int | None = Field(None, ge=1, le=MAX_INSTANCES)  # noqa: N815
    options: Literal["temporalValues", "normalized"] | None = None


@router.get("/temporal/entities/{entity_id}", responses={200: {"content": {LD_JSON: {}}}})
def temporal_entity(
    entity_id: str, request: Request, conn: Conn, key: ShareKey, p: Annotated[TemporalQuery, Query()]
) -> Response:
    """The device's history: `deviceState` from its state changes and each status field from its
    samples, at most 10000 instances each (`lastN` for the latest). / Lịch sử của thiết bị."""
    t0 = t1 = None
    if p.timerel is not None:
        if not p.timeAt:
            raise InvalidInput("timerel needs timeAt")
        at = history.parse_time("timeAt", p.timeAt)
        if p.timerel == "between":
            if not p.endTimeAt:
                raise InvalidInput("timerel=between needs endTimeAt")
            t0, t1 = at, history.parse_time("endTimeAt", p.endTimeAt)
            if t0 >= t1:
                raise InvalidInput("timeAt must be before endTimeAt")
            if t1 - t0 > MAX_RANGE:
                raise InvalidInput(f"timeAt and endTimeAt are more than {MAX_RANGE.days} days apart")
        elif p.timerel == "before":
            t1 = at
        else:
            t0 = at
    elif p.timeAt or p.endTimeAt:
        raise InvalidInput("timeAt needs timerel (between, before or after)")
    r = _device(conn, key, entity_id)
    changes, samples = share.temporal(conn, r["device_id"], t0, t1, MAX_INSTANCES)
    if p.lastN:
        changes, samples = changes[-p.lastN :], samples[-p.lastN :]
    values = p.options == "temporalValues"
    out: dict[str, Any] = {"id": entity_id, "type": "Device"}
    if changes:
        out["deviceState"] = (
            {"type": "Property", "values": [[s, _iso(t)] for t, s in changes]}
            if values
            else [{"type": "Property", "value": s, "observedAt": _iso(t)} for t, s in changes]
        )
    series: dict[str, list[tuple[Any, str | None]]] = {}
    for t, m in samples:
        for k, v in _scalars(m).items():
            series.setdefault(k, []).append((v, _iso(t)))
    for k, points in series.items():
        out[k] = (
            {"type": "Property", "values": [[v, t] for v, t in points]}
            if values
            else [{"type": "Property", "value": v, "observedAt": t} for v, t in points]
        )
    picked = _pick(out, _attrs(p.attrs))
    return _respond(request, picked, rows=len(changes) + len(samples))


@router.get(CONTEXT_PATH.removeprefix("/ngsi-ld/v1"), include_in_schema=False)
def context() -> Response:
    """The JSON-LD @context of our entities (no data in it, so no key needed)."""
    return Response(orjson.dumps(CONTEXT), media_type=LD_JSON, headers={"Cache-Control": "max-age=86400"})
