// Availability per village, kind or device over a chosen period, downloadable as CSV.

import { allPages, query } from "../api.js";
import { collate, esc } from "../dom.js";
import { fmtNumber, KINDS, localDate, readDay, showDay, startOfLocalDate, t } from "../i18n.js";
import { communeName, deviceName, store, villageName } from "../live.js";

// Kept across visits.
const form = { from: null, to: null, group_by: "village" };
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
        <label>${esc(t("rep.from"))} <input name="from" value="${esc(showDay(form.from))}" inputmode="numeric" placeholder="dd/mm/yyyy" size="10" required></label>
        <label>${esc(t("rep.to"))} <input name="to" value="${esc(showDay(form.to))}" inputmode="numeric" placeholder="dd/mm/yyyy" size="10" required></label>
        <label>${esc(t("rep.group"))} <select name="group_by">
          <option value="village">${esc(t("rep.by_village"))}</option><option value="kind">${esc(t("rep.by_kind"))}</option>
          <option value="device">${esc(t("rep.by_device"))}</option></select></label>
        <button type="submit" class="primary">${esc(t("rep.run"))}</button>
        <a id="report-csv" class="chip" download>${esc(t("rep.csv"))}</a>
      </form>
      <div class="table-wrap"><table id="report-table" class="table"></table></div>
    </div>`;
  el.append(root);
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
  csv.href = `/api/v1/reports/availability${query({ ...p, format: "csv", limit: 10000 })}`;
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
  return g === "village" ? villageName(r.commune, r.village) || "—" : g === "kind" ? t(`kinds.${r.kind}`) : deviceName(r.device_id);
}

function renderTable() {
  const g = form.group_by;
  const table = root.querySelector("#report-table");
  table.dataset.rows = rows.length;
  if (!rows.length) {
    table.innerHTML = `<tbody><tr><td class="muted">${esc(t("rep.empty"))}</td></tr></tbody>`;
    return;
  }
  const first = g === "village" ? t("rep.by_village") : g === "kind" ? t("rep.by_kind") : t("rep.by_device");
  const extra = g === "kind" ? `<th>${esc(t("rep.villages_ok"))}</th>` : g === "village" ? `<th>${esc(t("ov.working"))}</th>` : "";
  // In name order as people count ("Xóm 2" before "Xóm 10"), grouped by commune.
  const shown = [...rows].sort((a, b) => collate(communeName(a.commune) || "", communeName(b.commune) || "") ||
    collate(rowLabel(a, g), rowLabel(b, g)));
  table.innerHTML = `<thead><tr><th>${esc(first)}</th><th>${esc(t("rep.availability"))}</th><th>${esc(t("rep.devices"))}</th>` +
    `<th>${esc(t("rep.online_now"))}</th>${extra}<th>${esc(t("rep.online_h"))}</th><th>${esc(t("rep.offline_h"))}</th><th>${esc(t("rep.maint_h"))}</th></tr></thead><tbody>` +
    shown.map((r) => {
      const label = rowLabel(r, g);
      const key = g === "village" ? r.village : g === "kind" ? r.kind : r.device_id;
      let more = "";
      if (g === "kind") more = `<td>${r.villages_all_online_now ?? "—"}/${r.villages ?? "—"}</td>`;
      if (g === "village") {
        more = `<td class="by-kind">${Object.entries(r.by_kind || {}).map(([k, c]) =>
          `<span class="mini ${c.online_now === c.devices ? "ok" : "bad"}">${esc(t(`kind.${k}`))} ${c.online_now}/${c.devices}</span>`).join(" ")}</td>`;
      }
      return `<tr data-row="${esc(key)}"><th scope="row">${esc(label)}${store.communes.size > 1 ? ` <small>${esc(communeName(r.commune))}</small>` : ""}</th>` +
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
