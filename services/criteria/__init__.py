"""The smart-commune criteria report (SPEC §10): each indicator of the criteria file computed from
the IOC's own data over whole local days, with its target, whether it is met, and the evidence.

The same report is the JSON of `GET /api/v1/reports/criteria`, its CSV and PDF, and the items of
the daily push to the province (`daily_report`).
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from services.criteria import measures
from services.criteria.catalogue import Criteria, CriteriaError, Indicator, effective
from services.errors import InvalidInput

__all__ = ["Criteria", "CriteriaError", "Indicator", "effective", "month", "report"]

DEFAULT_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MAX_DAYS = 366


def month(text: str) -> tuple[date, date]:
    """`2026-11` -> its first and last day; InvalidInput for anything else."""
    try:
        y, m = (int(x) for x in text.split("-"))
        if len(text) != 7 or text[4] != "-":
            raise ValueError
        first = date(y, m, 1)
    except ValueError:
        raise InvalidInput(f"period {text!r} must be a month, YYYY-MM (e.g. 2026-11)") from None
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def _utc(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tz).astimezone(UTC)


def _value(
    ind: Indicator,
    conn: psycopg.Connection,
    w: measures.Window,
    vs: list[measures.Village],
    by_kind: dict[str, tuple[float | None, list[dict[str, Any]]]],
) -> Any:
    s = ind.settings
    if ind.measure == "availability":
        if s["kind"] not in by_kind:
            by_kind[s["kind"]] = measures.availability(conn, w, vs, s["kind"])
        return by_kind[s["kind"]]
    if ind.measure == "village_coverage":
        return measures.village_coverage(conn, w, vs, s["kind"], s["min_availability_pct"])
    if ind.measure == "broadcast_reach":
        return measures.broadcast_reach(conn, w)
    if ind.measure == "data_shared":
        return measures.data_shared(conn, w)
    raise AssertionError(f"measure {ind.measure} has no code")  # catalogue.MEASURES and this agree


def _communes(conn: psycopg.Connection, communes: Sequence[str] | None) -> list[dict[str, Any]]:
    sql, args = "SELECT id, name, province FROM communes", []
    if communes is not None:
        sql += " WHERE id = ANY(%s)"
        args.append(list(communes))
    return [
        {"id": r[0], "name": r[1], "province": r[2]}
        for r in conn.execute(sql + " ORDER BY id", args)  # type: ignore[call-overload]
    ]


def report(
    conn: psycopg.Connection,
    start: date,
    end: date,
    communes: list[str] | None,
    *,
    criteria: Criteria | None = None,
    tz: ZoneInfo = DEFAULT_TZ,
    lang: str = "vi",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The criteria over the local days start..end (both included) for `communes` (None: all).

    Returns `{"period", "communes", "criteria", "items": [{"id", "name", "source", "value",
    "target", "met", "unit", "measure", "evidence"}], "availability"}` (the last: one row per
    village and kind of the kinds the indicators judge, for charts); `value` is None (and `met` false) when the
    period holds nothing to judge by. Time after `now` is not counted. `criteria` defaults to the
    file in force (IOC_CRITERIA_FILE, else the shipped default).
    """
    if end < start:
        raise InvalidInput(f"the period ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidInput(f"a criteria report covers at most {MAX_DAYS} days")
    crit = criteria if criteria is not None else effective()
    now = now or datetime.now(UTC)
    scope = tuple(communes) if communes is not None else None
    kinds = tuple(dict.fromkeys(i.settings["kind"] for i in crit.indicators if "kind" in i.settings))
    w = measures.Window(_utc(start, tz), _utc(end + timedelta(days=1), tz), scope, now, kinds)
    vs = measures.villages(conn, w)
    items = []
    by_kind: dict[str, tuple[float | None, list[dict[str, Any]]]] = {}
    for ind in crit.indicators:
        value, evidence = _value(ind, conn, w, vs, by_kind)
        items.append(
            {
                "id": ind.id,
                "name": ind.label(lang),
                "source": ind.source,
                "value": value,
                "target": ind.target,
                "met": value is not None and value >= ind.target,
                "unit": ind.unit,
                "measure": ind.measure,
                "evidence": evidence,
            }
        )
    # availability by village and kind, for each kind an indicator judges (the report's chart)
    for kind in kinds:
        if kind not in by_kind:
            by_kind[kind] = measures.availability(conn, w, vs, kind)
    return {
        "period": {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "tz": str(tz),
            "start_at": w.start,
            "end_at": w.end,
            "complete": w.end <= now,
        },
        "communes": _communes(conn, communes),
        "criteria": crit.name,
        "items": items,
        "availability": [r for kind in by_kind for r in by_kind[kind][1]],
    }
