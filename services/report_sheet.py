"""The availability report as a sheet a commune clerk opens in Excel or LibreOffice: the rows of the
dashboard's report page, headers in the catalogue's words (Vietnamese, or English), names instead
of ids, hours instead of seconds, the period in local time (dd/MM/yyyy HH:mm), UTF-8 with a BOM.

Numbers stay numbers: in Vietnamese with a comma for decimals («99,5», which a spreadsheet set to
vi-VN reads as a number and one set to English as text, never as 995), in English with a dot, as
the page's own CSV downloads write them; every cell goes through services.csvcells. The province's CSV (/api/share/v1/availability) keeps its columns."""

import io
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from services import csvcells, village_terms, words
from services.models import KINDS

_DIGITS = re.compile(r"(\d+)")


def sort_key(text: str) -> tuple[Any, ...]:
    """Names in the order people count them ("Xóm 2" before "Xóm 10"), diacritics after their letter."""
    plain = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    base = "".join(c for c in plain if not unicodedata.combining(c)).casefold()
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(base)), text


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def _local(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%d/%m/%Y %H:%M")


def availability_csv(
    conn: psycopg.Connection,
    rows: Sequence[dict[str, Any]],
    group_by: str,
    t0: datetime,
    t1: datetime,
    *,
    lang: str,
    tz: ZoneInfo,
) -> bytes:
    """The report's rows (services.reports.availability) as the sheet described above."""
    communes: dict[str, str] = dict(conn.execute("SELECT id, name FROM communes").fetchall())
    villages: dict[tuple[str, str], str] = {
        (c, v): n for c, v, n in conn.execute("SELECT commune_id, id, name FROM villages")
    }
    names: dict[str, str | None] = dict(conn.execute("SELECT id, name FROM devices").fetchall())
    term = village_terms.deployment_term(conn)

    def w(key: str) -> str:
        return words.text(key, lang, vt=term)

    def kind_name(kind: str | None) -> str:
        return w(f"kinds.{kind}") if kind in KINDS else kind or ""

    def village(r: dict[str, Any]) -> str:
        return villages.get((r["commune"], r["village"] or ""), r["village"] or "")

    # (header, cell of a row); the first columns name the row as the page does.
    first: list[tuple[str, Any]] = {
        "village": [(w("rep.by_village"), village)],
        "kind": [(w("rep.by_kind"), lambda r: kind_name(r["kind"]))],
        "former_commune": [(w("fc.by_group"), lambda r: r["former_commune"] or w("fc.none"))],
        "device": [
            (w("csv.name"), lambda r: names.get(r["device_id"]) or r["device_id"]),
            (w("csv.device_id"), lambda r: r["device_id"]),
            (w("rep.by_kind"), lambda r: kind_name(r["kind"])),
            (w("rep.by_village"), village),
        ],
    }[group_by]
    columns: list[tuple[str, Any]] = [
        (w("csv.commune"), lambda r: communes.get(r["commune"], r["commune"])),
        *first,
        (w("rep.col_availability"), lambda r: r["availability_pct"]),
        (w("rep.devices"), lambda r: r["devices"]),
        (w("rep.online_now"), lambda r: r["devices_online_now"]),
    ]
    if group_by in ("kind", "former_commune"):
        columns += [
            (w("rep.col_villages"), lambda r: r["villages"]),
            (w("rep.col_villages_ok"), lambda r: r["villages_all_online_now"]),
        ]
    if group_by in ("village", "former_commune"):
        # Two columns per kind the rows have (devices, online now), in the page's order of kinds.
        for k in [k for k in KINDS if any(k in (r["by_kind"] or {}) for r in rows)]:
            columns += [
                (
                    words.text("rep.col_kind_devices", lang, kind=kind_name(k)),
                    lambda r, k=k: (r["by_kind"] or {}).get(k, {}).get("devices", 0),
                ),
                (
                    words.text("rep.col_kind_online", lang, kind=kind_name(k)),
                    lambda r, k=k: (r["by_kind"] or {}).get(k, {}).get("online_now", 0),
                ),
            ]
    columns += [
        (w("rep.online_h"), lambda r: _hours(r["online_s"])),
        (w("rep.offline_h"), lambda r: _hours(r["offline_s"])),
        (w("rep.maint_h"), lambda r: _hours(r["maintenance_s"])),
        (w("rep.col_from"), lambda r: _local(t0, tz)),
        (w("rep.col_to"), lambda r: _local(t1, tz)),
    ]

    def order(r: dict[str, Any]) -> tuple[Any, ...]:
        return sort_key(communes.get(r["commune"], r["commune"])), sort_key(str(first[0][1](r) or ""))

    out = io.StringIO()
    out.write("\ufeff")
    sheet = csvcells.writer(out, decimal_comma=lang == "vi")
    sheet.writerow([h for h, _ in columns])
    for r in sorted(rows, key=order):
        sheet.writerow(["" if (v := get(r)) is None else v for _, get in columns])
    return out.getvalue().encode("utf-8")
