"""NGSI-LD view of the shared data (ETSI GS CIM 009 subset), with the same API keys as /api/share.

Entities follow the Smart Data Models `Device` schema; ids are `urn:ngsi-ld:Device:{commune}:{device}`.
`Accept: application/ld+json` puts the `@context` in the body; otherwise it is given in a `Link`
header (an Accept that admits neither JSON nor JSON-LD is 406). The context document itself is
served, without a key, at `CONTEXT_PATH`. Errors are NGSI-LD ProblemDetails (gateway.problems).
"""

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway import problems
from gateway.deps import Conn
from gateway.routes.share import MAX_RANGE, ShareKey
from services import history, share
from services.errors import InvalidInput, NotFound
from services.ngsi_entities import (
    CONTEXT,
    CORE_CONTEXT,
    URN_RE,
    iso,
    key_values,
    normalized,
    parse_q,
    pick,
    scalars,
)
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
LD_JSON = "application/ld+json"
MAX_ENTITIES = 1000
MAX_INSTANCES = 10000


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


@router.get("/entities", responses={200: {"content": {LD_JSON: {}}}})
def entities(request: Request, conn: Conn, key: ShareKey, p: Annotated[EntitiesQuery, Query()]) -> Response:
    """Device entities in the key's scope, by id (Smart Data Models `Device`). / Thực thể thiết bị NGSI-LD."""
    eq, ne = parse_q(p.q) if p.q else ({}, {})
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
    body = [pick(shape(r), _attrs(p.attrs)) for r in rows]
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
    return _respond(request, pick(shape(r), _attrs(p.attrs)))


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
            {"type": "Property", "values": [[s, iso(t)] for t, s in changes]}
            if values
            else [{"type": "Property", "value": s, "observedAt": iso(t)} for t, s in changes]
        )
    series: dict[str, list[tuple[Any, str | None]]] = {}
    for t, m in samples:
        for k, v in scalars(m).items():
            series.setdefault(k, []).append((v, iso(t)))
    for k, points in series.items():
        out[k] = (
            {"type": "Property", "values": [[v, t] for v, t in points]}
            if values
            else [{"type": "Property", "value": v, "observedAt": t} for v, t in points]
        )
    picked = pick(out, _attrs(p.attrs))
    return _respond(request, picked, rows=len(changes) + len(samples))


@router.get(CONTEXT_PATH.removeprefix("/ngsi-ld/v1"), include_in_schema=False)
def context() -> Response:
    """The JSON-LD @context of our entities (no data in it, so no key needed)."""
    return Response(orjson.dumps(CONTEXT), media_type=LD_JSON, headers={"Cache-Control": "max-age=86400"})
