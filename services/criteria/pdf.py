"""The printable self-assessment (A4, Vietnamese by default): the criteria report as HTML with
inline SVG charts, laid out by WeasyPrint into a PDF.

No script and no network: the charts are SVG drawn here, the font is the system's DejaVu Sans
(Debian's fonts-dejavu-core, installed by deploy/install-deps.sh), which has every Vietnamese
letter with its stacked marks (ễ, ự, ặ). Every word comes from the catalogue (`t`).
"""

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from services.models import KINDS
from services.village_terms import term_of

Words = Callable[..., str]
# one colour per kind, the page's (dashboard/app.css) where it has one
KIND_COLOURS = {
    "speaker": "#1f6fb2",
    "camera": "#7b3fa0",
    "eboard": "#c77700",
    "wifi": "#11806a",
    "gateway": "#555",
}
OK, BAD, GRID, INK = "#1e7b34", "#b3261e", "#d0d4da", "#222"

_CSS = """
@page { size: A4; margin: 16mm 16mm 18mm 18mm;
  @bottom-center { content: "%(page)s " counter(page) "/" counter(pages); font-size: 8pt; color: #555; } }
html { font-family: "DejaVu Sans", sans-serif; font-size: 9.5pt; color: #222; line-height: 1.35; }
table.head, table.sign { border: none; margin-bottom: 8mm; } table.head td, table.sign td { border: none; width: 50%%;
  text-align: center; padding: 0; }
.head b { display: block; } .head .rule { margin: 1mm auto 0; width: 40%%; border-top: 0.6pt solid #222; }
h1 { font-size: 13pt; text-align: center; margin: 0 0 1mm; text-transform: uppercase; }
.sub { text-align: center; margin: 0 0 5mm; }
h2 { font-size: 10.5pt; margin: 6mm 0 2mm; }
table { width: 100%%; border-collapse: collapse; page-break-inside: auto; }
th, td { border: 0.5pt solid #999; padding: 1.2mm 1.5mm; vertical-align: top; }
th { background: #eef1f5; font-weight: bold; text-align: left; }
td.num { text-align: right; white-space: nowrap; } td.c { text-align: center; }
.met { color: #1e7b34; font-weight: bold; } .not { color: #b3261e; font-weight: bold; } .muted { color: #666; }
.src { font-size: 8pt; color: #444; }
.note { font-size: 8.5pt; color: #555; margin: 2mm 0; }
.chart { page-break-inside: avoid; margin: 2mm 0 4mm; }
table.sign { margin-top: 12mm; page-break-inside: avoid; } .sign .date { font-style: italic; margin-bottom: 2mm; }
td.verdict { white-space: nowrap; text-align: center; }
.sign .role { font-weight: bold; text-transform: uppercase; } .sign .hint { font-style: italic; font-size: 8.5pt; }
.sign .space { height: 24mm; }
.commune { page-break-before: always; } .commune:first-child { page-break-before: auto; }
"""


def number(v: float | None, lang: str, decimals: int = 1) -> str:
    """A number as people of the language write it: 95,5 in Vietnamese, 95.5 in English."""
    if v is None:
        return "—"
    s = f"{v:,.{decimals}f}" if v != int(v) else f"{int(v):,}"
    if lang == "vi":
        s = s.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return s


def _day(d: date) -> str:
    return d.strftime("%d/%m/%Y")


def value_text(item: dict[str, Any], t: Words, lang: str) -> str:
    """An indicator's value with its unit, or "no data"."""
    v = item["value"]
    if v is None:
        return t("crit.no_data")
    return f"{number(v, lang)} %" if item["unit"] == "%" else f"{number(v, lang, 0)} {t('crit.unit_count')}"


def target_text(item: dict[str, Any], t: Words, lang: str) -> str:
    n = item["target"]
    return (
        f"≥ {number(n, lang)} %" if item["unit"] == "%" else f"≥ {number(n, lang, 0)} {t('crit.unit_count')}"
    )


def _vt(t: Words, key: str, term: str | None, **fields: Any) -> str:
    """A catalogue phrase with the commune's village term ({vt}/{Vt}) put in."""
    return t(key, vt=term or t("crit.village_term"), **fields)


def _natural(name: str) -> list[Any]:
    """ "Xóm 2" before "Xóm 10", as people count."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


# Villages per availability chart: one chart must fit on a page (an SVG does not break across pages).
CHART_ROWS = 560


def availability_charts(
    rows: Sequence[dict[str, Any]], villages: dict[str, str], t: Words, lang: str
) -> list[str]:
    """The availability chart, split into charts that each fit a page (a commune of many villages)."""
    kinds = {r["kind"] for r in rows}
    per_chart = max(1, CHART_ROWS // (len(kinds) * 9 + 7))
    names = sorted(
        {r["village"] or "" for r in rows}, key=lambda v: (v == "", _natural(villages.get(v) or v))
    )
    chunks = [set(names[i : i + per_chart]) for i in range(0, len(names), per_chart)]
    return [
        availability_svg([r for r in rows if (r["village"] or "") in c], villages, t, lang) for c in chunks
    ]


def availability_svg(rows: Sequence[dict[str, Any]], villages: dict[str, str], t: Words, lang: str) -> str:
    """Grouped horizontal bars: for each village, the availability of each kind over the period."""
    by_village: dict[str, dict[str, float | None]] = defaultdict(dict)
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    for r in rows:
        by_village[r["village"] or ""][r["kind"]] = r["availability_pct"]
    order = sorted(by_village, key=lambda v: (v == "", _natural(villages.get(v) or v)))
    label_w, bar_h, gap, width = 150, 9, 7, 500
    plot_w = width - label_w - 40
    height = 28 + sum(len(kinds) * bar_h + gap for _ in order) + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * 1.0}pt" height="{height}pt" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans" font-size="8">'
    ]
    y0 = 20
    for tick in (0, 25, 50, 75, 100):
        x = label_w + plot_w * tick / 100
        out.append(
            f'<line x1="{x:.1f}" y1="{y0 - 4}" x2="{x:.1f}" y2="{height - 22}" stroke="{GRID}" stroke-width="0.6"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{y0 - 7}" text-anchor="middle" fill="#555">{tick} %</text>')
    y = y0
    for v in order:
        group_h = len(kinds) * bar_h
        name = villages.get(v) or (v or t("crit.no_village"))
        out.append(
            f'<text x="{label_w - 6}" y="{y + group_h / 2 + 3:.1f}" text-anchor="end" fill="{INK}">{escape(name)}</text>'
        )
        for k in kinds:
            pct = by_village[v].get(k)
            if k in by_village[v] and pct is not None:
                w = plot_w * max(0.0, min(100.0, pct)) / 100
                out.append(
                    f'<rect x="{label_w}" y="{y + 1}" width="{w:.1f}" height="{bar_h - 2}" fill="{KIND_COLOURS[k]}"/>'
                )
                out.append(
                    f'<text x="{label_w + w + 3:.1f}" y="{y + bar_h - 2}" fill="{INK}">{escape(number(pct, lang))} %</text>'
                )
            elif k in by_village[v]:
                out.append(
                    f'<text x="{label_w + 3}" y="{y + bar_h - 2}" fill="#777">{escape(t("crit.no_data"))}</text>'
                )
            y += bar_h
        y += gap
    lx = label_w
    for k in kinds:
        out.append(f'<rect x="{lx}" y="{height - 14}" width="9" height="9" fill="{KIND_COLOURS[k]}"/>')
        label = escape(t(f"kinds.{k}"))
        out.append(f'<text x="{lx + 12}" y="{height - 6}" fill="{INK}">{label}</text>')
        lx += 18 + 6 * len(t(f"kinds.{k}"))
    out.append("</svg>")
    return "".join(out)


def broadcasts_charts(
    rows: Sequence[dict[str, Any]], villages: dict[str, str], t: Words, term: str | None
) -> list[str]:
    """Stacked bars per village: how many of the period's broadcasts reached it and how many did
    not; split into charts that each fit a page."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if not r["counted"]:
            continue
        missed = set(r["villages_not_reached"])
        for cv in r.get("villages", []):
            counts[cv][0 if cv not in missed else 1] += 1
    order = sorted(counts, key=lambda cv: _natural(villages.get(cv.partition("/")[2]) or cv))
    most = max((sum(c) for c in counts.values()), default=1) or 1
    per_chart = CHART_ROWS // 17
    return [
        broadcasts_svg(order[i : i + per_chart], counts, most, villages, t, term)
        for i in range(0, len(order), per_chart)
    ]


def broadcasts_svg(
    order: Sequence[str],
    counts: dict[str, list[int]],
    most: int,
    villages: dict[str, str],
    t: Words,
    term: str | None,
) -> str:
    """One chart of `broadcasts_charts`: the villages `order`, bars scaled to `most` broadcasts."""
    label_w, bar_h, width = 150, 12, 500
    plot_w = width - label_w - 40
    height = 16 + len(order) * (bar_h + 5) + 22
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}pt" height="{height}pt" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans" font-size="8">'
    ]
    y = 10
    for cv in order:
        ok, bad = counts[cv]
        vid = cv.partition("/")[2]
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 3}" text-anchor="end" fill="{INK}">'
            f"{escape(villages.get(vid, vid))}</text>"
        )
        w_ok, w_bad = plot_w * ok / most, plot_w * bad / most
        out.append(f'<rect x="{label_w}" y="{y}" width="{w_ok:.1f}" height="{bar_h}" fill="{OK}"/>')
        out.append(
            f'<rect x="{label_w + w_ok:.1f}" y="{y}" width="{w_bad:.1f}" height="{bar_h}" fill="{BAD}"/>'
        )
        out.append(
            f'<text x="{label_w + w_ok + w_bad + 3:.1f}" y="{y + bar_h - 3}" fill="{INK}">{ok}/{ok + bad}</text>'
        )
        y += bar_h + 5
    out.append(f'<rect x="{label_w}" y="{height - 14}" width="9" height="9" fill="{OK}"/>')
    out.append(
        f'<text x="{label_w + 12}" y="{height - 6}" fill="{INK}">{escape(_vt(t, "crit.reached", term))}</text>'
    )
    out.append(f'<rect x="{label_w + 120}" y="{height - 14}" width="9" height="9" fill="{BAD}"/>')
    out.append(
        f'<text x="{label_w + 132}" y="{height - 6}" fill="{INK}">{escape(_vt(t, "crit.not_reached", term))}</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _commune_html(
    rep: dict[str, Any], commune: dict[str, Any], names: dict[str, str], t: Words, lang: str, tz: ZoneInfo
) -> str:
    # what the commune calls its villages (ấp, xóm, thôn…), in Vietnamese; English says "village"
    term = term_of(names.values()) if names and lang == "vi" else None
    items = rep["items"]
    start, end = date.fromisoformat(rep["period"]["from"]), date.fromisoformat(rep["period"]["to"])
    after = date.fromordinal(end.toordinal() + 1)
    if start.day == 1 and after.day == 1 and (start.year, start.month) == (end.year, end.month):
        period = (
            t("crit.month_line", m=f"{start.month:02d}", y=start.year)
            + " ("
            + t("crit.period_line", start=_day(start), end=_day(end))
            + ")"
        )
    else:
        period = t("crit.period_line", start=_day(start), end=_day(end))
    province = commune.get("province")
    place = commune["name"].removeprefix("Xã ").removeprefix("xã ")
    h = ['<section class="commune">']
    h.append(
        '<table class="head"><tr><td>'
        f"<b>{escape(t('crit.issuer', commune=commune['name']).upper())}</b>"
        f'<b>{escape(t("crit.issuer_unit").upper())}</b><div class="rule"></div></td><td>'
        f'<b>{escape(t("crit.nation"))}</b><b>{escape(t("crit.motto"))}</b><div class="rule"></div></td></tr></table>'
    )
    h.append(f"<h1>{escape(t('crit.doc_title'))}</h1>")
    where = commune["name"] + (f" — {t('crit.province', province=province)}" if province else "")
    h.append(f'<p class="sub"><b>{escape(where)}</b><br>{escape(t("crit.period"))}: {escape(period)}')
    if rep.get("criteria"):
        h.append(f"<br>{escape(rep['criteria'])}")
    h.append("</p>")
    if not rep["period"]["complete"]:
        now = datetime.now(tz)
        h.append(f'<p class="note">{escape(t("crit.incomplete", at=now.strftime("%H:%M %d/%m/%Y")))}</p>')
    met = sum(1 for i in items if i["met"])
    h.append(
        f"<h2>1. {escape(t('crit.table_title'))} — {escape(t('crit.summary', met=met, n=len(items)))}</h2>"
    )
    h.append(
        "<table><thead><tr>"
        + "".join(
            f"<th>{escape(t(k))}</th>"
            for k in ("crit.col_no", "crit.col_name", "crit.col_value", "crit.col_target", "crit.col_met")
        )
        + "</tr></thead><tbody>"
    )
    for n, i in enumerate(items, 1):
        verdict = (
            f'<span class="met">{escape(t("crit.met"))}</span>'
            if i["met"]
            else f'<span class="not">{escape(t("crit.not_met"))}</span>'
        )
        h.append(
            f'<tr><td class="c">{n}</td><td>{escape(i["name"])}<div class="src">{escape(i["source"])}</div></td>'
            f'<td class="num">{escape(value_text(i, t, lang))}</td><td class="num">{escape(target_text(i, t, lang))}</td>'
            f'<td class="verdict">{verdict}</td></tr>'
        )
    h.append("</tbody></table>")
    avail = rep.get("availability") or []
    h.append(f"<h2>2. {escape(_vt(t, 'crit.chart_availability', term))}</h2>")
    if avail:
        for svg in availability_charts(avail, names, t, lang):
            h.append(f'<div class="chart">{svg}</div>')
    else:
        h.append(f'<p class="muted">{escape(t("crit.no_data"))}</p>')
    reach = next((i for i in items if i["measure"] == "broadcast_reach"), None)
    if reach is not None:
        h.append(f"<h2>3. {escape(_vt(t, 'crit.chart_broadcasts', term))}</h2>")
        counted = [r for r in reach["evidence"] if r["counted"]]
        if counted:
            for svg in broadcasts_charts(counted, names, t, term):
                h.append(f'<div class="chart">{svg}</div>')
            h.append(f'<p class="note">{escape(t("crit.broadcasts_note", n=len(counted)))}</p>')
        else:
            h.append(f'<p class="muted">{escape(t("crit.no_broadcasts"))}</p>')
    radio = next((i for i in items if i["measure"] == "village_coverage"), None)
    if radio is not None:
        missing = [r for r in radio["evidence"] if not r["working"]]
        if missing:
            h.append(
                f"<h2>4. {escape(_vt(t, 'crit.villages_without', term, kind=t('kind.' + str(missing[0]['kind'])).lower()))}</h2><ul>"
            )
            for r in missing:
                former = f" ({t('fc.label', name=r['former_commune'])})" if r.get("former_commune") else ""
                h.append(f"<li>{escape(r['village_name'] + former)}</li>")
            h.append("</ul>")
    h.append(
        '<table class="sign"><tr><td><div class="date">&nbsp;</div>'
        f'<div class="role">{escape(t("crit.signer_author"))}</div><div class="hint">{escape(t("crit.sign_hint"))}</div>'
        '<div class="space"></div></td><td>'
        f'<div class="date">{escape(t("crit.sign_date", place=place))}</div>'
        f'<div class="role">{escape(t("crit.signer_chair"))}</div><div class="hint">{escape(t("crit.sign_hint_seal"))}</div>'
        '<div class="space"></div></td></tr></table>'
    )
    h.append("</section>")
    return "".join(h)


def html(reports: Sequence[tuple[dict[str, Any], dict[str, str]]], t: Words, lang: str, tz: ZoneInfo) -> str:
    """The document: one section (from a new page) per commune's report, with its village names."""
    body = "".join(_commune_html(rep, rep["communes"][0], names, t, lang, tz) for rep, names in reports)
    css = _CSS % {"page": t("crit.page").replace('"', "")}
    return f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><style>{css}</style></head><body>{body}</body></html>'


def render(
    reports: Sequence[tuple[dict[str, Any], dict[str, str]]], t: Words, lang: str, tz: ZoneInfo
) -> bytes:
    """The PDF of `html`."""
    import weasyprint  # loads Pango: only the processes that print pay for it

    return weasyprint.HTML(string=html(reports, t, lang, tz)).write_pdf()  # type: ignore[no-any-return]
