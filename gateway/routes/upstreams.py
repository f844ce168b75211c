"""Where the IOC's pushes stand: every upstream of IOC_UPSTREAMS_FILE and every NGSI-LD subscription."""

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from gateway import params
from gateway.deps import Admin, Conn
from services.push import status

router = APIRouter(prefix="/api/v1", tags=["upstreams"], dependencies=[Depends(params.known_only)])


class Target(BaseModel):
    id: str = Field(description="`upstream:<id>` (IOC_UPSTREAMS_FILE) or `ngsi:<subscription id>`")
    kind: Literal["upstream", "ngsi"]
    configured: bool = Field(
        description="false: an upstream no longer in IOC_UPSTREAMS_FILE (its rows are kept)"
    )
    backlog: int = Field(description="items not delivered yet (queued, and for an upstream not yet queued)")
    pending_pushes: int = Field(description="outbox rows (POSTs) waiting")
    oldest_pending_at: datetime | None = Field(description="when the oldest waiting push was queued")
    dead: int = Field(description="pushes the receiver refused (a 4xx) and that were set aside")
    delivered_total: int
    failures_total: int = Field(description="failed attempts since the target first existed")
    last_success_at: datetime | None
    last_error: str | None = Field(description="what the last failed attempt came to (never a credential)")
    last_error_kind: (
        Literal["token", "auth", "refused", "server", "tls", "timeout", "network", "gone", "other"] | None
    ) = Field(description="what kind of trouble last_error is")
    last_error_at: datetime | None
    failing: bool = Field(description="the last attempt failed (last_error_at is after last_success_at)")


class TargetList(BaseModel):
    items: list[Target]
    next_cursor: None = None


@router.get("/upstreams", response_model=TargetList)
def upstreams(conn: Conn, user: Admin) -> dict[str, Any]:
    """Each push target with its backlog and last error (admins). A target whose `last_error_at` is
    later than its `last_success_at` is failing now; its pushes wait and are retried. An admin
    limited to some communes sees the upstreams that carry one of them (an upstream of every
    commune and NGSI-LD subscriptions: admins of every commune)."""
    communes = list(user.communes) if user.communes is not None else None
    return {"items": status.targets(conn, communes), "next_cursor": None}
