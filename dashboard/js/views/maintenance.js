// Maintenance windows: the list (scope, start, end, repeat rule, reason), delete with a confirmation
// and, for administrators (as in the API), the form to create one (maintenance_form.js). Devices
// inside a window are in the `maintenance` state and raise no alerts. Windows created or deleted
// anywhere arrive on the live feed (`{"type": "maintenance", "op", "window"}`) and change the table
// at once.

import { allPages, api, MAINTENANCE_ROLES } from "../api.js";
import { downloadTable, esc } from "../dom.js";
import { fmtSheet, fmtTime, t } from "../i18n.js";
import { communeName, deviceName, villageName } from "../live.js";
import { formHtml, refreshChoices, wireForm } from "./maintenance_form.js";
import { repeatCellHtml, repeatWords } from "./schedule_fields.js";

// Whether a repeating window is in an occurrence now is the server's rrule expansion (`active`):
// read again now and then. Windows themselves come over the live feed.
const REFRESH_MS = 10 * 60000;
const STATUS_RANK = { active: 0, upcoming: 1, repeating: 1, ended: 2 };
let root = null;
let session = null;
let windows = [];
let loadedAt = 0;
let loadGen = 0;
// Feed messages received while a read of the list is under way: applied again on its answer.
let loadBuffer = null;
let highlight = null;
let confirming = null; // the window whose delete is being asked about
let shownStatuses = "";

export function mount(el, params, sess) {
  session = sess;
  root = document.createElement("section");
  root.className = "maintenance";
  root.id = "maintenance";
  root.innerHTML = `
    <div class="grid-2 wide-first">
      <div class="card"><div class="card-head"><h2>${esc(t("mt.title"))} <span class="badge neutral" id="mt-count"></span></h2>
        <button type="button" id="mt-csv" class="chip">${esc(t("misc.csv"))}</button></div>
        <p id="mt-notice" class="notice" role="status" hidden></p>
        <div class="table-wrap"><table id="mt-table" class="table stack"></table></div></div>
      ${isAdmin() ? formHtml() : `<div class="card"><p class="muted" id="mt-view-only">${esc(t("mt.view_only"))}</p></div>`}
    </div>`;
  el.append(root);
  root.addEventListener("click", onClick);
  const form = root.querySelector("#mt-form");
  if (form) {
    wireForm(form, {
      deviceId: params[0] || null,
      onStart: () => { root.querySelector("#mt-notice").hidden = true; },
      onCreated: (w) => {
        // The same window also comes back on the live feed; whichever is first adds the row.
        apply({ op: "created", window: w });
        highlight = String(w.id);
        showNotice(t("mt.created", { id: w.id }));
        renderTable();
      },
    });
  }
  load();
}

export function unmount() {
  root = null;
  loadBuffer = null;
  confirming = null;
}

export function update(delta) {
  if (!root) return;
  for (const m of delta.maintenance) {
    apply(m);
    if (loadBuffer) loadBuffer.push(m);
  }
  if (delta.full) {
    // A new snapshot: the page may have missed messages while away; read the list again.
    const form = root.querySelector("#mt-form");
    if (form) refreshChoices(form);
    load();
  }
  if (delta.full || delta.maintenance.length) renderTable();
}

export function tick() {
  if (!root) return;
  if (Date.now() - loadedAt > REFRESH_MS) load();
  else if (statusKey() !== shownStatuses) renderTable();
}

function apply(m) {
  const w = m.window;
  if (!w) return;
  const id = String(w.id);
  const i = windows.findIndex((x) => String(x.id) === id);
  if (m.op === "deleted") {
    if (i >= 0) windows.splice(i, 1);
    if (confirming === id) confirming = null;
  } else if (m.op === "created") {
    if (i >= 0) windows[i] = w;
    else {
      windows.push(w);
      highlight = id;
    }
  }
}

function isAdmin() {
  return Boolean(session.user && MAINTENANCE_ROLES.includes(session.user.role));
}

async function load() {
  // Only the newest answer counts: a slow first read must not undo the row just created.
  const gen = ++loadGen;
  const mine = root;
  const buffer = [];
  loadBuffer = buffer;
  loadedAt = Date.now();
  try {
    const items = await allPages("/api/v1/maintenance");
    if (root !== mine || gen !== loadGen) return;
    // The answer may predate messages already applied: apply them again (they are idempotent).
    windows = items;
    for (const m of buffer) apply(m);
    loadBuffer = null;
    renderTable();
  } catch (err) {
    if (root !== mine || gen !== loadGen) return;
    loadBuffer = null;
    root.querySelector("#mt-table").innerHTML = `<tbody><tr><td class="error">${esc(t("misc.error", { msg: err.message }))}</td></tr></tbody>`;
  }
}

function status(w, now = Date.now()) {
  const starts = Date.parse(w.starts_at);
  const ends = Date.parse(w.ends_at);
  // A one-off window is read on the clock; a repeating one needs the server's rrule expansion.
  if (!w.rrule) return now < starts ? "upcoming" : now < ends ? "active" : "ended";
  if (w.active) return "active";
  return starts > now ? "upcoming" : "repeating";
}

function statusKey() {
  const now = Date.now();
  return windows.map((w) => `${w.id}:${status(w, now)}`).join(",");
}

function sorted() {
  const now = Date.now();
  return windows.map((w) => ({ ...w, status: status(w, now) })).sort((a, b) =>
    STATUS_RANK[a.status] - STATUS_RANK[b.status] ||
    (a.status === "ended" ? Date.parse(b.starts_at) - Date.parse(a.starts_at) : Date.parse(a.starts_at) - Date.parse(b.starts_at)));
}

function scopeText(w) {
  if (w.device_id) return deviceName(w.device_id);
  const place = w.village ? villageName(w.commune, w.village) : t("mt.whole", { name: communeName(w.commune) });
  return `${place} · ${w.kind ? t(`kinds.${w.kind}`) : t("mt.all_kinds")}`;
}

function scopeHtml(w) {
  if (w.device_id) {
    return `<a href="#/device/${encodeURIComponent(w.device_id)}">${esc(deviceName(w.device_id))}</a><small>${esc(w.device_id)}</small>`;
  }
  return `<span>${esc(scopeText(w))}</span>`;
}

// A cell that reads as "label: value" when a phone shows the table as cards.
function cell(label, html, cls = "") {
  return `<td data-label="${esc(t(label))}"${cls ? ` class="${cls}"` : ""}><div>${html}</div></td>`;
}

function renderTable() {
  const table = root.querySelector("#mt-table");
  const rows = sorted();
  shownStatuses = statusKey();
  table.dataset.n = rows.length;
  root.querySelector("#mt-count").textContent = rows.length;
  if (!rows.length) {
    table.innerHTML = `<tbody><tr class="empty-row"><td class="muted" id="mt-empty">${esc(t("mt.empty"))}</td></tr></tbody>`;
    return;
  }
  const cols = ["mt.scope", "mt.starts", "mt.ends", "mt.repeat", "mt.reason", "mt.status"];
  const admin = isAdmin();
  table.innerHTML = `<thead><tr>${cols.map((c) => `<th>${esc(t(c))}</th>`).join("")}${admin ? "<th></th>" : ""}</tr></thead><tbody>` +
    rows.map((w) => `<tr data-window-id="${esc(w.id)}" data-status="${w.status}"${String(w.id) === highlight ? ` class="fresh"` : ""}>
      ${cell("mt.scope", scopeHtml(w), "scope")}
      ${cell("mt.starts", `<time datetime="${esc(w.starts_at)}">${esc(fmtTime(w.starts_at, "minute"))}</time>`)}
      ${cell("mt.ends", `<time datetime="${esc(w.ends_at)}">${esc(fmtTime(w.ends_at, "minute"))}</time>`)}
      ${cell("mt.repeat", repeatCellHtml(w.rrule))}
      ${cell("mt.reason", `${esc(w.reason || t("misc.none"))}${w.created_by ? `<small>${esc(t("mt.created_by"))}: ${esc(w.created_by)}</small>` : ""}`, "reason")}
      ${cell("mt.status", `<span class="mt-status" data-status="${w.status}">${esc(t(`mt.${w.status}`))}</span>`)}
      ${admin ? `<td class="actions">${String(w.id) === confirming ? confirmHtml(w.id) : `<button type="button" class="chip danger" data-delete="${esc(w.id)}">${esc(t("mt.delete"))}</button>`}</td>` : ""}
    </tr>`).join("") + "</tbody>";
}

// The row's last cell as the question with its two answers; kept when other rows change live.
function confirmHtml(id) {
  return `<span class="confirm" role="group"><span>${esc(t("mt.confirm_delete"))}</span>
    <button type="button" class="chip danger strong" data-confirm-delete="${esc(id)}">${esc(t("mt.delete"))}</button>
    <button type="button" class="link" data-cancel-delete>${esc(t("misc.cancel"))}</button></span>`;
}

function showNotice(text) {
  const el = root.querySelector("#mt-notice");
  el.textContent = text;
  el.hidden = false;
}

async function onClick(e) {
  if (e.target.closest("#mt-csv")) {
    exportCsv();
    return;
  }
  const del = e.target.closest("[data-delete]");
  if (del) {
    // Ask in place: the row's last cell becomes the question with its two answers.
    confirming = del.dataset.delete;
    renderTable();
    root.querySelector(`[data-confirm-delete="${CSS.escape(confirming)}"]`).focus();
    return;
  }
  if (e.target.closest("[data-cancel-delete]")) {
    confirming = null;
    renderTable();
    return;
  }
  const yes = e.target.closest("[data-confirm-delete]");
  if (!yes) return;
  yes.disabled = true;
  const id = yes.dataset.confirmDelete;
  const mine = root;
  try {
    await api(`/api/v1/maintenance/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (root !== mine) return;
    apply({ op: "deleted", window: { id } });
    showNotice(t("mt.deleted", { id }));
    renderTable();
  } catch (err) {
    if (root !== mine) return;
    yes.disabled = false;
    showNotice(t("misc.error", { msg: err.message }));
  }
}

// The table as shown, in the page's words and the commune's clock (the rule itself kept for machines).
function exportCsv() {
  downloadTable("bao-tri.csv", [
    ["csv.id", (w) => w.id],
    ["mt.scope", (w) => scopeText(w)],
    ["csv.device_id", (w) => w.device_id || ""],
    ["mt.starts", (w) => fmtSheet(w.starts_at)],
    ["mt.ends", (w) => fmtSheet(w.ends_at)],
    ["mt.repeat", (w) => repeatWords(w.rrule)],
    ["mt.rrule", (w) => w.rrule || ""],
    ["mt.reason", (w) => w.reason || ""],
    ["mt.status", (w) => t(`mt.${w.status}`)],
    ["mt.created_by", (w) => w.created_by || ""],
    ["csv.created_at", (w) => fmtSheet(w.created_at)],
  ], sorted());
}
