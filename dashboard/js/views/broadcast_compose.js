// Composing a broadcast (operators and admins): title, priority of Thông tư 39, risk level of
// Quyết định 18/2021 with its colour, an audio file (uploaded at once; the server reads its format and
// duration) and/or text for the e-boards, the villages picked from a list (found by typing, with or
// without diacritics) or on the map, who hears it (speakers, e-boards), volume, start, expiry and
// repeat. Sending asks first, naming every village and the count; an emergency's confirm button arms
// only after a moment, sits away from the send button, and Enter never presses it.

import { api } from "../api.js";
import { collate, esc, fold, matchesWords } from "../dom.js";
import { fmtNumber, fromLocalInput, getTz, t, toLocalInput } from "../i18n.js";
import { communeName, store } from "../live.js";
import {
  canSend, MAX_MEDIA_BYTES, PRIORITIES, priorityBadge, refusalText, RISK_COLORS, riskBadge, villageLabel,
} from "./broadcast_words.js";
import { readLocal, readRepeat, repeatFieldsHtml, showLocal, showRepeat } from "./schedule_fields.js";

const L = window.L;
const HOUR_MS = 3600000;
// How long an emergency's confirm button stays disarmed: long enough to read the list, not to delay a warning.
const ARM_MS = 2500;
const AUDIO_TYPES = ["audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/ogg"];

let root = null;
let session = null;
let emergency = false;
let picked = new Set(); // "commune/village"
let media = null; // {id, duration_s, content_type, name} once uploaded
let uploading = null; // the upload under way (a promise)
let startShown = ""; // the start as first filled in: left so, the broadcast starts when sent
let expiryEdited = false; // the expiry was set by hand (else it follows the start: one hour after it)
let map = null;
let dots = new Map();
let armTimer = 0;
let built = false;

export function mount(el, sess, { prefillEmergency = false } = {}) {
  session = sess;
  emergency = prefillEmergency;
  picked = new Set();
  media = null;
  uploading = null;
  built = false;
  root = document.createElement("section");
  root.className = "broadcasts bc-compose";
  root.id = "bc-compose";
  el.append(root);
  if (!canSend(session)) {
    root.innerHTML = `<a class="back" href="#/broadcasts">← ${esc(t("bc.title"))}</a>
      <div class="card"><p class="muted" id="bc-view-only">${esc(t("bc.view_only", { role: t(`role.${session.user.role}`) }))}</p></div>`;
    return;
  }
  if (store.loaded) build();
  else root.innerHTML = `<div class="loading">${esc(t("misc.loading"))}</div>`;
}

export function unmount() {
  clearTimeout(armTimer);
  if (map) map.remove();
  map = null;
  dots = new Map();
  root = null;
}

export function update(delta) {
  if (!root || !canSend(session) || !delta.full) return;
  if (!built) build();
  else renderVillages();
}

function build() {
  built = true;
  if (emergency) for (const v of store.villages.values()) picked.add(`${v.commune}/${v.id}`);
  root.innerHTML = formHtml();
  const form = root.querySelector("#bc-form");
  if (emergency) form.title.value = t("bc.emergency_title");
  const now = new Date(Math.floor(Date.now() / 60000) * 60000);
  startShown = showLocal(now);
  expiryEdited = false;
  form.starts_at.value = startShown;
  form.expires_at.value = showLocal(new Date(now.getTime() + HOUR_MS));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    askConfirm(form);
  });
  form.addEventListener("change", (e) => onChange(form, e));
  form.addEventListener("input", (e) => {
    e.target.removeAttribute?.("aria-invalid");
    if (e.target.name === "vq") filterVillages(form);
    if (e.target.name === "expires_at") expiryEdited = true;
    if (e.target.name === "volume") form.querySelector("#bc-volume-out").textContent = `${e.target.value}%`;
  });
  form.addEventListener("click", (e) => onClick(form, e));
  showPriority(form);
  renderVillages();
  buildMap();
  wireDialog();
}

function formHtml() {
  const label = (key, control, extra = "") => `<label${extra}><span>${esc(t(key))}</span>${control}</label>`;
  const prio = PRIORITIES.map((p) => `<label class="bc-opt" data-priority="${p}"><input type="radio" name="priority" value="${p}"${(emergency ? p === "emergency" : p === "normal") ? " checked" : ""}>` +
    `<span>${esc(t(`bc.prio_${p}`))}</span></label>`).join("");
  const risk = [`<label class="bc-opt"><input type="radio" name="risk_level" value="" checked><span>${esc(t("bc.risk_none"))}</span></label>`,
    ...[1, 2, 3, 4, 5].map((n) => `<label class="bc-opt bc-risk-opt" data-risk="${n}" style="--risk-bg:${RISK_COLORS[n].bg};--risk-ink:${RISK_COLORS[n].ink}">` +
      `<input type="radio" name="risk_level" value="${n}"><span><b>${n}</b> ${esc(t(`bc.risk_${n}`))}</span></label>`)].join("");
  return `<a class="back" href="#/broadcasts">← ${esc(t("bc.title"))}</a>
    <form id="bc-form" class="bc-form${emergency ? " is-emergency" : ""}" autocomplete="off" novalidate>
    <div class="card bc-what"><h2>${esc(t(emergency ? "bc.compose_emergency" : "bc.compose"))}</h2><div class="form-grid">
      ${label("bc.f_title", `<input name="title" required maxlength="200" placeholder="${esc(t("bc.f_title_ph"))}">`)}
      <fieldset class="bc-choice" id="bc-priority"><legend>${esc(t("bc.f_priority"))}</legend>${prio}</fieldset>
      <p class="hint" id="bc-prio-hint"></p>
      <fieldset class="bc-choice" id="bc-risk"><legend>${esc(t("bc.f_risk"))}</legend>${risk}</fieldset>
      ${label("bc.f_audio", `<input type="file" name="file" accept=".mp3,.wav,.ogg,audio/mpeg,audio/wav,audio/ogg">`)}
      <p class="bc-media" id="bc-media" role="status" hidden></p>
      ${label("bc.f_text", `<textarea name="text" rows="3" maxlength="2000" placeholder="${esc(t("bc.f_text_ph"))}"></textarea>`)}
      <p class="hint">${esc(t("bc.content_hint"))}</p>
    </div></div>
    <div class="card bc-where"><h2>${esc(t("bc.f_villages"))} <span class="badge neutral" id="bc-picked-n"></span></h2>
      <div class="toolbar"><input type="search" name="vq" placeholder="${esc(t("bc.vq_ph"))}" aria-label="${esc(t("bc.vq_ph"))}">
        <button type="button" class="chip" data-pick="all">${esc(t("bc.pick_all"))}</button>
        <button type="button" class="chip" data-pick="none">${esc(t("bc.pick_none"))}</button></div>
      <ul class="bc-vlist" id="bc-vlist"></ul>
      <div class="bc-map" id="bc-map"></div><p class="hint" id="bc-map-hint">${esc(t("bc.map_hint"))}</p>
      <fieldset class="bc-choice" id="bc-kinds"><legend>${esc(t("bc.f_kinds"))}</legend>
        <label class="check"><input type="checkbox" name="kinds" value="speaker" checked> ${esc(t("kinds.speaker"))}</label>
        <label class="check"><input type="checkbox" name="kinds" value="eboard" checked> ${esc(t("kinds.eboard"))}</label></fieldset>
    </div>
    <div class="card bc-when"><h2>${esc(t("bc.f_when"))}</h2><div class="form-grid">
      <div class="pair">
        ${label("bc.f_starts", `<input name="starts_at" inputmode="numeric" placeholder="dd/mm/yyyy hh:mm">`)}
        ${label("bc.f_expires", `<input name="expires_at" inputmode="numeric" placeholder="dd/mm/yyyy hh:mm">`)}
      </div>
      <div class="quick" role="group" aria-label="${esc(t("bc.expiry_quick"))}"><span class="muted">${esc(t("bc.expiry_quick"))}</span>
        <button type="button" class="chip" data-expiry="1">${esc(t("bc.exp_1h"))}</button>
        <button type="button" class="chip" data-expiry="3">${esc(t("bc.exp_3h"))}</button>
        <button type="button" class="chip" data-expiry="day">${esc(t("bc.exp_day"))}</button></div>
      <p class="hint">${esc(t("bc.when_hint", { tz: getTz() }))}</p>
      <div class="bc-volume"><label class="check"><input type="checkbox" name="set_volume"> ${esc(t("bc.f_set_volume"))}</label>
        <input type="range" name="volume" min="0" max="100" step="5" value="80" disabled aria-label="${esc(t("bc.f_volume"))}"><output id="bc-volume-out">80%</output></div>
      ${repeatFieldsHtml("bc-rrule-help")}
    </div></div>
    <div id="bc-error" class="form-error bc-error" role="alert" hidden></div>
    <div class="form-actions bc-send-bar"><span class="muted" id="bc-send-summary"></span><button type="submit" class="primary" id="bc-send"></button></div>
    </form>
    <dialog id="bc-confirm" class="bc-dialog" aria-labelledby="bc-confirm-title"></dialog>`;
}

function showPriority(form) {
  const p = form.priority.value;
  form.classList.toggle("is-emergency", p === "emergency");
  const send = root.querySelector("#bc-send");
  send.textContent = t(p === "emergency" ? "bc.send_emergency" : "bc.send");
  send.classList.toggle("danger", p === "emergency");
  const waits = session.user.role !== "admin" && p !== "emergency";
  root.querySelector("#bc-prio-hint").textContent = t(p === "emergency" ? "bc.hint_emergency" : waits ? "bc.hint_waits" : "bc.hint_admin");
}

function onChange(form, e) {
  const n = e.target.name;
  if (n === "priority") showPriority(form);
  if (n === "repeat") showRepeat(form);
  if (n === "file") upload(form, e.target);
  if (n === "set_volume") form.volume.disabled = !e.target.checked;
  if (n === "starts_at" && !expiryEdited) {
    const start = readLocal(form.starts_at.value);
    if (start) form.expires_at.value = showLocal(new Date(start.getTime() + HOUR_MS));
  }
  if (n === "village") {
    if (e.target.checked) picked.add(e.target.value);
    else picked.delete(e.target.value);
    showPicked();
  }
}

function onClick(form, e) {
  const pick = e.target.closest("[data-pick]");
  if (pick) {
    for (const li of root.querySelectorAll("#bc-vlist li")) {
      if (li.hidden) continue; // "all" picks what the search shows
      if (pick.dataset.pick === "all") picked.add(li.dataset.key);
      else picked.delete(li.dataset.key);
    }
    showPicked();
  }
  const exp = e.target.closest("[data-expiry]");
  if (exp) {
    const start = readLocal(form.starts_at.value) || new Date();
    let end;
    if (exp.dataset.expiry === "day") {
      const [date] = toLocalInput(start).split("T");
      end = fromLocalInput(`${date}T23:59`);
    } else end = new Date(start.getTime() + Number(exp.dataset.expiry) * HOUR_MS);
    form.expires_at.value = showLocal(end);
    form.expires_at.removeAttribute("aria-invalid");
    expiryEdited = true;
  }
}

// The villages of the commune(s), with what each has to hear a broadcast.
function villages() {
  const kinds = new Map();
  for (const d of store.devices.values()) {
    if (!d.village || (d.kind !== "speaker" && d.kind !== "eboard")) continue;
    const key = `${d.commune}/${d.village}`;
    const k = kinds.get(key) || { speaker: 0, eboard: 0 };
    k[d.kind] += 1;
    kinds.set(key, k);
  }
  return [...store.villages.values()].map((v) => {
    const key = `${v.commune}/${v.id}`;
    const label = villageLabel(key);
    return { key, label, search: fold(`${label} ${v.id} ${communeName(v.commune)}`), ...(kinds.get(key) || { speaker: 0, eboard: 0 }) };
  }).sort((a, b) => collate(a.label, b.label));
}

function renderVillages() {
  const list = root.querySelector("#bc-vlist");
  list.innerHTML = villages().map((v) => `<li data-key="${esc(v.key)}" data-search="${esc(v.search)}"><label class="check">
      <input type="checkbox" name="village" value="${esc(v.key)}"${picked.has(v.key) ? " checked" : ""}> <span>${esc(v.label)}</span></label>
      <small class="${v.speaker ? "muted" : "bc-warn"}">${esc(v.speaker ? t("bc.n_speakers", { n: v.speaker }) : t("bc.no_speaker"))}` +
      `${v.eboard ? ` · ${esc(t("bc.n_eboards", { n: v.eboard }))}` : ""}</small></li>`).join("") ||
    `<li class="empty">${esc(t("bc.no_villages"))}</li>`;
  filterVillages(root.querySelector("#bc-form"));
  showPicked();
}

function filterVillages(form) {
  const q = fold(form.vq.value.trim());
  for (const li of root.querySelectorAll("#bc-vlist li[data-key]")) li.hidden = Boolean(q) && !matchesWords(li.dataset.search, q);
}

function showPicked() {
  for (const c of root.querySelectorAll("#bc-vlist input[name=village]")) c.checked = picked.has(c.value);
  const n = root.querySelectorAll("#bc-vlist li[data-key]").length;
  root.querySelector("#bc-picked-n").textContent = t("bc.picked_n", { n: picked.size, total: n });
  root.querySelector("#bc-send-summary").textContent = t("bc.send_summary", { n: picked.size });
  for (const [key, m] of dots) m.setStyle(dotStyle(picked.has(key)));
}

function dotStyle(on) {
  return { radius: 13, weight: 3, color: on ? "#0b3a63" : "#64748b", fillColor: on ? "#0f4c81" : "#ffffff", fillOpacity: on ? 0.9 : 0.8 };
}

// One dot per village at the middle of its devices; a tap picks it or leaves it.
function buildMap() {
  const el = root.querySelector("#bc-map");
  const sums = new Map();
  for (const d of store.devices.values()) {
    if (!d.village || d.lat === null || d.lat === undefined || d.lon === null || d.lon === undefined) continue;
    const key = `${d.commune}/${d.village}`;
    const s = sums.get(key) || { lat: 0, lon: 0, n: 0 };
    s.lat += d.lat;
    s.lon += d.lon;
    s.n += 1;
    sums.set(key, s);
  }
  const placed = villages().filter((v) => sums.has(v.key));
  const missing = store.villages.size - placed.length;
  if (!L || !placed.length) {
    el.hidden = true;
    root.querySelector("#bc-map-hint").textContent = t("bc.map_none");
    return;
  }
  map = L.map(el, { attributionControl: false, zoomSnap: 0.25, scrollWheelZoom: false });
  const tileUrl = (session.config || {}).map_tile_url;
  if (tileUrl) L.tileLayer(tileUrl, { maxZoom: 19 }).addTo(map);
  const points = placed.map((v) => {
    const s = sums.get(v.key);
    return [v, [s.lat / s.n, s.lon / s.n]];
  });
  map.fitBounds(L.latLngBounds(points.map(([, p]) => p)).pad(0.25));
  for (const [v, p] of points) {
    const m = L.circleMarker(p, { ...dotStyle(picked.has(v.key)), bubblingMouseEvents: false }).addTo(map);
    m.bindTooltip(esc(v.label), { permanent: true, direction: "top", offset: [0, -12], className: "bc-map-label" });
    m.on("click", () => {
      if (picked.has(v.key)) picked.delete(v.key);
      else picked.add(v.key);
      showPicked();
    });
    m.getElement?.()?.setAttribute("data-village", v.key);
    dots.set(v.key, m);
  }
  if (missing > 0) root.querySelector("#bc-map-hint").textContent = `${t("bc.map_hint")} ${t("bc.map_missing", { n: missing })}`;
  requestAnimationFrame(() => map && map.invalidateSize());
}

async function upload(form, input) {
  const file = input.files[0];
  const box = root.querySelector("#bc-media");
  media = null;
  if (!file) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.dataset.state = "busy";
  const fail = (text) => {
    box.dataset.state = "error";
    box.textContent = text;
    input.value = "";
    input.setAttribute("aria-invalid", "true");
  };
  if (file.size > MAX_MEDIA_BYTES) {
    fail(t("bc.err_too_large", { name: file.name }));
    return;
  }
  box.textContent = t("bc.uploading", { name: file.name });
  // The server reads the file's own format; a type the browser guessed wrong (or none) is not sent.
  const body = new FormData();
  body.append("file", new File([file], file.name, { type: AUDIO_TYPES.includes(file.type) ? file.type : "application/octet-stream" }));
  const mine = root;
  const job = (async () => {
    const res = await fetch("/api/v1/media", { method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" } });
    const data = await res.json().catch(() => null);
    return { res, data };
  })();
  uploading = job;
  try {
    const { res, data } = await job;
    if (root !== mine || uploading !== job) return;
    if (res.ok) {
      media = { ...data, name: file.name };
      box.dataset.state = "ok";
      box.textContent = t("bc.uploaded", { name: file.name, s: fmtNumber(data.duration_s, 1), type: data.content_type.replace("audio/", "").toUpperCase() });
      input.removeAttribute("aria-invalid");
      return;
    }
    const msg = (data && data.error && data.error.message) || "";
    if (res.status === 413) fail(t("bc.err_too_large", { name: file.name }));
    else if (res.status === 422) fail(t(/no duration/.test(msg) ? "bc.err_no_duration" : "bc.err_not_audio", { name: file.name }));
    else fail(refusalText({ status: res.status, message: msg }));
  } catch (err) {
    if (root === mine) fail(t("misc.error", { msg: err.message }));
  } finally {
    if (uploading === job) uploading = null;
  }
}

function readForm(form) {
  const problems = [];
  const bad = (name, key) => {
    problems.push(t(key));
    const el = form.elements[name];
    if (el && el.setAttribute) el.setAttribute("aria-invalid", "true");
  };
  const title = form.title.value.trim();
  if (!title) bad("title", "bc.err_title");
  const text = form.text.value.trim();
  if (uploading) problems.push(t("bc.err_uploading"));
  else if (!media && !text) bad("file", "bc.err_no_content");
  const kinds = [...form.querySelectorAll("input[name=kinds]:checked")].map((c) => c.value);
  if (!kinds.length) problems.push(t("bc.err_kinds"));
  else if (!media && !kinds.includes("eboard")) problems.push(t("bc.err_text_needs_eboard"));
  if (!picked.size) problems.push(t("bc.err_no_villages"));
  const startUntouched = form.starts_at.value.trim() === startShown;
  const start = startUntouched ? new Date() : readLocal(form.starts_at.value);
  const expiryUntouched = startUntouched && !expiryEdited;
  const expiry = expiryUntouched ? null : readLocal(form.expires_at.value);
  if (!start) bad("starts_at", "mt.err_when");
  if (!expiryUntouched && !expiry) bad("expires_at", "mt.err_when");
  if (start && expiry && expiry <= start) bad("expires_at", "bc.err_expiry_before_start");
  const body = {
    title,
    priority: form.priority.value,
    targets: { villages: [...picked], kinds },
  };
  if (media) body.media_id = media.id;
  if (text) body.text = text;
  if (form.risk_level.value) body.risk_level = Number(form.risk_level.value);
  if (form.set_volume.checked) body.volume = Number(form.volume.value);
  if (!startUntouched && start) body.starts_at = start.toISOString();
  if (expiry) body.expires_at = expiry.toISOString();
  const rrule = readRepeat(form, start);
  if (rrule) body.rrule = rrule;
  return { problems, body, start: startUntouched ? null : start };
}

function showProblems(lines) {
  const box = root.querySelector("#bc-error");
  box.innerHTML = `<strong>${esc(t("bc.check"))}</strong><ul>${lines.map((l) => `<li>${esc(l)}</li>`).join("")}</ul>`;
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

// What the devices of the picked villages are, for the confirmation.
function reach(kinds) {
  const n = { speaker: 0, eboard: 0 };
  for (const d of store.devices.values()) {
    if (kinds.includes(d.kind) && picked.has(`${d.commune}/${d.village}`)) n[d.kind] += 1;
  }
  return n;
}

function askConfirm(form) {
  root.querySelector("#bc-error").hidden = true;
  const { problems, body, start } = readForm(form);
  if (problems.length) {
    showProblems(problems);
    return;
  }
  const urgent = body.priority === "emergency";
  const names = [...picked].map(villageLabel).sort(collate);
  const n = reach(body.targets.kinds);
  const speakersUsed = body.media_id ? n.speaker : 0;
  const waits = session.user.role !== "admin" && !urgent;
  const dlg = root.querySelector("#bc-confirm");
  dlg.dataset.priority = body.priority;
  dlg.innerHTML = `<form method="dialog" class="bc-dialog-body">
    <h2 id="bc-confirm-title">${esc(t(urgent ? "bc.confirm_emergency" : "bc.confirm_send", { n: names.length }))}</h2>
    <p class="bc-confirm-what"><strong>${esc(body.title)}</strong> ${priorityBadge(body.priority)} ${riskBadge(body.risk_level)}</p>
    <p class="bc-confirm-count" id="bc-confirm-count">${esc(t("bc.confirm_count", { n: names.length, speakers: speakersUsed, eboards: n.eboard }))}</p>
    <ul class="bc-confirm-villages" id="bc-confirm-villages">${names.map((v) => `<li>${esc(v)}</li>`).join("")}</ul>
    <p class="muted">${esc(start ? t("bc.confirm_at", { at: showLocal(new Date(start)) }) : t("bc.confirm_now"))}` +
      `${body.media_id ? "" : ` ${esc(t("bc.confirm_text_only"))}`}</p>
    ${waits ? `<p class="notice">${esc(t("bc.confirm_waits"))}</p>` : ""}
    <div class="bc-dialog-actions">
      <button type="button" class="primary${urgent ? " danger" : ""}" id="bc-confirm-yes" data-confirm${urgent ? " disabled" : ""}>${esc(t(urgent ? "bc.confirm_yes_emergency" : "bc.confirm_yes"))}</button>
      <button type="button" class="chip" id="bc-confirm-no" value="cancel">${esc(t("bc.confirm_back"))}</button>
    </div></form>`;
  dlg.showModal();
  dlg.querySelector("#bc-confirm-no").focus();
  dlg._body = body;
  clearTimeout(armTimer);
  if (urgent) {
    const yes = dlg.querySelector("#bc-confirm-yes");
    yes.dataset.arming = "true";
    armTimer = setTimeout(() => {
      yes.disabled = false;
      delete yes.dataset.arming;
    }, ARM_MS);
  }
}

function wireDialog() {
  const dlg = root.querySelector("#bc-confirm");
  // Enter never sends: a warning to every village must be a deliberate press, not a reflex.
  dlg.addEventListener("keydown", (e) => {
    if (e.key === "Enter") e.preventDefault();
  });
  dlg.addEventListener("click", async (e) => {
    if (e.target.closest("#bc-confirm-no")) {
      dlg.close();
      return;
    }
    const yes = e.target.closest("#bc-confirm-yes");
    if (!yes || yes.disabled) return;
    yes.disabled = true;
    yes.textContent = t("misc.sending");
    const mine = root;
    try {
      const b = await api("/api/v1/broadcasts", { method: "POST", body: dlg._body });
      if (root !== mine) return;
      dlg.close();
      location.hash = `#/broadcasts/${b.id}`;
    } catch (err) {
      if (root !== mine) return;
      dlg.close();
      showProblems([refusalText(err)]);
    }
  });
}
