"""Errors of the NGSI-LD view as RFC 7807 ProblemDetails (ETSI GS CIM 009 clause 5.5.3).

NGSI-LD clients read `type` to tell errors apart, so every error under `/ngsi-ld/` is a
ProblemDetails object served as `application/json` (as CIM 009 asks, not
`application/problem+json`). Where CIM 009 defines an error type (Table 5.5.2-1) it is used;
it defines none for 401, 403, 406 and 429, so those are `about:blank` with the HTTP status
phrase as title, as RFC 7807 section 4.2 prescribes. The rest of the API keeps SPEC §6's
`{"error": ...}` shape.
"""

from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

PREFIX = "/ngsi-ld/"
ERRORS_URI = "https://uri.etsi.org/ngsi-ld/errors/"
INVALID_REQUEST = "InvalidRequest"
BAD_REQUEST_DATA = "BadRequestData"
RESOURCE_NOT_FOUND = "ResourceNotFound"
OPERATION_NOT_SUPPORTED = "OperationNotSupported"
CONFLICT = "Conflict"
ALREADY_EXISTS = "AlreadyExists"
INTERNAL_ERROR = "InternalError"
TITLES = {
    INVALID_REQUEST: "The request is syntactically invalid",
    BAD_REQUEST_DATA: "The request includes input data which does not meet the requirements of the operation",
    RESOURCE_NOT_FOUND: "The referred resource has not been found",
    OPERATION_NOT_SUPPORTED: "The operation is not supported",
    CONFLICT: "The operation conflicts with the current state of the system",
    ALREADY_EXISTS: "The referred element already exists",
    INTERNAL_ERROR: "There has been an error during the operation execution",
}
# The NGSI-LD error type of each status this gateway answers with, where CIM 009 has one.
BY_STATUS = {
    400: BAD_REQUEST_DATA,
    404: RESOURCE_NOT_FOUND,
    405: OPERATION_NOT_SUPPORTED,
    409: CONFLICT,
    500: INTERNAL_ERROR,
    503: INTERNAL_ERROR,
}


def applies(path: str) -> bool:
    """Whether an error on this path is answered as ProblemDetails."""
    return path.startswith(PREFIX)


def response(
    status: int, detail: str, headers: dict[str, str] | None = None, error_type: str | None = None
) -> JSONResponse:
    """A ProblemDetails answer; `error_type` is a CIM 009 type name, else the status decides."""
    name = error_type or BY_STATUS.get(status)
    body: dict[str, Any] = {
        "type": ERRORS_URI + name if name else "about:blank",
        "title": TITLES[name] if name else _phrase(status),
        "status": status,
        "detail": detail,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemDetails(BaseModel):
    type: str = Field(
        description="https://uri.etsi.org/ngsi-ld/errors/{BadRequestData, InvalidRequest, ResourceNotFound, "
        "OperationNotSupported, InternalError} or about:blank (401, 403, 406, 429: CIM 009 defines none)",
        examples=["https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"],
    )
    title: str = Field(description="short summary of the error type")
    status: int = Field(description="the HTTP status", examples=[404])
    detail: str = Field(
        description="what went wrong, for people",
        examples=["no entity urn:ngsi-ld:Device:thoai-giang:spk-9"],
    )


def _doc(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ProblemDetails, "description": description, **extra}


OPENAPI: dict[int | str, dict[str, Any]] = {
    400: _doc("bad query parameter or id (BadRequestData), unknown parameter (InvalidRequest)"),
    401: _doc("missing, unknown, revoked or expired key (about:blank)"),
    403: _doc("outside the key's communes or kinds (about:blank)"),
    404: _doc("no such entity (ResourceNotFound)"),
    406: _doc(
        "Accept admits none of application/json, application/ld+json (and application/geo+json for entities) (about:blank)"
    ),
    429: _doc(
        "over the key's rate; see Retry-After (about:blank)",
        headers={"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    ),
}
