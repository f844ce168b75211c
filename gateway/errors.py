"""Mapping of errors to the JSON error body of SPEC §6: {"error": {"code", "message"}}; under
/ngsi-ld/ to NGSI-LD ProblemDetails instead (gateway.problems)."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import problems
from services import errors as e

log = logging.getLogger(__name__)

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
    409: "conflict",
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
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, e.RateLimited) else None
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
            unknown = any(item.get("type") == "extra_forbidden" for item in exc.errors())
            kind = problems.INVALID_REQUEST if unknown else problems.BAD_REQUEST_DATA
            return problems.response(400, message, error_type=kind)
        if in_body:
            return error_response(422, "unprocessable", message, detail=detail)
        return error_response(400, "bad_request", message, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if _ngsi(request):
            return problems.response(exc.status_code, str(exc.detail), headers)
        code = _CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        if _ngsi(request):
            return problems.response(500, "internal error; see the gateway log")
        return error_response(500, "internal", "internal error; see the gateway log")


def _ngsi(request: Request) -> bool:
    return problems.applies(request.scope.get("path", ""))
