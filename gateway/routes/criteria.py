"""The smart-commune criteria report for operators: JSON, CSV (the table) and the printable PDF."""

import io
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway import params
from gateway.deps import Conn, CurrentUser, check_commune
from services import criteria, csvcells, timerange, words
from services.criteria import pdf
from services.errors import InvalidInput, NotFound


def _text(key: str, lang: str, **fields: Any) -> str:
    """A catalogue word in `lang` (Vietnamese when it has none), with its {fields} filled in."""
    return words.text(key, lang, **fields)


router = APIRouter(prefix="/api/v1/reports", tags=["reports"], dependencies=[Depends(params.known_only)])
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class CriteriaItem(BaseModel):
    id: str = Field(description="indicator id from the criteria file, e.g. radio_villages")
    name: str = Field(description="its name, in `lang` (Vietnamese when the file has no English)")
    source: str = Field(description="the decision it comes from, e.g. Quyết định 318/QĐ-TTg, tiêu chí 8")
    value: float | None = Field(description="the figure over the period in `unit`; null: nothing to judge by")
    target: float = Field(description="met when value >= target")
    met: bool
    unit: Literal["%", "count"]
    measure: str = Field(description="village_coverage, availability, broadcast_reach or data_shared")
    evidence: list[dict[str, Any]] = Field(description="the rows the value was computed from")


class CriteriaPeriod(BaseModel):
    from_: date = Field(alias="from", description="first local day")
    to: date = Field(description="last local day (included)")
    tz: str
    start_at: datetime
    end_at: datetime
    complete: bool = Field(description="false while the period is not over: figures up to now")


class CriteriaReport(BaseModel):
    period: CriteriaPeriod
    communes: list[dict[str, Any]]
    criteria: str | None = Field(description="the name of the criteria set (the file's `name`)")
    items: list[CriteriaItem]
    availability: list[dict[str, Any]] = Field(description="availability by village and kind, for charts")


def _day(name: str, value: str) -> date:
    if not _DAY.fullmatch(value):
        raise InvalidInput(f"{name} {value!r} must be a day, YYYY-MM-DD")
    try:
        d = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} {value!r} is not a day of the calendar") from None
    if not timerange.EARLIEST.date() <= d <= timerange.LATEST.date():
        raise InvalidInput(f"{name} {value!r} is out of range")
    return d


def period_of(period: str | None, from_: str | None, to: str | None, tz: ZoneInfo) -> tuple[date, date]:
    """`period=YYYY-MM`, or `from`/`to` (local days, both included); neither: this month so far."""
    if period is not None and (from_ is not None or to is not None):
        raise InvalidInput("give period (a month) or from/to (days), not both")
    if period is not None:
        first, last = criteria.month(period)
        if not timerange.EARLIEST.date() <= first <= timerange.LATEST.date():
            raise InvalidInput(f"period {period!r} is out of range")
        return first, last
    if (from_ is None) != (to is None):
        raise InvalidInput("give both from and to (days, YYYY-MM-DD), or period=YYYY-MM")
    if from_ is not None and to is not None:
        return _day("from", from_), _day("to", to)
    today = datetime.now(tz).date()
    return today.replace(day=1), today


def _communes(
    conn: Conn, user_communes: tuple[str, ...] | list[str] | None, commune: str | None
) -> list[str] | None:
    if commune is None:
        return None if user_communes is None else list(user_communes)
    if conn.execute("SELECT 1 FROM communes WHERE id = %s", (commune,)).fetchone() is None:
        raise NotFound(f"no commune {commune}")
    return [commune]


def _plain(v: float) -> int | float:
    return int(v) if v == int(v) else v


def _csv(rep: dict[str, Any], lang: str) -> bytes:
    """The indicators as a table: Vietnamese headers (or English), UTF-8 with a BOM so that Excel
    reads the diacritics; numbers as numbers (in Vietnamese with a comma for decimals, in English a
    dot, like the page's own CSV downloads), every cell through services.csvcells."""
    t = _text
    columns = (
        "crit.col_id",
        "crit.col_name",
        "crit.col_source",
        "crit.col_value",
        "crit.col_unit",
        "crit.col_target",
        "crit.col_met",
    )
    out = io.StringIO()
    out.write("\ufeff")
    w = csvcells.writer(out, decimal_comma=lang == "vi")
    w.writerow([t(c, lang) for c in columns])
    for i in rep["items"]:
        unit = "%" if i["unit"] == "%" else t("crit.unit_count", lang)
        w.writerow(
            [
                i["id"],
                i["name"],
                i["source"],
                "" if i["value"] is None else _plain(i["value"]),
                unit,
                _plain(i["target"]),
                t("crit.met" if i["met"] else "crit.not_met", lang),
            ]
        )
    return out.getvalue().encode("utf-8")


def _filename(rep: dict[str, Any], ext: str) -> str:
    who = rep["communes"][0]["id"] if len(rep["communes"]) == 1 else "all"
    return f"tieu-chi-{who}-{rep['period']['from']}-{rep['period']['to']}.{ext}"


@router.get(
    "/criteria",
    response_model=CriteriaReport,
    responses={200: {"content": {"text/csv": {}, "application/pdf": {}}}},
)
def criteria_report(
    request: Request,
    conn: Conn,
    user: CurrentUser,
    period: Annotated[str | None, Query(max_length=16, description="a month, YYYY-MM (e.g. 2026-11)")] = None,
    from_: Annotated[
        str | None, Query(alias="from", max_length=16, description="first day, YYYY-MM-DD")
    ] = None,
    to: Annotated[str | None, Query(max_length=16, description="last day (included), YYYY-MM-DD")] = None,
    commune: Annotated[str | None, Query(max_length=63, description="one commune; default: yours")] = None,
    format: Annotated[
        Literal["json", "csv", "pdf"] | None, Query(description="json (default), csv or pdf")
    ] = None,
    lang: Annotated[
        Literal["vi", "en"] | None, Query(description="names and words; default IOC_LANG")
    ] = None,
) -> Response:
    """The smart-commune criteria (IOC_CRITERIA_FILE, else the shipped default of Quyết định
    318/QĐ-TTg, criterion 8) over a month (`period=2026-11`) or the days `from`..`to` in IOC_TZ,
    for `commune` or every commune you may see: each indicator's value, target, whether it is met,
    and the evidence rows. `format=csv` is the table (UTF-8 with BOM, headers in `lang`);
    `format=pdf` the printable A4 self-assessment, one section per commune, with charts and a
    signature block. / Báo cáo tự đánh giá tiêu chí xã thông minh (JSON, CSV, PDF)."""
    check_commune(user, commune)
    settings = request.app.state.settings
    tz = ZoneInfo(settings.tz)
    lang = lang or settings.lang
    start, end = period_of(period, from_, to, tz)
    crit = criteria.effective(settings.criteria_file)
    scope = _communes(conn, user.communes, commune)
    now = datetime.now(UTC)
    if format == "pdf":
        ids = (
            scope
            if scope is not None
            else [r[0] for r in conn.execute("SELECT id FROM communes ORDER BY id")]
        )
        parts = []
        for cid in ids:
            rep = criteria.report(conn, start, end, [cid], criteria=crit, tz=tz, lang=lang, now=now)
            names: dict[str, str] = dict(
                conn.execute("SELECT id, name FROM villages WHERE commune_id = %s", (cid,)).fetchall()
            )
            parts.append((rep, names))
        if not parts:
            raise NotFound("no commune to report on")
        body = pdf.render(parts, lambda key, **f: _text(key, lang, **f), lang, tz)
        name = _filename(parts[0][0] if len(parts) == 1 else {**parts[0][0], "communes": []}, "pdf")
        return Response(
            body,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    rep = criteria.report(conn, start, end, scope, criteria=crit, tz=tz, lang=lang, now=now)
    if format == "csv":
        return Response(
            _csv(rep, lang),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{_filename(rep, "csv")}"'},
        )
    return Response(orjson.dumps(rep), media_type="application/json")


def setup(app: FastAPI) -> None:
    """Check the criteria file as the app is made: a typo stops `ioc gateway` with the file's lines
    (services.errors.ConfigError, one line per mistake) instead of failing the first report."""
    criteria.effective(app.state.settings.criteria_file)
