"""The OpenAPI document as the gateway really answers: every error status of every route with its
body, and who may call it (security schemes), so that generated clients work.

FastAPI documents 200 and a 422 of its own shape; the gateway answers errors as SPEC §6's
`{"error": {"code", "message"}}` (NGSI-LD ProblemDetails under `/ngsi-ld/`), query and path
mistakes as 400 (gateway.errors), and 401/403/404/409/429/503 from the routes and middleware.
The statuses each route can answer follow from what it depends on — signed-in operator (401),
a role or a commune scope (403), a path id (404), a JSON body (422) — plus the few listed in
`EXTRA`; the security of a route follows from the same dependencies. Open routes (`/healthz`,
`/readyz`, `/metrics`, `/docs`, `/openapi.json`, the dashboard) declare none.
"""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from gateway import deps, problems
from gateway.params import query_names
from gateway.share_schemas import ErrorBody

BEARER, COOKIE, API_KEY = "operatorToken", "sessionCookie", "apiKey"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "an operator's session token: `token` of `POST /api/v1/auth/login`",
    },
    COOKIE: {
        "type": "apiKey",
        "in": "cookie",
        "name": deps.SESSION_COOKIE,
        "description": "the same session token as the HttpOnly cookie the sign-in sets (the dashboard)",
    },
    API_KEY: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ioc_…",
        "description": "an API key from `ioc keys create` (the province, a neighbouring commune, another partner)",
    },
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}

# What each status means on an operator route.
OPERATOR_ERRORS: dict[int, str] = {
    400: "a parameter is malformed, out of range or unknown, or the request holds a control "
    "character or text that cannot be stored",
    401: "not signed in, or the session expired or was ended",
    403: "your role or your communes do not allow this",
    404: "no such resource, or it is outside your communes",
    408: "the request body did not arrive in time",
    409: "the resource's state does not allow this",
    413: "the request body is too large",
    422: "the JSON body does not follow the schema",
    429: "too many failed sign-ins from this address or for this user; see Retry-After",
    503: "the gateway is over its load limit or has no database connection free; see Retry-After",
}
# Statuses no dependency tells, by route (method, path).
EXTRA: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/api/v1/auth/login"): (401, 429),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): (409,),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): (409,),
    ("POST", "/api/v1/alerts/{alert_id}/assign"): (409,),
    ("POST", "/api/v1/broadcasts/{broadcast_id}/approve"): (409,),
    ("POST", "/api/v1/broadcasts/{broadcast_id}/cancel"): (409,),
    ("GET", "/media/{media_id}"): (403,),  # a signature that is wrong, for another file, or expired
    ("GET", "/api/v1/reports/criteria"): (404,),  # `commune=` naming no commune
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
HEALTHZ = "/healthz"
READY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "database": {"type": "string", "enum": ["ok", "unreachable"]},
        "broker": {"type": "string", "enum": ["ok", "unreachable"]},
    },
    "required": ["status"],
    "additionalProperties": True,
}


def _calls(dependant: Dependant) -> set[Callable[..., Any]]:
    found: set[Callable[..., Any]] = set()
    stack = [dependant]
    while stack:
        d = stack.pop()
        if d.call is not None:
            found.add(d.call)
        stack.extend(d.dependencies)
    return found


def _qualnames(calls: set[Callable[..., Any]]) -> set[str]:
    return {f"{getattr(c, '__module__', '')}.{getattr(c, '__qualname__', '')}" for c in calls}


def _operator_statuses(
    route: routing.RouteContext, path: str, method: str, names: set[str], has_body: bool
) -> set[int]:
    if path == HEALTHZ:
        return set()  # answered before any limit or guard (gateway.load_shed)
    statuses = {400, 503}  # 400: the input guard; 503: the load limit, or no database connection
    if "gateway.deps.current_user" in names:
        statuses.add(401)
        params = query_names(route.dependant)
        role = any(n.startswith("gateway.deps.require.") for n in names)
        if role or "commune" in params:
            statuses.add(403)
    if method in MUTATING:
        statuses.add(403)  # a change a cross-origin page could send (gateway.csrf)
    if "{" in path:
        statuses.add(404)
    if has_body:
        statuses.update((408, 413, 422))
    statuses.update(EXTRA.get((method, path), ()))
    return statuses


def _error(description: str, schema: str, status: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if status in (429, 503):
        doc["headers"] = RETRY_AFTER
    return doc


def _add_models(doc: dict[str, Any], *models: type[BaseModel]) -> None:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema


def customise(doc: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Adds the error answers and the security of every operation to a generated document."""
    _add_models(doc, ErrorBody, problems.ProblemDetails)
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    for route in routing.iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        path: str = route.path_format or ""
        names = _qualnames(_calls(route.dependant))
        share = "gateway.routes.share.share_key" in names
        ngsi = problems.applies(path)
        for method in route.methods or ():
            op = doc["paths"].get(path, {}).get(method.lower())
            if op is None:
                continue
            responses: dict[str, Any] = op.setdefault("responses", {})
            for answer in responses.values():
                for media in answer.get("content", {}).values():
                    ref = media.get("schema", {}).get("$ref")
                    if ref:  # a model given in `responses=` wins over the `dict` FastAPI inferred
                        media["schema"] = {"$ref": ref}
            has_body = "requestBody" in op
            if not has_body or ngsi:
                # bad query or path parameters are 400 (gateway.errors), and so is any bad NGSI-LD body
                responses.pop("422", None)
            elif "422" in responses:
                responses["422"] = _error(OPERATOR_ERRORS[422], ErrorBody.__name__, 422)
            if share or ngsi:
                op["security"] = [{API_KEY: []}]
                schema = problems.ProblemDetails.__name__ if ngsi else ErrorBody.__name__
                responses.setdefault(
                    "503",
                    _error(
                        "the gateway is over its load limit, or the audit row of this call cannot be written "
                        "(so no data is shared); see Retry-After",
                        schema,
                        503,
                    ),
                )
                continue
            if path == "/readyz":
                for code, what in (("200", "ready"), ("503", "not ready: the body names the cause")):
                    responses[code] = {
                        "description": what,
                        "content": {"application/json": {"schema": READY}},
                    }
            if "gateway.deps.current_user" in names:
                op["security"] = [{BEARER: []}, {COOKIE: []}]
            for status in sorted(_operator_statuses(route, path, method, names, has_body)):
                responses.setdefault(str(status), _error(OPERATOR_ERRORS[status], ErrorBody.__name__, status))
    schemas = doc["components"]["schemas"]
    text = repr(doc["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}'" not in text:
            schemas.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    """Makes `/openapi.json` (and `/docs`) serve the customised document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = customise(doc, app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
