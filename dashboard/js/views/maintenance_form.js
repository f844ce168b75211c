// The form that creates a maintenance window (administrators): one device, or a commune's village
// and/or kind; start and end read on the deployment's clock (IOC_TZ), whatever zone the browser is
// in; an optional RFC 5545 repeat rule. What the server refuses is shown beside the fields it names.

import { api } from "../api.js";
import { esc } from "../dom.js";
import { fromLocalInput, getTz, KINDS, t, toLocalInput } from "../i18n.js";
import { communeName, store, villageName } from "../live.js";

// Words in the API's refusals, and what they mean in the form.
const REFUSALS = [
  [/ends_at must be after starts_at/, "mt.err_end_before_start", ["ends_at", "starts_at"]],
  [/rrule/i, "mt.err_rrule", ["rrule"]],
  [/no device/, "mt.err_device", ["device_id"]],
  [/no village/, "mt.err_village", ["village"]],
  [/no commune/, "mt.err_commune", ["commune"]],
];
const FIELDS = ["device_id", "commune", "village", "kind", "starts_at", "ends_at", "reason", "rrule"];

export function formHtml() {
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

// Listeners, default times (the next whole hour, for two hours) and the choices. `onStart` runs
// when a window is sent, `onCreated(window)` when the server made it.
export function wireForm(form, { onStart, onCreated }) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(form, { onStart, onCreated });
  });
  form.addEventListener("change", onFormChange);
  form.addEventListener("input", (e) => clearInvalid(e.target));
  const start = new Date(Math.ceil(Date.now() / 3600000) * 3600000);
  form.starts_at.value = toLocalInput(start);
  form.ends_at.value = toLocalInput(new Date(start.getTime() + 2 * 3600000));
  refreshChoices(form);
  showScope(form);
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
      .map((d) => `<option value="${esc(d.device_id)}">${esc(d.name || d.device_id)} (${esc(d.device_id)})</option>`).join("")}</optgroup>`).join("");
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

async function submit(form, { onStart, onCreated }) {
  form.querySelector("#mt-error").hidden = true;
  onStart();
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
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const w = await api("/api/v1/maintenance", { method: "POST", body });
    if (!form.isConnected) return; // the view was left meanwhile
    form.reason.value = "";
    form.rrule.value = "";
    for (const n of FIELDS) if (form.elements[n]) form.elements[n].removeAttribute("aria-invalid");
    onCreated(w);
  } catch (err) {
    if (form.isConnected) showRefusal(form, err);
  } finally {
    button.disabled = false;
  }
}
