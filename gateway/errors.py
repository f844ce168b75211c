"""Mapping of errors to the JSON error body of SPEC §6: {"error": {"code", "message"}}; under
/ngsi-ld/ to NGSI-LD ProblemDetails instead (gateway.problems)."""

import html
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import problems
from services import errors as e
from services import words

log = logging.getLogger(__name__)


def not_found_page() -> str:
    """The page a person who follows a wrong link gets: in Vietnamese, then English, from the catalogue."""
    vi, en = (lambda k: html.escape(words.text(k, "vi"))), (lambda k: html.escape(words.text(k, "en")))
    return (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{vi('nf.title')}</title></head>"
        '<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:15vh auto;padding:0 1rem;line-height:1.5">'
        f"<h1>{vi('nf.title')}</h1><p>{vi('nf.text')}</p>"
        f'<p><a href="/">{vi("nf.home")}</a></p>'
        f'<p lang="en" style="color:#666">{en("nf.title")}. <a href="/">{en("nf.home")}</a>.</p></body></html>'
    )


_API_PREFIXES = ("/api/", "/ngsi-ld/", "/ws/", "/media/")


def _page_wanted(request: Request) -> bool:
    """A browser asking for a page (not an API client, not an API path)."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept and not request.url.path.startswith(_API_PREFIXES)


STATUS: dict[type[e.IocError], int] = {
    e.InvalidInput: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.RateLimited: 429,
    e.Unavailable: 503,
    e.ConfigError: 500,
}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "too_large",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, detail: object | None = None
) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def answer(
    path: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error answered by a middleware: SPEC §6's body, or ProblemDetails under /ngsi-ld/."""
    if problems.applies(path):
        return problems.response(status, message, headers)
    return error_response(status, code, message, headers)


def _validation_message(err: RequestValidationError) -> tuple[str, list[dict[str, object]]]:
    parts, detail = [], []
    for item in err.errors():
        loc = [str(x) for x in item.get("loc", ())]
        where = ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc)
        parts.append(f"{where}: {item.get('msg')}")
        detail.append({"loc": loc, "msg": item.get("msg")})
    return "; ".join(parts) or "invalid request", detail


def install(app: FastAPI) -> None:
    @app.exception_handler(e.IocError)
    async def _ioc(request: Request, exc: e.IocError) -> JSONResponse:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, e.RateLimited | e.Busy) else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        if _ngsi(request):
            return problems.response(status, exc.message, headers)
        detail = exc.detail if isinstance(exc.detail, list | dict) else None
        return error_response(status, exc.code, exc.message, headers, detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Bad query/path parameters are the caller's syntax error (400); a well-formed JSON
        # body that breaks the schema is unprocessable (422).
        in_body = any(item.get("loc", ("",))[0] == "body" for item in exc.errors())
        message, detail = _validation_message(exc)
        if _ngsi(request):
            # An unknown member or a body that is not JSON is syntactically invalid (CIM 009 5.5.2).
            syntax = any(item.get("type") in ("extra_forbidden", "json_invalid") for item in exc.errors())
            kind = problems.INVALID_REQUEST if syntax else problems.BAD_REQUEST_DATA
            return problems.response(400, message, error_type=kind)
        if in_body:
            return error_response(422, "unprocessable", message, detail=detail)
        return error_response(400, "bad_request", message, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if _ngsi(request):
            return problems.response(exc.status_code, str(exc.detail), headers)
        if exc.status_code == 404 and _page_wanted(request):
            return HTMLResponse(not_found_page(), status_code=404, headers=headers)
        code = _CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(request: Request, exc: PoolTimeout) -> JSONResponse:
        # A route or middleware that takes a connection straight from the pool found none in time.
        return await _ioc(request, e.Busy("the gateway is busy; retry shortly", retry_after_s=2))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        if _ngsi(request):
            return problems.response(500, "internal error; see the gateway log")
        return error_response(500, "internal", "internal error; see the gateway log")


def _ngsi(request: Request) -> bool:
    return problems.applies(request.scope.get("path", ""))
