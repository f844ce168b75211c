// Maintenance windows: the list (scope, start, end, repeat rule, reason), a form to create one and
// delete with a confirmation (both for administrators, as in the API). Devices inside a window are
// in the `maintenance` state and raise no alerts. Times typed in the form are read on the
// deployment's clock (IOC_TZ), whatever zone the browser is in. Windows created or deleted anywhere
// arrive on the live feed (`{"type": "maintenance", "op", "window"}`) and change the table at once.

import { allPages, api, MAINTENANCE_ROLES } from "../api.js";
import { downloadCsv, esc } from "../dom.js";
import { fmtTime, fromLocalInput, getTz, KINDS, t, toLocalInput } from "../i18n.js";
import { deviceName, store, villageName } from "../live.js";

// Whether a repeating window is in an occurrence now is the server's rrule expansion (`active`):
// read again now and then. Windows themselves come over the live feed.
const REFRESH_MS = 10 * 60000;
const STATUS_RANK = { active: 0, upcoming: 1, repeating: 1, ended: 2 };
// Words in the API's refusals, and what they mean in the form.
const REFUSALS = [
  [/ends_at must be after starts_at/, "mt.err_end_before_start", ["ends_at", "starts_at"]],
  [/rrule/i, "mt.err_rrule", ["rrule"]],
  [/no device/, "mt.err_device", ["device_id"]],
  [/no village/, "mt.err_village", ["village"]],
  [/no commune/, "mt.err_commune", ["commune"]],
];
const FIELDS = ["device_id", "commune", "village", "kind", "starts_at", "ends_at", "reason", "rrule"];

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

export function mount(el, _params, sess) {
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
    form.addEventListener("submit", onSubmit);
    form.addEventListener("change", onFormChange);
    form.addEventListener("input", (e) => clearInvalid(e.target));
    const start = new Date(Math.ceil(Date.now() / 3600000) * 3600000);
    form.starts_at.value = toLocalInput(start);
    form.ends_at.value = toLocalInput(new Date(start.getTime() + 2 * 3600000));
    fillChoices();
    showScope();
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
    fillChoices();
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

function formHtml() {
  const label = (key, control, scope = "") =>
    `<label${scope ? ` data-scope="${scope}"` : ""}><span>${esc(t(key))}</span>${control}</label>`;
  return `<div class="card" id="mt-form-card"><h2>${esc(t("mt.new"))}</h2>
    <form id="mt-form" class="form-grid" autocomplete="off">
      <fieldset class="scope-choice"><legend>${esc(t("mt.scope"))}</legend>
        <label class="radio"><input type="radio" name="scope" value="device" checked> ${esc(t("mt.scope_device"))}</label>
        <label class="radio"><input type="radio" name="scope" value="area"> ${esc(t("mt.scope_area"))}</label></fieldset>
      ${label("mt.device", `<select name="device_id"></select>`, "device")}
      ${label("mt.commune", `<select name="commune"></select>`, "area")}
      ${label("mt.village", `<select name="village"></select>`, "area")}
      ${label("mt.kind", `<select name="kind"><option value="">${esc(t("mt.all_kinds"))}</option>${KINDS.map((k) =>
        `<option value="${k}">${esc(t(`kinds.${k}`))}</option>`).join("")}</select>`, "area")}
      <div class="pair">
        ${label("mt.starts", `<input type="datetime-local" name="starts_at" required>`)}
        ${label("mt.ends", `<input type="datetime-local" name="ends_at" required>`)}
      </div>
      <p class="hint" id="mt-tz">${esc(t("mt.tz_hint", { tz: getTz() }))}</p>
      ${label("mt.reason", `<input name="reason" maxlength="500" placeholder="${esc(t("mt.reason_ph"))}">`)}
      ${label("mt.rrule", `<input name="rrule" maxlength="500" spellcheck="false" placeholder="${esc(t("mt.rrule_ph"))}" aria-describedby="mt-rrule-help">`)}
      <p class="hint" id="mt-rrule-help">${esc(t("mt.rrule_help"))}</p>
      <div id="mt-error" class="form-error" role="alert" hidden></div>
      <div class="form-actions"><button type="submit" class="primary">${esc(t("mt.create"))}</button></div>
    </form></div>`;
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

function communeName(id) {
  return (store.communes.get(id) || {}).name || id;
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

function repeatHtml(w) {
  if (!w.rrule) return esc(t("mt.once"));
  const freq = /FREQ=([A-Z]+)/i.exec(w.rrule);
  const word = freq ? t(`freq.${freq[1].toUpperCase()}`) : "";
  return `${word && !word.startsWith("freq.") ? `<span>${esc(word)}</span> ` : ""}<code>${esc(w.rrule)}</code>`;
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
      ${cell("mt.repeat", repeatHtml(w))}
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

function fillChoices() {
  const form = root.querySelector("#mt-form");
  if (!form) return;
  const keep = { device_id: form.device_id.value, commune: form.commune.value, village: form.village.value };
  // Devices grouped by village, in Vietnamese alphabetical order.
  const groups = new Map();
  for (const d of store.devices.values()) {
    const key = `${d.commune}/${d.village || ""}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(d);
  }
  const label = (key) => {
    const [c, v] = key.split("/");
    const name = v ? villageName(c, v) : t("misc.none");
    return store.communes.size > 1 ? `${name} (${communeName(c)})` : name;
  };
  form.device_id.innerHTML = [...groups.keys()].sort((a, b) => label(a).localeCompare(label(b), "vi")).map((key) =>
    `<optgroup label="${esc(label(key))}">${groups.get(key)
      .sort((a, b) => (a.name || a.device_id).localeCompare(b.name || b.device_id, "vi"))
      .map((d) => `<option value="${esc(d.device_id)}">${esc(d.name || d.device_id)} (${esc(d.device_id)})</option>`).join("")}</optgroup>`).join("");
  const communes = [...store.communes.values()].sort((a, b) => a.name.localeCompare(b.name, "vi"));
  form.commune.innerHTML = communes.map((c) => `<option value="${esc(c.id)}">${esc(c.name)}</option>`).join("");
  form.commune.closest("label").classList.toggle("single", communes.length <= 1);
  if (keep.device_id) form.device_id.value = keep.device_id;
  if (keep.commune) form.commune.value = keep.commune;
  fillVillages(keep.village);
}

function fillVillages(keep = "") {
  const form = root.querySelector("#mt-form");
  const commune = form.commune.value;
  const villages = [...store.villages.values()].filter((v) => v.commune === commune).sort((a, b) => a.name.localeCompare(b.name, "vi"));
  form.village.innerHTML = `<option value="">${esc(t("mt.all_villages"))}</option>` +
    villages.map((v) => `<option value="${esc(v.id)}">${esc(v.name)}</option>`).join("");
  form.village.value = villages.some((v) => v.id === keep) ? keep : "";
}

function showScope() {
  const form = root.querySelector("#mt-form");
  const scope = form.scope.value;
  for (const el of form.querySelectorAll("[data-scope]")) {
    el.hidden = el.dataset.scope !== scope;
    for (const c of el.querySelectorAll("select")) c.disabled = el.hidden;
  }
}

function onFormChange(e) {
  if (e.target.name === "scope") showScope();
  if (e.target.name === "commune") fillVillages();
  clearInvalid(e.target);
}

function clearInvalid(input) {
  if (input && input.removeAttribute) input.removeAttribute("aria-invalid");
}

function showRefusal(err) {
  const form = root.querySelector("#mt-form");
  const box = root.querySelector("#mt-error");
  const fields = new Set();
  const lines = [];
  for (const [re, key, names] of REFUSALS) {
    if (!re.test(err.message || "")) continue;
    lines.push(t(key));
    for (const n of names) fields.add(n);
  }
  for (const d of Array.isArray(err.detail) ? err.detail : []) {
    const name = (d.loc || []).slice(-1)[0];
    if (FIELDS.includes(name)) fields.add(name);
  }
  box.innerHTML = `<strong>${esc(t("mt.refused"))}</strong>` +
    (lines.length ? `<ul>${lines.map((l) => `<li>${esc(l)}</li>`).join("")}</ul>` : "") +
    `<small>${esc(t("mt.server_said", { msg: err.message }))}</small>`;
  box.hidden = false;
  for (const n of FIELDS) {
    const input = form.elements[n];
    if (!input) continue;
    if (fields.has(n)) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-errormessage", "mt-error");
    } else input.removeAttribute("aria-invalid");
  }
  const first = [...fields].map((n) => form.elements[n]).find((x) => x && !x.disabled);
  if (first) first.focus();
}

function showNotice(text) {
  const el = root.querySelector("#mt-notice");
  el.textContent = text;
  el.hidden = false;
}

async function onSubmit(e) {
  e.preventDefault();
  const form = e.target;
  const box = root.querySelector("#mt-error");
  box.hidden = true;
  root.querySelector("#mt-notice").hidden = true;
  const starts = fromLocalInput(form.starts_at.value);
  const ends = fromLocalInput(form.ends_at.value);
  const body = form.scope.value === "device"
    ? { device_id: form.device_id.value }
    : { commune: form.commune.value, village: form.village.value || null, kind: form.kind.value || null };
  Object.assign(body, {
    starts_at: starts && starts.toISOString(),
    ends_at: ends && ends.toISOString(),
    reason: form.reason.value.trim(),
  });
  if (form.rrule.value.trim()) body.rrule = form.rrule.value.trim();
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  const mine = root;
  try {
    const w = await api("/api/v1/maintenance", { method: "POST", body });
    if (root !== mine) return;
    // The same window also comes back on the live feed; whichever is first adds the row.
    apply({ op: "created", window: w });
    highlight = String(w.id);
    form.reason.value = "";
    form.rrule.value = "";
    for (const n of FIELDS) if (form.elements[n]) form.elements[n].removeAttribute("aria-invalid");
    showNotice(t("mt.created", { id: w.id }));
    renderTable();
  } catch (err) {
    if (root === mine) showRefusal(err);
  } finally {
    submit.disabled = false;
  }
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

function exportCsv() {
  const rows = sorted().map((w) => [w.id, w.commune, w.device_id, w.village, w.kind, scopeText(w), w.starts_at, w.ends_at,
    w.rrule, w.reason, w.status, w.created_by, w.created_at]);
  downloadCsv("maintenance.csv", ["id", "commune", "device_id", "village", "kind", "scope", "starts_at", "ends_at", "rrule",
    "reason", "status", "created_by", "created_at"], rows);
}
