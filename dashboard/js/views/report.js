// Availability per village, kind or device over a chosen period, downloadable as CSV; and the
// smart-commune criteria of a month (docs/criteria.md), downloadable as the printable PDF or CSV.

import { allPages, api, query } from "../api.js";
import { collate, esc } from "../dom.js";
import { fmtNumber, getLang, KINDS, localDate, readDay, showDay, startOfLocalDate, t } from "../i18n.js";
import { communeName, deviceName, formerCommune, store, villageName } from "../live.js";

// Kept across visits.
const form = { from: null, to: null, group_by: "village" };
const crit = { month: null, commune: "" }; // month "YYYY-MM"; commune "" = every commune of the user
let root = null;
let rows = [];

export function mount(el) {
  const today = localDate(new Date());
  if (!form.from) {
    form.to = today;
    form.from = localDate(new Date(Date.now() - 6 * 86400 * 1000));
  }
  root = document.createElement("section");
  root.className = "report";
  root.id = "report";
  root.innerHTML = `
    <div class="card">
      <div class="card-head"><h2>${esc(t("rep.title"))}</h2></div>
      <div class="kind-summary" id="report-now"></div>
      <form id="report-form" class="toolbar">
        <label>${esc(t("rep.from"))} <input name="from" value="${esc(showDay(form.from))}" inputmode="numeric" placeholder="${esc(t("fmt.day"))}" size="10" required></label>
        <label>${esc(t("rep.to"))} <input name="to" value="${esc(showDay(form.to))}" inputmode="numeric" placeholder="${esc(t("fmt.day"))}" size="10" required></label>
        <label>${esc(t("rep.group"))} <select name="group_by">
          <option value="village">${esc(t("rep.by_village"))}</option><option value="kind">${esc(t("rep.by_kind"))}</option>
          <option value="device">${esc(t("rep.by_device"))}</option>${anyFormer() ? `<option value="former_commune">${esc(t("fc.by_group"))}</option>` : ""}</select></label>
        <button type="submit" class="primary">${esc(t("rep.run"))}</button>
        <a id="report-csv" class="chip" download>${esc(t("rep.csv"))}</a>
      </form>
      <div class="table-wrap"><table id="report-table" class="table"></table></div>
    </div>
    <div class="card" id="criteria">
      <div class="card-head"><h2>${esc(t("crit.title"))}</h2><span class="muted" id="criteria-summary"></span></div>
      <form id="criteria-form" class="toolbar">
        <label>${esc(t("crit.month"))} <input name="month" value="${esc(showMonth(crit.month))}" inputmode="numeric" placeholder="${esc(t("fmt.month"))}" size="7" required></label>
        <label id="criteria-commune-label" hidden>${esc(t("map.commune"))} <select name="commune"></select></label>
        <button type="submit" class="primary">${esc(t("crit.run"))}</button>
        <a id="criteria-pdf" class="chip strong" download>${esc(t("crit.pdf"))}</a>
        <a id="criteria-csv" class="chip" download>${esc(t("crit.csv"))}</a>
      </form>
      <div class="table-wrap"><table id="criteria-table" class="table"></table></div>
    </div>`;
  el.append(root);
  mountCriteria(root.querySelector("#criteria-form"));
  const f = root.querySelector("#report-form");
  f.group_by.value = form.group_by;
  f.addEventListener("submit", (e) => {
    e.preventDefault();
    const from = readDay(f.from.value);
    const to = readDay(f.to.value);
    f.from.toggleAttribute("aria-invalid", !from);
    f.to.toggleAttribute("aria-invalid", !to);
    if (!from || !to) return;
    form.from = from;
    form.to = to > today ? today : to;
    form.group_by = f.group_by.value;
    run();
  });
  f.group_by.addEventListener("change", () => f.requestSubmit());
  renderNow();
  run();
}

export function unmount() {
  root = null;
}

export function update(delta) {
  if (root && (delta.full || delta.devices.size)) renderNow();
}

function params() {
  // Whole local days: from the start of `from` to the start of the day after `to`.
  const to = startOfLocalDate(form.to);
  to.setTime(to.getTime() + 86400 * 1000);
  return { from: startOfLocalDate(form.from).toISOString(), to: to.toISOString(), group_by: form.group_by };
}

async function run() {
  const p = params();
  const csv = root.querySelector("#report-csv");
  csv.href = `/api/v1/reports/availability${query({ ...p, format: "csv", limit: 10000, lang: getLang() })}`;
  csv.setAttribute("download", `availability-${form.group_by}-${form.from}-${form.to}.csv`);
  const table = root.querySelector("#report-table");
  table.innerHTML = `<tbody><tr><td class="muted">${esc(t("misc.loading"))}</td></tr></tbody>`;
  const mine = root;
  try {
    rows = await allPages("/api/v1/reports/availability", p);
    if (root === mine) renderTable();
  } catch (err) {
    if (root === mine) table.innerHTML = `<tbody><tr><td class="error">${esc(t("rep.error", { msg: err.message }))}</td></tr></tbody>`;
  }
}

function pct(v) {
  if (v === null || v === undefined) return `<span class="muted">—</span>`;
  const cls = v >= 99 ? "ok" : v >= 90 ? "warn" : "bad";
  return `<span class="pct ${cls}"><span class="pctbar"><i style="width:${Math.max(0, Math.min(100, v))}%"></i></span>${fmtNumber(v, 1)} %</span>`;
}

// Hours as people read them: "2 giờ 30 phút", "45 phút" (not «0.1»).
function hours(s) {
  const m = Math.round(s / 60);
  if (m < 60) return t("dur.m", { m });
  return m % 60 ? t("dur.h", { h: Math.floor(m / 60), m: m % 60 }) : t("dur.hours", { h: fmtNumber(m / 60) });
}

function rowLabel(r, g) {
  if (g === "former_commune") return r.former_commune || t("fc.none");
  return g === "village" ? villageName(r.commune, r.village) || "—" : g === "kind" ? t(`kinds.${r.kind}`) : deviceName(r.device_id);
}

// Whether any village names the commune it belonged to before the 2025 reform.
function anyFormer() {
  return [...store.villages.values()].some((v) => v.former_commune);
}

function renderTable() {
  const g = form.group_by;
  const table = root.querySelector("#report-table");
  table.dataset.rows = rows.length;
  if (!rows.length) {
    table.innerHTML = `<tbody><tr><td class="muted">${esc(t("rep.empty"))}</td></tr></tbody>`;
    return;
  }
  const first = g === "village" ? t("rep.by_village") : g === "kind" ? t("rep.by_kind") : g === "former_commune" ? t("fc.by_group") : t("rep.by_device");
  const byKind = g === "village" || g === "former_commune";
  const extra = g === "kind" ? `<th>${esc(t("rep.villages_ok"))}</th>` : byKind ? `<th>${esc(t("ov.working"))}</th>` : "";
  // In name order as people count ("Xóm 2" before "Xóm 10"), grouped by commune.
  const shown = [...rows].sort((a, b) => collate(communeName(a.commune) || "", communeName(b.commune) || "") ||
    collate(rowLabel(a, g), rowLabel(b, g)));
  table.innerHTML = `<thead><tr><th>${esc(first)}</th><th>${esc(t("rep.availability"))}</th><th>${esc(t("rep.devices"))}</th>` +
    `<th>${esc(t("rep.online_now"))}</th>${extra}<th>${esc(t("rep.online_h"))}</th><th>${esc(t("rep.offline_h"))}</th><th>${esc(t("rep.maint_h"))}</th></tr></thead><tbody>` +
    shown.map((r) => {
      const label = rowLabel(r, g);
      const key = g === "village" ? r.village : g === "kind" ? r.kind : g === "former_commune" ? r.former_commune || "" : r.device_id;
      const former = g === "village" ? formerCommune(r.commune, r.village) : null;
      let more = "";
      if (g === "kind") more = `<td>${r.villages_all_online_now ?? "—"}/${r.villages ?? "—"}</td>`;
      if (byKind) {
        more = `<td class="by-kind">${Object.entries(r.by_kind || {}).map(([k, c]) =>
          `<span class="mini ${c.online_now === c.devices ? "ok" : "bad"}">${esc(t(`kind.${k}`))} ${c.online_now}/${c.devices}</span>`).join(" ")}</td>`;
      }
      return `<tr data-row="${esc(key)}"><th scope="row">${esc(label)}${store.communes.size > 1 ? ` <small>${esc(communeName(r.commune))}</small>` : ""}` +
        `${former ? `<br><small class="muted former">${esc(t("fc.label", { name: former }))}</small>` : ""}</th>` +
        `<td>${pct(r.availability_pct)}</td><td>${r.devices}</td><td>${r.devices_online_now}</td>${more}` +
        `<td>${hours(r.online_s)}</td><td>${hours(r.offline_s)}</td><td>${hours(r.maintenance_s)}</td></tr>`;
    }).join("") + "</tbody>";
}

// The headline an operator reads out at the morning meeting: "Loa hoạt động 11/11 xóm".
function renderNow() {
  const byKind = new Map();
  for (const d of store.devices.values()) {
    if (!d.village) continue;
    const key = `${d.commune}/${d.village}`;
    if (!byKind.has(d.kind)) byKind.set(d.kind, new Map());
    const v = byKind.get(d.kind);
    v.set(key, (v.get(key) ?? true) && d.state === "online");
  }
  root.querySelector("#report-now").innerHTML = `<span class="muted">${esc(t("rep.now"))}:</span>` + KINDS.filter((k) => byKind.has(k)).map((k) => {
    const v = byKind.get(k);
    const ok = [...v.values()].filter(Boolean).length;
    const cls = ok === v.size ? "ok" : ok === 0 ? "bad" : "warn";
    return `<div class="summary-chip ${cls}" data-kind-summary="${k}"><span class="kind-icon" data-kind="${k}"></span>${esc(t("ov.kind_summary", { kind: t(`kinds.${k}`), ok, n: v.size }))}</div>`;
  }).join("");
}

// --- Smart-commune criteria ------------------------------------------------------------------

// "2026-11" <-> "11/2026", the page's way of writing a month; null for anything else.
function showMonth(m) {
  return m ? `${m.slice(5, 7)}/${m.slice(0, 4)}` : "";
}

function readMonth(text) {
  const m = /^\s*(\d{1,2})\/(\d{4})\s*$/.exec(text || "");
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 12) return null;
  return `${m[2]}-${m[1].padStart(2, "0")}`;
}

function mountCriteria(f) {
  if (!crit.month) crit.month = localDate(new Date()).slice(0, 7);
  f.month.value = showMonth(crit.month);
  const communes = [...store.communes.values()].sort((a, b) => collate(a.name || a.id, b.name || b.id));
  if (communes.length > 1) {
    f.querySelector("#criteria-commune-label").hidden = false;
    f.commune.innerHTML = `<option value="">${esc(t("map.all_communes"))}</option>` +
      communes.map((c) => `<option value="${esc(c.id)}">${esc(c.name || c.id)}</option>`).join("");
    f.commune.value = crit.commune;
  }
  f.addEventListener("submit", (e) => {
    e.preventDefault();
    const month = readMonth(f.month.value);
    f.month.toggleAttribute("aria-invalid", !month);
    if (!month) return;
    crit.month = month;
    crit.commune = f.commune.value || "";
    runCriteria();
  });
  f.commune.addEventListener("change", () => f.requestSubmit());
  runCriteria();
}

function critParams(extra = {}) {
  const p = { period: crit.month, lang: getLang(), ...extra };
  if (crit.commune) p.commune = crit.commune;
  return p;
}

async function runCriteria() {
  const mine = root;
  const pdf = root.querySelector("#criteria-pdf");
  const csv = root.querySelector("#criteria-csv");
  pdf.href = `/api/v1/reports/criteria${query(critParams({ format: "pdf" }))}`;
  pdf.setAttribute("download", `tieu-chi-${crit.commune || "all"}-${crit.month}.pdf`);
  csv.href = `/api/v1/reports/criteria${query(critParams({ format: "csv" }))}`;
  csv.setAttribute("download", `tieu-chi-${crit.commune || "all"}-${crit.month}.csv`);
  const table = root.querySelector("#criteria-table");
  table.innerHTML = `<tbody><tr><td class="muted">${esc(t("misc.loading"))}</td></tr></tbody>`;
  try {
    const rep = await api(`/api/v1/reports/criteria${query(critParams())}`);
    if (root === mine) renderCriteria(rep);
  } catch (err) {
    if (root === mine) table.innerHTML = `<tbody><tr><td class="error">${esc(t("crit.error", { msg: err.message }))}</td></tr></tbody>`;
  }
}

function critValue(i) {
  if (i.value === null || i.value === undefined) return `<span class="muted">${esc(t("crit.no_data"))}</span>`;
  return i.unit === "%" ? `${fmtNumber(i.value, 1)}\u00a0%` : `${fmtNumber(i.value, 0)}\u00a0${esc(t("crit.unit_count"))}`;
}

function critTarget(i) {
  return i.unit === "%" ? `≥\u00a0${fmtNumber(i.target)}\u00a0%` : `≥\u00a0${fmtNumber(i.target, 0)}\u00a0${esc(t("crit.unit_count"))}`;
}

// What the value was computed from, in one line an operator can check against the ground.
function critEvidence(i) {
  const ev = i.evidence || [];
  if (i.measure === "village_coverage") {
    const ok = ev.filter((r) => r.working).length;
    const missing = ev.filter((r) => !r.working).map((r) => villageName(r.commune, r.village));
    return esc(t("crit.working_villages", { ok, n: ev.length })) + (missing.length ? ` — ${esc(missing.join(", "))}` : "");
  }
  if (i.measure === "broadcast_reach") {
    const counted = ev.filter((r) => r.counted);
    return esc(t("crit.broadcasts_reached", { ok: counted.filter((r) => r.reached_all).length, n: counted.length }));
  }
  if (i.measure === "availability") {
    const n = ev.reduce((a, r) => a + r.devices, 0);
    return n ? esc(t("crit.devices_in", { n, v: ev.filter((r) => r.village).length })) : "";
  }
  if (i.measure === "data_shared") {
    return ev.map((r) => esc(t(r.direction === "pull" ? "crit.shared_pull" : "crit.shared_push", { partner: r.partner, n: fmtNumber(r.count, 0) }))).join("; ");
  }
  return "";
}

function renderCriteria(rep) {
  const table = root.querySelector("#criteria-table");
  const items = rep.items || [];
  const met = items.filter((i) => i.met).length;
  root.querySelector("#criteria-summary").textContent = items.length ? t("crit.summary", { met, n: items.length }) : "";
  table.dataset.rows = items.length;
  table.innerHTML = `<thead><tr><th>${esc(t("crit.col_name"))}</th><th>${esc(t("crit.col_value"))}</th>` +
    `<th>${esc(t("crit.col_target"))}</th><th>${esc(t("crit.col_met"))}</th><th>${esc(t("crit.evidence"))}</th></tr></thead><tbody>` +
    items.map((i) => `<tr data-criterion="${esc(i.id)}"><th scope="row">${esc(i.name)}<br><small class="muted">${esc(i.source)}</small></th>` +
      `<td class="num">${critValue(i)}</td><td class="num">${critTarget(i)}</td>` +
      `<td><span class="mini ${i.met ? "ok" : "bad"}" data-met="${i.met}">${esc(t(i.met ? "crit.met" : "crit.not_met"))}</span></td>` +
      `<td class="evidence"><small>${critEvidence(i)}</small></td></tr>`).join("") + "</tbody>";
}
