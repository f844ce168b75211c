"""Operators' reports: availability per device, village or kind (the same figures the province gets)."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import Field

from gateway import params
from gateway.deps import Conn, CurrentUser, check_commune
from gateway.routes.share import page_of, reply, time_range, wants_csv
from gateway.share_schemas import AvailabilityItem, AvailabilityQuery, Page
from services import report_sheet, reports, share
from services.share import Scope

router = APIRouter(prefix="/api/v1/reports", tags=["reports"], dependencies=[Depends(params.known_only)])


class ReportQuery(AvailabilityQuery):
    lang: Literal["vi", "en"] | None = Field(
        default=None, description="words of the CSV's headers and names; default IOC_LANG"
    )


@router.get(
    "/availability", response_model=Page[AvailabilityItem], responses={200: {"content": {"text/csv": {}}}}
)
def availability(
    request: Request, conn: Conn, user: CurrentUser, q: Annotated[ReportQuery, Query()]
) -> Response:
    """Uptime over [from, to) per device, village or (commune, kind): online / (online + offline) time in %,
    auth_failed counting as offline, maintenance and unknown time left out; with how many devices each
    group has and how many are online now. Defaults: the last 24 h, by village. With `format=csv`, the
    report page's table for a spreadsheet: UTF-8 with BOM, headers and names in `lang` (Vietnamese by
    default), hours, the period in IOC_TZ as dd/MM/yyyy HH:mm. / Báo cáo mức độ sẵn sàng (CSV mở được
    bằng Excel)."""
    check_commune(user, q.commune)
    scope = Scope(user.communes, None, q.commune, q.village, q.kind, q.former_commune)
    now = datetime.now(UTC)
    t0, t1 = time_range(q.from_, q.to, now)
    rows: list[dict[str, Any]] = reports.availability(
        conn, share.report_devices(conn, scope), t0, t1, q.group_by, now
    )
    items, nxt = page_of(rows, q.limit, q.cursor, q.group_by)
    if not wants_csv(request, q.format):
        return reply(request, q.format, items, nxt, list(AvailabilityItem.model_fields))
    request.state.audit_rows = len(items)
    settings = request.app.state.settings
    body = report_sheet.availability_csv(
        conn, items, q.group_by, t0, t1, lang=q.lang or settings.lang, tz=ZoneInfo(settings.tz)
    )
    headers = {"X-Next-Cursor": nxt} if nxt is not None else {}
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
