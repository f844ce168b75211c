"""Operators' reports: availability per device, village or kind (the same figures the province gets)."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from gateway import params
from gateway.deps import Conn, CurrentUser, check_commune
from gateway.routes.share import page_of, reply, time_range
from gateway.share_schemas import AvailabilityItem, AvailabilityQuery, Page
from services import reports, share
from services.share import Scope

router = APIRouter(prefix="/api/v1/reports", tags=["reports"], dependencies=[Depends(params.known_only)])


@router.get(
    "/availability", response_model=Page[AvailabilityItem], responses={200: {"content": {"text/csv": {}}}}
)
def availability(
    request: Request, conn: Conn, user: CurrentUser, q: Annotated[AvailabilityQuery, Query()]
) -> Response:
    """Uptime over [from, to) per device, village or (commune, kind): online / (online + offline) time in %,
    auth_failed counting as offline, maintenance and unknown time left out; with how many devices each
    group has and how many are online now. Defaults: the last 24 h, by village. CSV with `format=csv`."""
    check_commune(user, q.commune)
    scope = Scope(user.communes, None, q.commune, q.village, q.kind, q.former_commune)
    now = datetime.now(UTC)
    t0, t1 = time_range(q.from_, q.to, now)
    rows: list[dict[str, Any]] = reports.availability(
        conn, share.report_devices(conn, scope), t0, t1, q.group_by, now
    )
    items, nxt = page_of(rows, q.limit, q.cursor, q.group_by)
    return reply(request, q.format, items, nxt, list(AvailabilityItem.model_fields))
