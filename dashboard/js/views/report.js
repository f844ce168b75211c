// Availability per village, kind or device over a chosen period, downloadable as CSV.

import { allPages, query } from "../api.js";
import { esc } from "../dom.js";
import { KINDS, localDate, startOfLocalDate, t } from "../i18n.js";
import { deviceName, store, villageName } from "../live.js";

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
        <label>${esc(t("rep.from"))} <input type="date" name="from" value="${esc(form.from)}" max="${today}" required></label>
        <label>${esc(t("rep.to"))} <input type="date" name="to" value="${esc(form.to)}" max="${today}" required></label>
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
    form.from = f.from.value;
    form.to = f.to.value;
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
  return `<span class="pct ${cls}"><span class="pctbar"><i style="width:${Math.max(0, Math.min(100, v))}%"></i></span>${v.toFixed(1)}%</span>`;
}

function hours(s) {
  return (s / 3600).toFixed(1);
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
  table.innerHTML = `<thead><tr><th>${esc(first)}</th><th>${esc(t("rep.availability"))}</th><th>${esc(t("rep.devices"))}</th>` +
    `<th>${esc(t("rep.online_now"))}</th>${extra}<th>${esc(t("rep.online_h"))}</th><th>${esc(t("rep.offline_h"))}</th><th>${esc(t("rep.maint_h"))}</th></tr></thead><tbody>` +
    rows.map((r) => {
      const label = g === "village" ? villageName(r.commune, r.village) || "—" : g === "kind" ? t(`kinds.${r.kind}`) : deviceName(r.device_id);
      const key = g === "village" ? r.village : g === "kind" ? r.kind : r.device_id;
      let more = "";
      if (g === "kind") more = `<td>${r.villages_all_online_now ?? "—"}/${r.villages ?? "—"}</td>`;
      if (g === "village") {
        more = `<td class="by-kind">${Object.entries(r.by_kind || {}).map(([k, c]) =>
          `<span class="mini ${c.online_now === c.devices ? "ok" : "bad"}">${esc(t(`kind.${k}`))} ${c.online_now}/${c.devices}</span>`).join(" ")}</td>`;
      }
      return `<tr data-row="${esc(key)}"><th scope="row">${esc(label)}${store.communes.size > 1 ? ` <small>${esc(r.commune)}</small>` : ""}</th>` +
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
