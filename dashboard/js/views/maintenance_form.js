// The form that creates a maintenance window (administrators): one device (found by typing, with or
// without diacritics), or a commune's village and/or kind; start and end typed as dd/MM/yyyy HH:mm on
// the deployment's clock (IOC_TZ), whatever zone or locale the browser has, or set by a quick choice
// ("from now for 2 h", "until 07:00 tomorrow"); repeat chosen in words (daily, weekly on chosen days,
// monthly), the RFC 5545 rule itself only under "advanced". What the server refuses is said in the
// page's words beside the fields it names.

import { api } from "../api.js";
import { esc, fold, matchesWords } from "../dom.js";
import { fromLocalInput, getTz, KINDS, t, toLocalInput } from "../i18n.js";
import { communeName, store, villageName } from "../live.js";
import { readLocal, readRepeat, repeatFieldsHtml, resetRepeat, showLocal, showRepeat } from "./schedule_fields.js";

// Words in the API's refusals, and what they mean in the form.
const REFUSALS = [
  [/ends_at must be after starts_at/, "mt.err_end_before_start", ["ends_at", "starts_at"]],
  [/rrule/i, "mt.err_rrule", ["rrule"]],
  [/no device/, "mt.err_device", ["device_id"]],
  [/no village/, "mt.err_village", ["village"]],
  [/no commune/, "mt.err_commune", ["commune"]],
];
const FIELDS = ["device_id", "commune", "village", "kind", "starts_at", "ends_at", "reason", "rrule"];
const HOUR_MS = 3600000;

export function formHtml() {
  const label = (key, control, scope = "") =>
    `<label${scope ? ` data-scope="${scope}"` : ""}><span>${esc(t(key))}</span>${control}</label>`;
  return `<div class="card" id="mt-form-card"><h2>${esc(t("mt.new"))}</h2>
    <form id="mt-form" class="form-grid" autocomplete="off">
      <fieldset class="scope-choice"><legend>${esc(t("mt.scope"))}</legend>
        <label class="radio"><input type="radio" name="scope" value="device" checked> ${esc(t("mt.scope_device"))}</label>
        <label class="radio"><input type="radio" name="scope" value="area"> ${esc(t("mt.scope_area"))}</label></fieldset>
      ${label("mt.device_search", `<input type="search" name="device_q" placeholder="${esc(t("mt.device_search_ph"))}">`, "device")}
      ${label("mt.device", `<select name="device_id"></select>`, "device")}
      ${label("mt.commune", `<select name="commune"></select>`, "area")}
      ${label("mt.village", `<select name="village"></select>`, "area")}
      ${label("mt.kind", `<select name="kind"><option value="">${esc(t("mt.all_kinds"))}</option>${KINDS.map((k) =>
        `<option value="${k}">${esc(t(`kinds.${k}`))}</option>`).join("")}</select>`, "area")}
      <div class="quick" role="group" aria-label="${esc(t("mt.quick"))}">
        <button type="button" class="chip" data-quick="2h">${esc(t("mt.quick_2h"))}</button>
        <button type="button" class="chip" data-quick="tomorrow7">${esc(t("mt.quick_tomorrow7"))}</button>
        <button type="button" class="chip" data-quick="1d">${esc(t("mt.quick_1d"))}</button></div>
      <div class="pair">
        ${label("mt.starts", `<input name="starts_at" required inputmode="numeric" autocomplete="off" placeholder="${esc(t("fmt.minute"))}">`)}
        ${label("mt.ends", `<input name="ends_at" required inputmode="numeric" autocomplete="off" placeholder="${esc(t("fmt.minute"))}">`)}
      </div>
      <p class="hint" id="mt-tz">${esc(t("mt.tz_hint", { tz: getTz() }))}</p>
      ${label("mt.reason", `<input name="reason" maxlength="500" placeholder="${esc(t("mt.reason_ph"))}">`)}
      ${repeatFieldsHtml("mt-rrule-help")}
      <div id="mt-error" class="form-error" role="alert" hidden></div>
      <div class="form-actions"><button type="submit" class="primary">${esc(t("mt.create"))}</button></div>
    </form></div>`;
}

// Listeners, default times (from now, for two hours) and the choices. `onStart` runs when a window
// is sent, `onCreated(window)` when the server made it; `deviceId` preselects a device (from the
// device page or an alert).
export function wireForm(form, { onStart, onCreated, deviceId = null }) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(form, { onStart, onCreated });
  });
  form.addEventListener("change", onFormChange);
  form.addEventListener("input", (e) => {
    clearInvalid(e.target);
    if (e.target.name === "device_q") filterDevices(form);
  });
  form.addEventListener("click", (e) => {
    const b = e.target.closest("[data-quick]");
    if (b) quick(form, b.dataset.quick);
  });
  quick(form, "2h");
  refreshChoices(form);
  if (deviceId && store.devices.has(deviceId)) form.device_id.value = deviceId;
  showScope(form);
}

function quick(form, which) {
  const now = new Date(Math.floor(Date.now() / 60000) * 60000);
  let end;
  if (which === "tomorrow7") {
    // 07:00 tomorrow on the deployment's clock: tomorrow's local date, then 07:00 of it.
    const [date] = toLocalInput(new Date(now.getTime() + 24 * HOUR_MS)).split("T");
    end = fromLocalInput(`${date}T07:00`);
  } else end = new Date(now.getTime() + (which === "1d" ? 24 : 2) * HOUR_MS);
  form.starts_at.value = showLocal(now);
  form.ends_at.value = showLocal(end);
  clearInvalid(form.starts_at);
  clearInvalid(form.ends_at);
}

function filterDevices(form) {
  const q = fold(form.device_q.value.trim());
  let first = null;
  for (const o of form.device_id.querySelectorAll("option")) {
    o.hidden = Boolean(q) && !matchesWords(o.dataset.search, q);
    if (!o.hidden && !first) first = o;
  }
  for (const g of form.device_id.querySelectorAll("optgroup")) g.hidden = ![...g.children].some((o) => !o.hidden);
  const chosen = form.device_id.selectedOptions[0];
  if (first && (!chosen || chosen.hidden)) form.device_id.value = first.value;
}

// The device, commune and village choices from the live store (again after each snapshot).
export function refreshChoices(form) {
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
      .map((d) => `<option value="${esc(d.device_id)}" data-search="${esc(fold(`${d.name || ""} ${d.device_id} ${label(key)}`))}">` +
        `${esc(d.name || d.device_id)} (${esc(d.device_id)})</option>`).join("")}</optgroup>`).join("");
  const communes = [...store.communes.values()].sort((a, b) => a.name.localeCompare(b.name, "vi"));
  form.commune.innerHTML = communes.map((c) => `<option value="${esc(c.id)}">${esc(c.name)}</option>`).join("");
  form.commune.closest("label").classList.toggle("single", communes.length <= 1);
  if (keep.device_id) form.device_id.value = keep.device_id;
  if (keep.commune) form.commune.value = keep.commune;
  fillVillages(form, keep.village);
}

function fillVillages(form, keep = "") {
  const commune = form.commune.value;
  const villages = [...store.villages.values()].filter((v) => v.commune === commune).sort((a, b) => a.name.localeCompare(b.name, "vi"));
  form.village.innerHTML = `<option value="">${esc(t("mt.all_villages"))}</option>` +
    villages.map((v) => `<option value="${esc(v.id)}">${esc(v.name)}</option>`).join("");
  form.village.value = villages.some((v) => v.id === keep) ? keep : "";
}

function showScope(form) {
  const scope = form.scope.value;
  for (const el of form.querySelectorAll("[data-scope]")) {
    el.hidden = el.dataset.scope !== scope;
    for (const c of el.querySelectorAll("select")) c.disabled = el.hidden;
  }
}

function onFormChange(e) {
  const form = e.currentTarget;
  if (e.target.name === "scope") showScope(form);
  if (e.target.name === "commune") fillVillages(form);
  if (e.target.name === "repeat") showRepeat(form);
  clearInvalid(e.target);
}

function clearInvalid(input) {
  if (input && input.removeAttribute) input.removeAttribute("aria-invalid");
}

function showRefusal(form, err) {
  const box = form.querySelector("#mt-error");
  const fields = new Set();
  const lines = [];
  for (const [re, key, names] of REFUSALS) {
    if (!re.test(err.said ?? err.message ?? "")) continue;
    lines.push(t(key));
    for (const n of names) fields.add(n);
  }
  for (const d of Array.isArray(err.detail) ? err.detail : []) {
    const name = (d.loc || []).slice(-1)[0];
    if (FIELDS.includes(name)) fields.add(name);
  }
  // The page's words for the refusal it knows, else the sentence for the error's code.
  box.innerHTML = `<strong>${esc(t("mt.refused"))}</strong>` +
    (lines.length ? `<ul>${lines.map((l) => `<li>${esc(l)}</li>`).join("")}</ul>`
      : `<small>${esc(err.message)}</small>`);
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

async function submit(form, { onStart, onCreated }) {
  form.querySelector("#mt-error").hidden = true;
  onStart();
  const starts = readLocal(form.starts_at.value);
  const ends = readLocal(form.ends_at.value);
  const unreadable = [[form.starts_at, starts], [form.ends_at, ends]].filter(([, v]) => !v).map(([input]) => input);
  if (unreadable.length) {
    const box = form.querySelector("#mt-error");
    box.innerHTML = `<strong>${esc(t("mt.err_when"))}</strong>`;
    box.hidden = false;
    for (const input of unreadable) input.setAttribute("aria-invalid", "true");
    unreadable[0].focus();
    return;
  }
  const body = form.scope.value === "device"
    ? { device_id: form.device_id.value }
    : { commune: form.commune.value, village: form.village.value || null, kind: form.kind.value || null };
  Object.assign(body, {
    starts_at: starts && starts.toISOString(),
    ends_at: ends && ends.toISOString(),
    reason: form.reason.value.trim(),
  });
  const repeat = readRepeat(form, starts);
  if (repeat) body.rrule = repeat;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const w = await api("/api/v1/maintenance", { method: "POST", body });
    if (!form.isConnected) return; // the view was left meanwhile
    form.reason.value = "";
    resetRepeat(form);
    for (const n of FIELDS) if (form.elements[n]) form.elements[n].removeAttribute("aria-invalid");
    onCreated(w);
  } catch (err) {
    if (form.isConnected) showRefusal(form, err);
  } finally {
    button.disabled = false;
  }
}
