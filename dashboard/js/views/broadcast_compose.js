// Composing a broadcast (operators and admins): title, priority of Thông tư 39, risk level of
// Quyết định 18/2021 with its colour, an audio file (uploaded at once; the server reads its format and
// duration) and/or text for the e-boards, the villages picked from a list (found by typing, with or
// without diacritics) or on the map, who hears it (speakers, e-boards), volume, start, expiry and
// repeat, and the text channels (Zalo OA, Telegram… of the alert configuration) it also goes to —
// an emergency's default ones ticked. Sending asks first, naming every village and the count; an
// emergency's confirm button arms only after a moment, sits away from the send button, and Enter
// never presses it.

import { api } from "../api.js";
import { collate, esc } from "../dom.js";
import { fromLocalInput, getTz, t, toLocalInput } from "../i18n.js";
import { store } from "../live.js";
import { askConfirm, wireConfirm } from "./broadcast_confirm.js";
import { uploadAudio } from "./broadcast_upload.js";
import { VillagePicker, villagesCardHtml } from "./broadcast_villages.js";
import { canSend, PRIORITIES, RISK_COLORS, villageLabel } from "./broadcast_words.js";
import { readLocal, readRepeat, repeatFieldsHtml, showLocal, showRepeat } from "./schedule_fields.js";

const HOUR_MS = 3600000;

let root = null;
let session = null;
let emergency = false;
let picked = new Set(); // "commune/village"
let media = null; // {id, duration_s, content_type, name} once uploaded
let uploading = null; // the upload under way (a promise)
let uploadSeq = 0; // the latest file picked: an older upload's answer is dropped
let startShown = ""; // the start as first filled in: left so, the broadcast starts when sent
let expiryEdited = false; // the expiry was set by hand (else it follows the start: one hour after it)
let picker = null;
let built = false;
let channels = null; // {channels, emergency} once known; none configured: the choice is not shown
let channelsEdited = false;

export function mount(el, sess, { prefillEmergency = false } = {}) {
  session = sess;
  emergency = prefillEmergency;
  picked = new Set();
  media = null;
  uploading = null;
  built = false;
  channels = null;
  channelsEdited = false;
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
  if (picker) picker.destroy();
  picker = null;
  root = null;
}

export function update(delta) {
  if (!root || !canSend(session) || !delta.full) return;
  if (!built) build();
  else picker.render();
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
    send(form);
  });
  form.addEventListener("change", (e) => onChange(form, e));
  form.addEventListener("input", (e) => {
    e.target.removeAttribute?.("aria-invalid");
    if (e.target.name === "expires_at") expiryEdited = true;
    if (e.target.name === "volume") form.querySelector("#bc-volume-out").textContent = `${e.target.value}%`;
  });
  form.addEventListener("click", (e) => onClick(form, e));
  showPriority(form);
  loadChannels(form);
  picker = new VillagePicker(root, {
    picked,
    tileUrl: (session.config || {}).map_tile_url,
    onPicked: () => {
      root.querySelector("#bc-send-summary").textContent = t("bc.send_summary", { n: picked.size });
    },
  });
  wireConfirm(root.querySelector("#bc-confirm"), {
    onSent: (b) => {
      location.hash = `#/broadcasts/${b.id}`;
    },
    onRefused: (text) => showProblems([text]),
  });
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
      <fieldset class="bc-choice" id="bc-channels" hidden><legend>${esc(t("bc.f_channels"))}</legend></fieldset>
      <p class="hint" id="bc-channels-hint" hidden>${esc(t("bc.channels_hint"))}</p>
    </div></div>
    ${villagesCardHtml()}
    <div class="card bc-when"><h2>${esc(t("bc.f_when"))}</h2><div class="form-grid">
      <div class="pair">
        ${label("bc.f_starts", `<input name="starts_at" inputmode="numeric" placeholder="${esc(t("fmt.minute"))}">`)}
        ${label("bc.f_expires", `<input name="expires_at" inputmode="numeric" placeholder="${esc(t("fmt.minute"))}">`)}
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

async function loadChannels(form) {
  const mine = root;
  let got;
  try {
    got = await api("/api/v1/broadcasts/channels");
  } catch {
    return; // the broadcast still goes to the speakers; the server takes its emergency default
  }
  if (root !== mine || !got.channels.length) return;
  channels = got;
  const box = root.querySelector("#bc-channels");
  box.insertAdjacentHTML("beforeend", got.channels.map((c) => `<label class="bc-opt" data-channel="${esc(c)}">` +
    `<input type="checkbox" name="channels" value="${esc(c)}"><span>${esc(c)}</span></label>`).join(""));
  box.hidden = false;
  root.querySelector("#bc-channels-hint").hidden = false;
  tickChannels(form);
}

// An emergency's default channels are ticked until the clerk changes the choice.
function tickChannels(form) {
  if (!channels || channelsEdited) return;
  const defaults = form.priority.value === "emergency" ? channels.emergency : [];
  for (const c of form.querySelectorAll("input[name=channels]")) c.checked = defaults.includes(c.value);
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
  if (n === "priority") {
    showPriority(form);
    tickChannels(form);
  }
  if (n === "channels") channelsEdited = true;
  if (n === "repeat") showRepeat(form);
  if (n === "file") upload(e.target);
  if (n === "set_volume") form.volume.disabled = !e.target.checked;
  if (n === "starts_at" && !expiryEdited) {
    const start = readLocal(form.starts_at.value);
    if (start) form.expires_at.value = showLocal(new Date(start.getTime() + HOUR_MS));
  }
}

function onClick(form, e) {
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

async function upload(input) {
  const file = input.files[0];
  const box = root.querySelector("#bc-media");
  media = null;
  box.hidden = !file;
  if (!file) {
    uploadSeq += 1;
    uploading = null;
    return;
  }
  box.dataset.state = "busy";
  box.textContent = t("bc.uploading", { name: file.name });
  const mine = root;
  const ticket = ++uploadSeq;
  const job = uploadAudio(file);
  uploading = job;
  const out = await job;
  if (uploading === job) uploading = null;
  if (root !== mine || ticket !== uploadSeq) return; // left, or another file picked meanwhile
  box.dataset.state = out.error ? "error" : "ok";
  box.textContent = out.error || out.text;
  if (out.error) {
    input.value = "";
    input.setAttribute("aria-invalid", "true");
  } else {
    media = out.media;
    input.removeAttribute("aria-invalid");
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
  if (channels) body.channels = [...form.querySelectorAll("input[name=channels]:checked")].map((c) => c.value);
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

function send(form) {
  root.querySelector("#bc-error").hidden = true;
  const { problems, body, start } = readForm(form);
  if (problems.length) {
    showProblems(problems);
    return;
  }
  const n = reach(body.targets.kinds);
  askConfirm(root.querySelector("#bc-confirm"), {
    body,
    names: [...picked].map(villageLabel).sort(collate),
    speakers: body.media_id ? n.speaker : 0, // speakers are left out of a text-only broadcast
    eboards: n.eboard,
    start,
    waits: session.user.role !== "admin" && body.priority !== "emergency",
  });
}
