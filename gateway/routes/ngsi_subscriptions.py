"""NGSI-LD subscriptions (ETSI GS CIM 009 §5.8): a partner's key subscribes to changes of Device
entities and is notified by HTTP POST (§5.11) through the push outbox of `ioc alerts`.

Each key sees and changes only its own subscriptions; notifications carry only the devices of
the key's communes and kinds. Errors are NGSI-LD ProblemDetails (gateway.problems).
"""

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway import problems
from gateway.deps import Conn
from gateway.routes.ngsi import CONTEXT_PATH, JSON, LD_JSON, negotiate, page_links, respond
from gateway.routes.share import ShareKey
from services.errors import Conflict
from services.ngsi_subscriptions import store


def no_parameters(request: Request) -> None:
    """An operation that takes no query parameter refuses any (CIM 009 §6.3.20: InvalidRequest)."""
    if request.method != "GET" or request.url.path.rstrip("/") != "/ngsi-ld/v1/subscriptions":
        names = sorted({k for k, _ in request.query_params.multi_items()})
        if names:
            raise RequestValidationError(
                [{"type": "extra_forbidden", "loc": ("query", n), "msg": "unknown parameter"} for n in names]
            )


MERGE_PATCH = "application/merge-patch+json"


def body_media(request: Request, key: ShareKey) -> None:
    """415 for a body that is not JSON or JSON-LD (CIM 009 §6.3.4; PATCH takes JSON Merge Patch too),
    once the key is known (a caller without one gets 401 first)."""
    del key
    if request.method not in ("POST", "PATCH"):
        return
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = (JSON, LD_JSON, MERGE_PATCH) if request.method == "PATCH" else (JSON, LD_JSON)
    if media not in allowed:
        raise HTTPException(415, f"Content-Type {media or '(none)'!r} is not one of {', '.join(allowed)}")


router = APIRouter(
    prefix="/ngsi-ld/v1",
    tags=["ngsi-ld"],
    responses=problems.OPENAPI,
    dependencies=[Depends(negotiate), Depends(body_media), Depends(no_parameters)],
)
MAX_SUBSCRIPTIONS = 1000


class _Loose(BaseModel):
    # Unknown members are InvalidRequest (400), as CIM 009 asks of an unsupported feature.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EntitySelector(_Loose):
    id: str | None = Field(None, max_length=300, description="urn:ngsi-ld:Device:{commune}:{device}")
    idPattern: str | None = Field(None, max_length=200, description="a regular expression on the id")  # noqa: N815
    type: str = Field(max_length=200, description="Device (the only type offered)")


class KeyValuePair(_Loose):
    key: str = Field(max_length=100, description="an HTTP header to send with each notification")
    value: str = Field(max_length=2000)


class Endpoint(_Loose):
    uri: str = Field(max_length=2000, description="http:// or https:// URL the notifications are POSTed to")
    accept: str | None = Field(
        None, max_length=100, description="application/json (default) or application/ld+json"
    )
    receiverInfo: list[KeyValuePair] | None = Field(None, max_length=20)  # noqa: N815


class EndpointPatch(Endpoint):
    uri: str | None = Field(None, max_length=2000)  # type: ignore[assignment]


class _Status(_Loose):
    # Read-only status members a client may send back as it got them; ignored.
    timesSent: int | None = None  # noqa: N815
    lastNotification: str | None = Field(None, max_length=64)  # noqa: N815
    lastSuccess: str | None = Field(None, max_length=64)  # noqa: N815
    lastFailure: str | None = Field(None, max_length=64)  # noqa: N815
    status: str | None = Field(None, max_length=20)


class NotificationParams(_Status):
    attributes: list[str] | None = Field(
        None, max_length=100, description="attributes to send; all when left out"
    )
    format: str | None = Field(None, max_length=20, description="normalized (default), keyValues or concise")
    sysAttrs: bool | None = Field(None, description="true: createdAt and modifiedAt in the entities")  # noqa: N815
    endpoint: Endpoint


class NotificationPatch(NotificationParams):
    endpoint: EndpointPatch | None = None  # type: ignore[assignment]


class SubscriptionIn(_Loose):
    id: str | None = Field(None, max_length=300, description="a URI; made up when left out")
    type: str = Field(max_length=20, description="Subscription")
    subscriptionName: str | None = Field(None, max_length=200)  # noqa: N815
    description: str | None = Field(None, max_length=2000)
    entities: list[EntitySelector] | None = Field(None, max_length=100)
    watchedAttributes: list[str] | None = Field(None, max_length=100)  # noqa: N815
    q: str | None = Field(None, max_length=500, description='e.g. deviceState=="offline";kind=="speaker"')
    notification: NotificationParams
    expiresAt: str | None = Field(None, max_length=64, description="ISO 8601; in the future")  # noqa: N815
    throttling: float | None = Field(None, description="at least this many seconds between notifications")
    timeInterval: float | None = Field(  # noqa: N815
        None, description="periodic: every matching entity every this many seconds (at least 5)"
    )
    isActive: bool | None = None  # noqa: N815
    notificationTrigger: list[str] | None = Field(  # noqa: N815
        None, max_length=10, description="attributeCreated and/or attributeUpdated (the default: both)"
    )
    status: str | None = Field(None, max_length=20, description="read-only; ignored")
    context: Any = Field(None, alias="@context", description="ignored: the IOC's terms are used")


class SubscriptionPatch(SubscriptionIn):
    type: str | None = Field(None, max_length=20)  # type: ignore[assignment]
    notification: NotificationPatch | None = None  # type: ignore[assignment]


class SubscriptionsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=MAX_SUBSCRIPTIONS)
    offset: int = Field(0, ge=0, le=10_000_000)
    count: bool = Field(False, description="add the NGSILD-Results-Count header")


def _context_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + CONTEXT_PATH


def _given(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True, by_alias=True)


_CREATED: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "created; no body",
        "headers": {"Location": {"description": "the new subscription", "schema": {"type": "string"}}},
    },
    409: {
        "model": problems.ProblemDetails,
        "description": "a subscription with this id exists (AlreadyExists)",
    },
}


@router.post("/subscriptions", status_code=201, response_class=Response, responses=_CREATED)
def create(request: Request, conn: Conn, key: ShareKey, body: Annotated[SubscriptionIn, Body()]) -> Response:
    """Subscribe to changes of Device entities (CIM 009 §5.8.1): `entities` (type Device, `id` or
    `idPattern`) and/or `watchedAttributes`, `q`, `notification.endpoint.uri` (http or https),
    `accept`, `receiverInfo`, `notification.attributes` and `format`, `throttling`, `expiresAt`,
    `isActive`. / Đăng ký nhận thông báo khi thiết bị thay đổi."""
    doc = _given(body)
    request.state.audit_params = store.audit_params(doc.get("id"), doc)
    try:
        sub = store.create(conn, key, doc, _context_url(request))
    except Conflict as err:
        conn.rollback()
        return problems.response(409, err.message, error_type=problems.ALREADY_EXISTS)
    request.state.audit_params = store.audit_params(sub["id"], doc)
    return Response(
        status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{quote(sub['id'], safe=':')}"}
    )


@router.get("/subscriptions", responses={200: {"content": {LD_JSON: {}}}})
def subscriptions(
    request: Request, conn: Conn, key: ShareKey, p: Annotated[SubscriptionsQuery, Query()]
) -> Response:
    """This key's subscriptions, oldest first, with their status (`timesSent`, `lastNotification`,
    `lastSuccess`, `lastFailure`; `status` active, paused or expired); paged by `limit` and
    `offset`, the next page in a `Link: rel="next"` header. / Các đăng ký của khóa này."""
    items, total = store.page(conn, key, p.limit, p.offset)
    request.state.audit_rows = len(items)
    headers = {"NGSILD-Results-Count": str(total)} if p.count else {}
    return respond(request, items, headers, page_links(request, p.offset, p.limit, len(items), total))


@router.get("/subscriptions/{subscription_id}", responses={200: {"content": {LD_JSON: {}}}})
def subscription(subscription_id: str, request: Request, conn: Conn, key: ShareKey) -> Response:
    """One of this key's subscriptions; 404 when it has none of this id. / Một đăng ký."""
    request.state.audit_params = {"subscription_id": subscription_id}
    return respond(request, store.get(conn, key, subscription_id))


@router.patch("/subscriptions/{subscription_id}", status_code=204, response_class=Response)
def update(
    subscription_id: str,
    request: Request,
    conn: Conn,
    key: ShareKey,
    body: Annotated[SubscriptionPatch, Body()],
) -> Response:
    """Change a subscription (CIM 009 §5.8.2): the members given replace the stored ones (those of
    `notification` and its `endpoint` one by one; `null` removes one); e.g. `{"isActive": false}`
    pauses it. The result is checked as a whole. / Sửa một đăng ký."""
    doc = _given(body)
    request.state.audit_params = store.audit_params(subscription_id, doc)
    store.update(conn, key, subscription_id, doc)
    return Response(status_code=204)


@router.delete("/subscriptions/{subscription_id}", status_code=204, response_class=Response)
def delete(subscription_id: str, request: Request, conn: Conn, key: ShareKey) -> Response:
    """End a subscription; notifications still queued for it are dropped. / Xóa một đăng ký."""
    request.state.audit_params = {"subscription_id": subscription_id}
    store.delete(conn, key, subscription_id)
    return Response(status_code=204)
