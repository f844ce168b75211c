"""The audit log for admins: operators' actions and every call made with a partner's API key."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway import params
from gateway.deps import Admin, Conn
from services import audit, history, paging
from services.status import utc

router = APIRouter(prefix="/api/v1", tags=["audit"], dependencies=[Depends(params.known_only)])


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor_kind: Literal["user", "key", "system"] = Field(
        description="who acted: an operator, an API key, the IOC"
    )
    actor: str = Field(description="username, or the API key's name")
    key_id: int | None = Field(description="the API key's id (`ioc keys list`)")
    action: str = Field(description="what was done, e.g. `GET /api/share/v1/status`")
    params: dict[str, Any] = Field(description="the call's parameters")
    status: int | None = Field(description="HTTP status answered")
    rows: int | None = Field(description="rows returned")
    communes: list[str] | None = Field(
        description="the communes the entry concerns; null: deployment-wide (shown to admins of every commune)"
    )


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor_kind: Literal["user", "key", "system"] | None = None
    actor: str | None = Field(None, max_length=200)
    key_id: int | None = None
    from_: str | None = Field(None, alias="from", max_length=64, description="ISO 8601; entries at or after")
    to: str | None = Field(None, max_length=64, description="ISO 8601; entries before")
    limit: int = Field(paging.DEFAULT_LIMIT, ge=1, le=paging.MAX_LIMIT)
    cursor: str | None = Field(None, max_length=400)


@router.get("/audit", response_model=AuditPage)
def audit_log(conn: Conn, user: Admin, q: Annotated[AuditQuery, Query()]) -> dict[str, Any]:
    """Who did what, newest first; paged. Admins only; an admin limited to some communes sees the
    entries that concern one of them (deployment-wide entries only admins of every commune see)."""
    since = history.parse_time("from", q.from_) if q.from_ else None
    until = history.parse_time("to", q.to) if q.to else None
    items, nxt = audit.entries(
        conn,
        limit=q.limit,
        cursor=q.cursor,
        communes=user.communes,
        actor_kind=q.actor_kind,
        actor=q.actor,
        key_id=q.key_id,
        since=since,
        until=until,
    )
    for it in items:
        it["at"] = utc(it["at"])
    return {"items": items, "next_cursor": nxt}
