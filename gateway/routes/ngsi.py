"""NGSI-LD view of the shared data (ETSI GS CIM 009), with the same API keys as /api/share.

Entities follow the Smart Data Models `Device` schema; ids are `urn:ngsi-ld:Device:{commune}:{device}`.
The representation is chosen from `Accept` (CIM 009 §6.3.4: q-values first, then the order
application/json, application/ld+json, application/geo+json): JSON-LD carries the `@context` in
the body, JSON and GeoJSON in a `Link` header; an Accept that admits none is 406. The context
document itself is served, without a key, at `CONTEXT_PATH`. Errors are NGSI-LD ProblemDetails
(gateway.problems).
"""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import re2  # type: ignore[import-untyped]
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway import problems
from gateway.deps import Conn
from gateway.negotiation import choose
from gateway.routes.share import MAX_RANGE, ShareKey
from services import history, share
from services.errors import InvalidInput, NotFound
from services.keys import ApiKey
from services.models import KINDS
from services.ngsi_entities import (
    CONTEXT,
    CORE_CONTEXT,
    DEVICE_TYPES,
    TERMS,
    URN_RE,
    attribute_type,
    compact,
    expand,
    iso,
    key_values,
    normalized,
    pick,
    scalars,
    sys_attrs,
)
from services.ngsi_query import Query as NgsiQuery
from services.ngsi_query import geo_filter
from services.ngsi_subscriptions.matching import compile_id_pattern, concise
from services.share import Scope

JSON, LD_JSON, GEO_JSON = "application/json", "application/ld+json", "application/geo+json"
CONTEXT_PATH = "/ngsi-ld/v1/jsonldContexts/commune-ioc.jsonld"
MAX_ENTITIES = 1000
MAX_INSTANCES = 10000
# Query Entities and Retrieve Entity may answer GeoJSON (CIM 009 §6.3.15); other operations not.
_GEO_PATHS = ("/ngsi-ld/v1/entities",)
_URI = re2.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_FORMATS = ("normalized", "keyValues", "simplified", "concise")
_OPTIONS = (*_FORMATS, "sysAttrs")


def negotiate(request: Request) -> None:
    """406 before anything else when the caller accepts none of what the route offers."""
    path = request.url.path
    offered = (JSON, LD_JSON, GEO_JSON) if path.startswith(_GEO_PATHS) else (JSON, LD_JSON)
    accept = request.headers.get("accept", "")
    media = choose(accept, offered)
    if media is None:
        raise HTTPException(406, f"Accept {accept!r} admits none of {', '.join(offered)}")
    request.state.media = media


router = APIRouter(
    prefix="/ngsi-ld/v1", tags=["ngsi-ld"], responses=problems.OPENAPI, dependencies=[Depends(negotiate)]
)


def media_of(request: Request) -> str:
    return str(getattr(request.state, "media", JSON))


def context_link(request: Request) -> str:
    ctx = str(request.base_url).rstrip("/") + CONTEXT_PATH
    return f'<{ctx}>; rel="http://www.w3.org/ns/json-ld#context"; type="{LD_JSON}"'


def respond(
    request: Request, body: Any, headers: dict[str, str] | None = None, links: list[str] | None = None
) -> Response:
    """JSON-LD with the @context in each object when chosen, else JSON (or GeoJSON) with the
    context in a `Link` header, beside any paging links."""
    headers = dict(headers or {})
    links = list(links or [])
    media = media_of(request)
    if media == LD_JSON:
        ctx = str(request.base_url).rstrip("/") + CONTEXT_PATH
        for item in body if isinstance(body, list) else [body]:
            item["@context"] = [ctx, CORE_CONTEXT]
    else:
        links.append(context_link(request))
    if links:
        headers["Link"] = ", ".join(links)
    return Response(orjson.dumps(body), media_type=media, headers=headers)


def invalid_request(detail: str) -> Response:
    return problems.response(400, detail, error_type=problems.INVALID_REQUEST)


def _names(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [compact(a) for a in text.split(",") if a.strip()]
    if not names:
        raise InvalidInput(f"{what} is empty")
    if "id" in names or "type" in names:
        raise InvalidInput(f"{what} may not name id or type: they are in every entity")
    return names


_MEMBER = re2.compile(r"^[A-Za-z@][A-Za-z0-9_:/#.\-]*$")


def _members(text: str | None, what: str) -> list[str] | None:
    """A `pick` or `omit` projection (CIM 009 §4.21): members joined by `,` or `|`; the view has
    no linked entities, so no `{...}`."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace("|", ",").split(",")]
    bad = [p for p in parts if not _MEMBER.match(p)]
    if bad or not parts:
        raise InvalidInput(f"{what} {text!r} is not a list of entity members (e.g. id,deviceState)")
    return [compact(p) for p in parts]


def projection(
    pick_: str | None, omit: str | None, attrs: list[str] | None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The `pick`/`omit` of a retrieve or query; 400 with `attrs` or a member in both."""
    picked, omitted = _members(pick_, "pick"), _members(omit, "omit")
    if (picked is not None or omitted is not None) and attrs is not None:
        raise InvalidInput("pick and omit replace attrs: give one or the other")
    if picked is not None and omitted is not None and set(picked) & set(omitted):
        raise InvalidInput(f"{', '.join(sorted(set(picked) & set(omitted)))} is in both pick and omit")

    def project(e: dict[str, Any]) -> dict[str, Any]:
        if picked is not None:
            e = {k: v for k, v in e.items() if k in picked or k == "@context"}
        if omitted is not None:
            e = {k: v for k, v in e.items() if k not in omitted}
        return e

    return project


def representation(fmt: str | None, options: str | None) -> tuple[str, bool] | str:
    """(format, sysAttrs) of `format` and `options`, or the InvalidRequest detail (CIM 009 §6.3.7)."""
    opts = [o.strip() for o in (options or "").split(",") if o.strip()]
    bad = [o for o in opts if o not in _OPTIONS]
    if bad:
        return f"options {', '.join(bad)} not offered (offered: {', '.join(_OPTIONS)})"
    if fmt is not None and fmt not in _FORMATS:
        return f"format {fmt!r} is not one of {', '.join(_FORMATS)}"
    shape = fmt or next((o for o in opts if o in _FORMATS), "normalized")
    return ("keyValues" if shape == "simplified" else shape), "sysAttrs" in opts


def shaper(shape: str, sys: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def render(r: dict[str, Any]) -> dict[str, Any]:
        if shape == "keyValues":
            e = key_values(r)
            return sys_attrs(e, r, normalized_attrs=False) if sys else e
        e = normalized(r)
        if sys:
            e = sys_attrs(e, r, normalized_attrs=True)
        return concise(e) if shape == "concise" else e

    return render


def _feature(e: dict[str, Any]) -> dict[str, Any]:
    """An entity as a GeoJSON Feature (CIM 009 §4.5.16): its location as the geometry."""
    loc = e.get("location")
    geometry = loc.get("value", loc) if isinstance(loc, dict) and "coordinates" not in loc else loc
    props = {k: v for k, v in e.items() if k != "id"}
    feature = {"id": e["id"]} if "id" in e else {}
    return {**feature, "type": "Feature", "geometry": geometry, "properties": props}


def _types_match(text: str) -> bool:
    """Whether an entity of type Device answers the Entity Type Selection (`,` or `|` any of, `;`
    all of, parentheses, `*` every type)."""
    for alternative in text.replace("|", ",").split(","):
        parts = [compact(p.strip("() ")) for p in alternative.split(";") if p.strip("() ")]
        if parts and all(p == "*" or p in DEVICE_TYPES for p in parts):
            return True
    return False


class EntitiesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(
        None, max_length=500, description="Device (or its IRI, or *); others match nothing"
    )
    id: str | None = Field(None, max_length=20000, description="comma-separated entity ids")
    idPattern: str | None = Field(None, max_length=200, description="RE2 regular expression on the id")  # noqa: N815
    q: str | None = Field(
        None,
        max_length=500,
        description='NGSI-LD query, e.g. deviceState=="offline";batteryLevel<0.2 (; AND, | OR, == != > >= < <= ~=)',
    )
    attrs: str | None = Field(None, max_length=2000, description="comma-separated attributes to return")
    pick: str | None = Field(
        None, max_length=2000, description="entity members to keep (id, type, attributes)"
    )
    omit: str | None = Field(None, max_length=2000, description="entity members to leave out")
    georel: str | None = Field(
        None, max_length=100, description="near;maxDistance==m, within, intersects ..."
    )
    geometry: str | None = Field(None, max_length=20, description="Point, Polygon or MultiPolygon")
    coordinates: str | None = Field(None, max_length=20000, description="GeoJSON coordinates (JSON array)")
    geoproperty: str | None = Field(None, max_length=200, description="location (the only one)")
    options: str | None = Field(None, max_length=100, description="keyValues, normalized, concise, sysAttrs")
    format: str | None = Field(None, max_length=20, description="normalized, keyValues, simplified, concise")
    count: bool = Field(False, description="add the NGSILD-Results-Count header")
    limit: int = Field(20, ge=0, le=MAX_ENTITIES)
    offset: int = Field(0, ge=0, le=10_000_000)
    local: bool | None = Field(None, description="true: no minimal parameter needed")


def select(
    conn: Any,
    key: ApiKey,
    *,
    type_: str | None,
    ids: str | None,
    id_pattern: str | None,
    q: str | None,
    attrs: list[str] | None,
    geo: Callable[[dict[str, Any]], bool] | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """The page of the key's entity rows a query names, in id order (CIM 009 §5.7.2), and how
    many it names in all. The key's scope and `q`'s equalities on registry columns narrow the
    rows in SQL; the other filters are applied on the entities."""
    wanted = None
    if ids is not None:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        bad = [i for i in wanted if not _URI.match(i)]
        if bad or not wanted:
            raise InvalidInput(f"id {', '.join(map(repr, bad)) or '(empty)'} is not a URI")
    pattern = None
    if id_pattern is not None:
        try:
            pattern = compile_id_pattern(id_pattern)
        except re2.error as err:
            raise InvalidInput(f"idPattern is not a regular expression we take (RE2 syntax): {err}") from err
    query = NgsiQuery.parse(q, TERMS) if q else None
    if type_ is not None and not _types_match(type_):
        return [], 0
    eq = query.equalities if query else {}
    narrow = {k: eq.get(k) for k in ("commune", "village", "kind", "deviceState", "name")}
    if any(v is not None and not isinstance(v, str) for v in narrow.values()):
        return [], 0
    if narrow["kind"] is not None and narrow["kind"] not in KINDS:
        return [], 0
    scope = Scope.of(key, narrow["commune"], narrow["village"], narrow["kind"])
    if wanted is None and pattern is None and query is None and geo is None and attrs is None:
        # Nothing to test on the entities: the database pages.
        return share.entity_rows(conn, scope, limit=limit, offset=offset)
    device_ids = None
    if wanted is not None:
        device_ids = [m[2] for m in map(URN_RE.fullmatch, wanted) if m]
        if not device_ids:
            return [], 0
    rows, _ = share.entity_rows(
        conn, scope, device_ids=device_ids, state=narrow["deviceState"], name=narrow["name"], limit=None
    )
    out = []
    for r in rows:
        kv = key_values(r)
        if wanted is not None and kv["id"] not in wanted:
            continue
        if pattern is not None and pattern.search(kv["id"]) is None:
            continue
        if query is not None and not query.matches(kv):
            continue
        if geo is not None and not geo(kv):
            continue
        if attrs is not None and not any(a in kv for a in attrs):
            continue
        out.append(r)
    return out[offset : offset + limit], len(out)


def page_links(request: Request, offset: int, limit: int, returned: int, total: int) -> list[str]:
    """`Link` rel="prev" / rel="next" of a paged answer (CIM 009 §5.5.9), the request's own
    parameters in name order with only `offset` changed."""
    links = []
    media = media_of(request)

    def link(new_offset: int, rel: str) -> str:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
        params.append(("offset", str(new_offset)))
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe=':,*.-_~!$()/@')}" for k, v in sorted(params))
        return f'<{request.url.path}?{query}>; rel="{rel}"; type="{media}"'

    if limit > 0 and offset > 0:
        links.append(link(max(0, offset - limit), "prev"))
    if limit > 0 and offset + returned < total:
        links.append(link(offset + returned, "next"))
    return links


@router.get("/entities", responses={200: {"content": {LD_JSON: {}, GEO_JSON: {}}}})
def entities(request: Request, conn: Conn, key: ShareKey, p: Annotated[EntitiesQuery, Query()]) -> Response:
    """Device entities in the key's scope, in id order (CIM 009 §5.7.2): `type`, `id`, `idPattern`,
    `q`, `attrs` (entities with any of them, only those shown), geoqueries on `location`,
    `format`/`options`, `limit`/`offset` with `Link` rel="prev"/"next", `count`. An unknown type
    is an empty list. / Thực thể thiết bị NGSI-LD."""
    rep = representation(p.format, p.options)
    if isinstance(rep, str):
        return invalid_request(rep)
    if not (p.type or p.attrs or p.q or p.georel or p.local):
        raise InvalidInput("give type, attrs, q or a geoquery (or local=true)")
    if p.limit == 0 and not p.count:
        raise InvalidInput("limit=0 is only for count=true")
    attrs = _names(p.attrs, "attrs")
    project = projection(p.pick, p.omit, attrs)
    geo = geo_filter(p.georel, p.geometry, p.coordinates, p.geoproperty)
    shown, total = select(
        conn,
        key,
        type_=p.type,
        ids=p.id,
        id_pattern=p.idPattern,
        q=p.q,
        attrs=attrs,
        geo=geo,
        limit=p.limit,
        offset=p.offset,
    )
    render = shaper(*rep)
    body: Any = [e for e in (project(pick(render(r), attrs)) for r in shown) if e]
    request.state.audit_rows = len(body)
    headers = {"NGSILD-Results-Count": str(total)} if p.count else {}
    links = page_links(request, p.offset, p.limit, len(body), total)
    if media_of(request) == GEO_JSON:
        body = {"type": "FeatureCollection", "features": [_feature(e) for e in body]}
    return respond(request, body, headers, links)


def _device(conn: Any, key: Any, entity_id: str) -> dict[str, Any]:
    if not _URI.match(entity_id):
        raise InvalidInput(
            f"{entity_id!r} is not a URI; ids are like urn:ngsi-ld:Device:{{commune}}:{{device}}"
        )
    m = URN_RE.fullmatch(entity_id)
    if not m:
        raise NotFound(f"no entity {entity_id}")
    scope = Scope(key.communes, key.kinds)
    share.device_in_scope(conn, scope, m[2])
    rows, _ = share.entity_rows(conn, scope, device_id=m[2], limit=1)
    if not rows or rows[0]["commune"] != m[1]:
        raise NotFound(f"no entity {entity_id}")
    return rows[0]


class EntityQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attrs: str | None = Field(None, max_length=2000)
    pick: str | None = Field(
        None, max_length=2000, description="entity members to keep (id, type, attributes)"
    )
    omit: str | None = Field(None, max_length=2000, description="entity members to leave out")
    options: str | None = Field(None, max_length=100, description="keyValues, normalized, concise, sysAttrs")
    format: str | None = Field(None, max_length=20, description="normalized, keyValues, simplified, concise")
    geoproperty: str | None = Field(None, max_length=200, description="location (the only one)")


@router.get("/entities/{entity_id}", responses={200: {"content": {LD_JSON: {}, GEO_JSON: {}}}})
def entity(
    entity_id: str, request: Request, conn: Conn, key: ShareKey, p: Annotated[EntityQuery, Query()]
) -> Response:
    """One device entity (CIM 009 §5.7.1); 404 when unknown or retired, or when none of `attrs`
    is in it; 403 outside the key's scope. / Một thực thể thiết bị."""
    rep = representation(p.format, p.options)
    if isinstance(rep, str):
        return invalid_request(rep)
    attrs = _names(p.attrs, "attrs")
    project = projection(p.pick, p.omit, attrs)
    r = _device(conn, key, entity_id)
    e = pick(shaper(*rep)(r), attrs)
    if attrs is not None and set(e) <= {"id", "type"}:
        raise NotFound(f"entity {entity_id} has none of the attributes {', '.join(attrs)}")
    e = project(e)
    if not e:
        raise NotFound(f"nothing of entity {entity_id} is left after pick and omit")
    request.state.audit_rows = 1
    return respond(request, _feature(e) if media_of(request) == GEO_JSON else e)


# --- Discovery (CIM 009 §5.7.5-§5.7.10) ------------------------------------------------------


def _in_scope(conn: Any, key: ApiKey) -> list[dict[str, Any]]:
    rows, _ = share.entity_rows(conn, Scope(key.communes, key.kinds), limit=None)
    return [key_values(r) for r in rows]


def _attribute_counts(conn: Any, key: ApiKey) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in _in_scope(conn, key):
        for k in e:
            if k not in ("id", "type"):
                counts[k] = counts.get(k, 0) + 1
    return counts


class DiscoveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    details: bool = Field(False, description="true: the detailed list")


@router.get("/types", responses={200: {"content": {LD_JSON: {}}}})
def types(request: Request, conn: Conn, key: ShareKey, p: Annotated[DiscoveryQuery, Query()]) -> Response:
    """The entity types the key can see (CIM 009 §5.7.5, §5.7.6): Device when it sees any device."""
    counts = _attribute_counts(conn, key)
    present = ["Device"] if counts else []
    request.state.audit_rows = len(present)
    if p.details:
        body: Any = [
            {"id": expand("Device"), "type": "EntityType", "typeName": t, "attributeNames": sorted(counts)}
            for t in present
        ]
    else:
        body = {
            "id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}",
            "type": "EntityTypeList",
            "typeList": present,
        }
    return respond(request, body)


@router.get("/types/{type_name:path}", responses={200: {"content": {LD_JSON: {}}}})
def type_info(type_name: str, request: Request, conn: Conn, key: ShareKey) -> Response:
    """Details of one entity type (CIM 009 §5.7.7); 404 for a type the key sees no entity of."""
    entities_ = _in_scope(conn, key) if compact(type_name) in DEVICE_TYPES else []
    if not entities_:
        raise NotFound(f"no entity of type {type_name}")
    counts = _attribute_counts(conn, key)
    request.state.audit_rows = 1
    body = {
        "id": expand("Device"),
        "type": "EntityTypeInfo",
        "typeName": "Device",
        "entityCount": len(entities_),
        "attributeDetails": [
            {"id": expand(a), "type": "Attribute", "attributeName": a, "attributeTypes": [attribute_type(a)]}
            for a in sorted(counts)
        ],
    }
    return respond(request, body)


@router.get("/attributes", responses={200: {"content": {LD_JSON: {}}}})
def attributes(
    request: Request, conn: Conn, key: ShareKey, p: Annotated[DiscoveryQuery, Query()]
) -> Response:
    """The attributes of the entities the key can see (CIM 009 §5.7.8, §5.7.9)."""
    names = sorted(_attribute_counts(conn, key))
    request.state.audit_rows = len(names)
    if p.details:
        body: Any = [
            {"id": expand(a), "type": "Attribute", "attributeName": a, "typeNames": ["Device"]} for a in names
        ]
    else:
        body = {
            "id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}",
            "type": "AttributeList",
            "attributeList": names,
        }
    return respond(request, body)


@router.get("/attributes/{attr_name:path}", responses={200: {"content": {LD_JSON: {}}}})
def attribute_info(attr_name: str, request: Request, conn: Conn, key: ShareKey) -> Response:
    """Details of one attribute (CIM 009 §5.7.10); 404 for one no entity the key sees has."""
    name = compact(attr_name)
    count = _attribute_counts(conn, key).get(name)
    if not count:
        raise NotFound(f"no attribute {attr_name}")
    request.state.audit_rows = 1
    body = {
        "id": expand(name),
        "type": "Attribute",
        "attributeName": name,
        "attributeCount": count,
        "attributeTypes": [attribute_type(name)],
        "typeNames": ["Device"],
    }
    return respond(request, body)


# --- Temporal (CIM 009 §5.7.3, §5.7.4) --------------------------------------------------------


class TemporalQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timerel: str | None = Field(None, max_length=10, description="between, before or after, with timeAt")
    timeAt: str | None = Field(None, max_length=64, description="ISO 8601")  # noqa: N815 - NGSI-LD's name
    endTimeAt: str | None = Field(None, max_length=64, description="ISO 8601, for between")  # noqa: N815
    timeproperty: str | None = Field(None, max_length=20, description="observedAt (the only one)")
    attrs: str | None = Field(None, max_length=2000)
    lastN: int | None = Field(None, ge=1, le=MAX_INSTANCES)  # noqa: N815
    options: str | None = Field(None, max_length=100, description="temporalValues, normalized, sysAttrs")
    format: str | None = Field(None, max_length=20, description="temporalValues or normalized")


class TemporalEntitiesQuery(TemporalQuery):
    type: str | None = Field(None, max_length=500)
    id: str | None = Field(None, max_length=20000)
    idPattern: str | None = Field(None, max_length=200)  # noqa: N815
    q: str | None = Field(None, max_length=500)
    georel: str | None = Field(None, max_length=100)
    geometry: str | None = Field(None, max_length=20)
    coordinates: str | None = Field(None, max_length=20000)
    geoproperty: str | None = Field(None, max_length=200)
    count: bool = False
    limit: int = Field(20, ge=0, le=MAX_ENTITIES)
    offset: int = Field(0, ge=0, le=10_000_000)
    local: bool | None = None


def _window(p: TemporalQuery) -> tuple[datetime | None, datetime | None]:
    if p.timeproperty not in (None, "observedAt"):
        raise InvalidInput(f"timeproperty {p.timeproperty!r}: only observedAt is offered")
    if p.timerel is None:
        if p.timeAt or p.endTimeAt:
            raise InvalidInput("timeAt needs timerel (between, before or after)")
        return None, None
    if p.timerel not in ("between", "before", "after"):
        raise InvalidInput(f"timerel {p.timerel!r} is not one of between, before, after")
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
        return t0, t1
    return (None, at) if p.timerel == "before" else (at, None)


def _temporal_values(p: TemporalQuery) -> bool | str:
    opts = [o.strip() for o in (p.options or "").split(",") if o.strip()]
    bad = [o for o in opts if o not in ("temporalValues", "normalized", "sysAttrs")]
    if bad or p.format not in (None, "temporalValues", "normalized"):
        return (
            f"options/format {', '.join(bad) or p.format} not offered (temporalValues, normalized, sysAttrs)"
        )
    return p.format == "temporalValues" or (p.format is None and "temporalValues" in opts)


def _temporal(
    conn: Any, r: dict[str, Any], window: tuple[datetime | None, datetime | None], p: TemporalQuery
) -> tuple[dict[str, Any], int]:
    """One device's temporal representation: `deviceState` from its state changes and each status
    field from its samples, under the names the entity uses."""
    changes, samples = share.temporal(conn, r["device_id"], window[0], window[1], MAX_INSTANCES)
    if p.lastN:
        changes, samples = changes[-p.lastN :], samples[-p.lastN :]
    values = _temporal_values(p) is True
    out: dict[str, Any] = {"id": key_values(r)["id"], "type": "Device"}

    def series(points: list[tuple[Any, str | None]]) -> Any:
        if values:
            return {"type": "Property", "values": [[v, t] for v, t in points]}
        return [{"type": "Property", "value": v, "observedAt": t} for v, t in points]

    if changes:
        out["deviceState"] = series([(s, iso(t)) for t, s in changes])
    by_attr: dict[str, list[tuple[Any, str | None]]] = {}
    for t, m in samples:
        measured = {*scalars(m), "batteryLevel", "rssi", "firmwareVersion"}
        for k, v in key_values({**r, "metrics": m, "metrics_ts": t}).items():
            if k in measured:
                by_attr.setdefault(k, []).append((v, iso(t)))
    for k, points in by_attr.items():
        out[k] = series(points)
    return pick(out, _names(p.attrs, "attrs")), len(changes) + len(samples)


@router.get("/temporal/entities", responses={200: {"content": {LD_JSON: {}}}})
def temporal_entities(
    request: Request, conn: Conn, key: ShareKey, p: Annotated[TemporalEntitiesQuery, Query()]
) -> Response:
    """The history of the devices a query names (CIM 009 §5.7.4): the entity filters of
    /entities with `timerel`/`timeAt`/`endTimeAt`, `lastN`, `attrs`, paged by `limit`/`offset`.
    / Lịch sử các thiết bị."""
    rep = _temporal_values(p)
    if isinstance(rep, str):
        return invalid_request(rep)
    if not (p.type or p.attrs or p.q or p.georel or p.id or p.local):
        raise InvalidInput("give type, id, attrs, q or a geoquery (or local=true)")
    if p.limit == 0 and not p.count:
        raise InvalidInput("limit=0 is only for count=true")
    window = _window(p)
    geo = geo_filter(p.georel, p.geometry, p.coordinates, p.geoproperty)
    shown, total = select(
        conn,
        key,
        type_=p.type,
        ids=p.id,
        id_pattern=p.idPattern,
        q=p.q,
        attrs=None,
        geo=geo,
        limit=p.limit,
        offset=p.offset,
    )
    body, n = [], 0
    for r in shown:
        item, k = _temporal(conn, r, window, p)
        body.append(item)
        n += k
    request.state.audit_rows = n
    headers = {"NGSILD-Results-Count": str(total)} if p.count else {}
    return respond(request, body, headers, page_links(request, p.offset, p.limit, len(body), total))


@router.get("/temporal/entities/{entity_id}", responses={200: {"content": {LD_JSON: {}}}})
def temporal_entity(
    entity_id: str, request: Request, conn: Conn, key: ShareKey, p: Annotated[TemporalQuery, Query()]
) -> Response:
    """The device's history (CIM 009 §5.7.3): `deviceState` from its state changes and each status
    field from its samples, under the entity's attribute names, at most 10000 instances each
    (`lastN` for the latest). / Lịch sử của thiết bị."""
    rep = _temporal_values(p)
    if isinstance(rep, str):
        return invalid_request(rep)
    window = _window(p)
    r = _device(conn, key, entity_id)
    body, n = _temporal(conn, r, window, p)
    request.state.audit_rows = n
    return respond(request, body)


@router.get(CONTEXT_PATH.removeprefix("/ngsi-ld/v1"), include_in_schema=False)
def context() -> Response:
    """The JSON-LD @context of our entities (no data in it, so no key needed)."""
    return Response(orjson.dumps(CONTEXT), media_type=LD_JSON, headers={"Cache-Control": "max-age=86400"})
