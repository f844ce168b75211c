// One broadcast: what it is, approval (admins) or "chờ duyệt" (everyone else), cancel (its creator or an
// admin, after a question), and its delivery live — village by village (reached or not, and why not
// in words), device by device, and the text messages of its channels (Zalo OA, Telegram…) — asked
// again every few seconds while it is open.

import { api } from "../api.js";
import { collate, esc, patchChildren } from "../dom.js";
import { fmtTime, t, tIn } from "../i18n.js";
import { deviceName } from "../live.js";
import {
  canSend, coverageReason, deliveryPill, deliveryReason, isAdmin, OPEN_STATES, priorityBadge, refusalText,
  riskBadge, stateBadge, villageLabel,
} from "./broadcast_words.js";
import { repeatWords, showLocal } from "./schedule_fields.js";

// Delivery moves in seconds once a broadcast has begun; before that only an approval or a cancel can
// change the page.
const POLL_MS = 2000;
const WAIT_POLL_MS = 10000;
const FINAL = ["done", "failed", "rejected", "cancelled", "expired"];
let root = null;
let session = null;
let id = null;
let b = null;
let timer = 0;
let askingCancel = false;
let gen = 0;

export function mount(el, sess, broadcastId) {
  session = sess;
  id = broadcastId;
  b = null;
  askingCancel = false;
  root = document.createElement("section");
  root.className = "broadcasts bc-detail";
  root.id = "bc-detail";
  root.innerHTML = `<a class="back" href="#/broadcasts">← ${esc(t("bc.title"))}</a>
    <div class="card bc-head" id="bc-head"><div class="loading">${esc(t("misc.loading"))}</div></div>
    <p id="bc-notice" class="notice" role="status" hidden></p>
    <div class="card"><div class="card-head"><h2 id="bc-reach"></h2><small class="muted" id="bc-updated"></small></div>
      <div class="bc-progress"><i id="bc-progress-bar"></i></div>
      <p class="bc-not-reached" id="bc-not-reached" hidden></p>
      <div class="table-wrap"><table class="table stack" id="bc-villages"><thead></thead><tbody></tbody></table></div></div>
    <div class="card"><h2>${esc(t("bc.by_device"))}</h2>
      <div class="table-wrap"><table class="table stack" id="bc-devices"><thead></thead><tbody></tbody></table></div></div>
    <div class="card" id="bc-texts-card" hidden><h2>${esc(t("bc.texts_title"))}</h2>
      <div class="table-wrap"><table class="table stack" id="bc-texts"><thead></thead><tbody></tbody></table></div></div>`;
  el.append(root);
  root.addEventListener("click", onClick);
  load();
}

export function unmount() {
  clearTimeout(timer);
  root = null;
}

export function update(delta) {
  // Names of villages and devices come with a snapshot.
  if (root && b && delta.full) render();
}

async function load() {
  clearTimeout(timer);
  const mine = root;
  const g = ++gen;
  try {
    const fresh = await api(`/api/v1/broadcasts/${encodeURIComponent(id)}`);
    if (root !== mine || g !== gen) return;
    b = fresh;
    render();
  } catch (err) {
    if (root !== mine || g !== gen) return;
    if (err.status === 404 || err.status === 400 || err.status === 422) {
      root.querySelector("#bc-head").innerHTML = `<p class="error">${esc(t("bc.not_found", { id }))}</p>`;
      return;
    }
    showNotice(t("bc.poll_failed", { msg: err.message }));
  }
  if (root === mine && (!b || OPEN_STATES.includes(b.state))) timer = setTimeout(load, pollMs());
}

function pollMs() {
  if (!b) return POLL_MS;
  const begun = b.state !== "awaiting_approval" && Date.parse(b.starts_at) <= Date.now() + POLL_MS;
  // Every device answered (done, failed, …): only a late occurrence or the end can still change it.
  const settled = b.deliveries.length > 0 && b.deliveries.every((d) => FINAL.includes(d.state));
  return begun && !settled ? POLL_MS : WAIT_POLL_MS;
}

function canCancel() {
  return canSend(session) && (isAdmin(session) || b.created_by === session.user.username) && OPEN_STATES.includes(b.state);
}

function render() {
  renderHead();
  renderCoverage();
  renderDevices();
  renderTexts();
  root.querySelector("#bc-updated").textContent = OPEN_STATES.includes(b.state) ? t("bc.live") : t("bc.final");
}

function renderHead() {
  const actions = [];
  if (b.state === "awaiting_approval") {
    if (isAdmin(session)) actions.push(`<button type="button" class="primary" id="bc-approve">${esc(t("bc.approve"))}</button>`);
    else actions.push(`<span class="bc-waiting" id="bc-awaiting-note">${esc(t("bc.awaiting_note"))}</span>`);
  }
  if (canCancel()) {
    actions.push(askingCancel
      ? `<span class="confirm" role="group"><span>${esc(t("bc.confirm_cancel"))}</span>
          <button type="button" class="chip danger strong" id="bc-cancel-yes">${esc(t("bc.cancel_yes"))}</button>
          <button type="button" class="link" id="bc-cancel-no">${esc(t("bc.cancel_no"))}</button></span>`
      : `<button type="button" class="chip danger" id="bc-cancel">${esc(t("bc.cancel"))}</button>`);
  }
  const row = (key, value) => (value ? `<dt>${esc(t(key))}</dt><dd>${value}</dd>` : "");
  const html = `<div class="bc-head-main"><h1>${esc(b.title)}</h1>
      <p class="bc-badges">${priorityBadge(b.priority)} ${riskBadge(b.risk_level)} ${stateBadge(b.state)} <small class="muted">#${esc(b.id)}</small></p></div>
    <div class="bc-actions" id="bc-actions">${actions.join("")}</div>
    <dl class="kv bc-facts">
      ${row("bc.f_starts", esc(showLocal(new Date(b.starts_at))))}
      ${row("bc.f_expires", esc(showLocal(new Date(b.expires_at))))}
      ${row("mt.repeat", b.rrule ? esc(repeatWords(b.rrule)) : "")}
      ${row("bc.content", esc(b.media_id ? t("bc.content_audio") : t("bc.content_text_only")))}
      ${row("bc.f_text", b.text ? esc(b.text) : "")}
      ${row("bc.f_volume", b.volume !== null && b.volume !== undefined ? esc(`${b.volume}%`) : "")}
      ${row("bc.created_by", `${esc(b.created_by)} · ${esc(showLocal(new Date(b.created_at)))}`)}
      ${row("bc.approved_by", b.approved_by ? `${esc(b.approved_by)} · ${esc(showLocal(new Date(b.approved_at)))}` : "")}
      ${row("bc.cancelled_by", b.cancelled_by ? `${esc(b.cancelled_by)} · ${esc(showLocal(new Date(b.cancelled_at)))}` : "")}
    </dl>`;
  const head = root.querySelector("#bc-head");
  if (head._html !== html) {
    head.innerHTML = html;
    head._html = html;
  }
  head.dataset.state = b.state;
}

function renderCoverage() {
  const cov = [...b.coverage].sort((x, y) => Number(x.reached) - Number(y.reached) ||
    collate(villageLabel(`${x.commune}/${x.village}`), villageLabel(`${y.commune}/${y.village}`)));
  const reached = cov.filter((c) => c.reached).length;
  const reach = root.querySelector("#bc-reach");
  reach.textContent = t("bc.reached_n", { n: reached, total: cov.length });
  reach.dataset.reached = reached;
  reach.dataset.total = cov.length;
  const bar = root.querySelector("#bc-progress-bar");
  bar.style.width = `${cov.length ? (100 * reached) / cov.length : 0}%`;
  bar.dataset.full = String(reached === cov.length && cov.length > 0);
  const missing = cov.filter((c) => !c.reached);
  const not = root.querySelector("#bc-not-reached");
  not.hidden = !missing.length || b.state === "awaiting_approval";
  not.textContent = missing.length ? t("bc.not_reached_list", {
    list: missing.map((c) => `${villageLabel(`${c.commune}/${c.village}`)} (${coverageReason(c.reason, b.state)})`).join("; "),
  }) : "";
  const byVillage = new Map();
  for (const d of b.deliveries) {
    const key = `${d.commune}/${d.village || ""}`;
    if (!byVillage.has(key)) byVillage.set(key, []);
    byVillage.get(key).push(d);
  }
  // A broadcast to one commune calls its villages what that commune calls them.
  const communes = new Set(cov.map((c) => c.commune));
  const villageHead = communes.size === 1 ? tIn([...communes][0], "bc.col_village") : t("bc.col_village");
  const head = `<tr><th>${esc(villageHead)}</th><th>${esc(t("bc.col_heard"))}</th><th>${esc(t("bc.col_devices"))}</th></tr>`;
  patchChildren(root.querySelector("#bc-villages thead"), [["h", head]]);
  patchChildren(root.querySelector("#bc-villages tbody"), cov.map((c) => {
    const key = `${c.commune}/${c.village}`;
    const ds = byVillage.get(key) || [];
    const status = c.reached
      ? `<span class="bc-heard yes">✓ ${esc(t("bc.heard"))}</span>`
      : `<span class="bc-heard no">✗ ${esc(t("bc.not_heard"))}</span><small>${esc(coverageReason(c.reason, b.state))}</small>`;
    const devices = ds.length
      ? ds.map((d) => `<span class="bc-dev"><a href="#/device/${encodeURIComponent(d.device_id)}">${esc(deviceName(d.device_id))}</a> ${deliveryPill(d.state)}</span>`).join("")
      : `<span class="muted">${esc(t("bc.no_device_targeted"))}</span>`;
    return [key, `<tr data-village="${esc(key)}" data-reached="${c.reached}" data-reason="${esc(c.reason || "")}">
      <td data-label="${esc(villageHead)}"><div><strong>${esc(villageLabel(key))}</strong></div></td>
      <td data-label="${esc(t("bc.col_heard"))}"><div class="bc-status">${status}</div></td>
      <td data-label="${esc(t("bc.col_devices"))}"><div class="bc-devs">${devices}</div></td></tr>`];
  }));
}

function renderDevices() {
  const cols = ["bc.col_device", "bc.col_village", "bc.col_kind", "bc.col_state", "bc.col_why", "bc.col_updated"];
  patchChildren(root.querySelector("#bc-devices thead"), [["h", `<tr>${cols.map((c) => `<th>${esc(t(c))}</th>`).join("")}</tr>`]]);
  const rows = b.deliveries.length ? b.deliveries.map((d) => [d.device_id, `<tr data-device="${esc(d.device_id)}" data-dstate="${esc(d.state)}">
      <td data-label="${esc(t(cols[0]))}"><div><a href="#/device/${encodeURIComponent(d.device_id)}">${esc(deviceName(d.device_id))}</a><small class="muted"> ${esc(d.device_id)}</small></div></td>
      <td data-label="${esc(t(cols[1]))}"><div>${esc(d.village ? villageLabel(`${d.commune}/${d.village}`) : t("misc.none"))}</div></td>
      <td data-label="${esc(t(cols[2]))}"><div>${esc(t(`kinds.${d.kind}`))}</div></td>
      <td data-label="${esc(t(cols[3]))}"><div>${deliveryPill(d.state)}</div></td>
      <td data-label="${esc(t(cols[4]))}"><div>${esc(deliveryReason(d.reason) || t("misc.none"))}</div></td>
      <td data-label="${esc(t(cols[5]))}"><div><time datetime="${esc(d.updated_at)}" title="${esc(fmtTime(d.updated_at))}">${esc(fmtTime(d.updated_at, "time"))}</time></div></td></tr>`])
    : [["empty", `<tr class="empty-row"><td class="muted">${esc(t(b.state === "awaiting_approval" ? "bc.devices_after_approval" : "bc.devices_not_yet"))}</td></tr>`]];
  patchChildren(root.querySelector("#bc-devices tbody"), rows);
}

// A text's state in the colours of a delivery's: sent as done, retrying and failed as failed.
const TEXT_COLOUR = { scheduled: "scheduled", retrying: "failed", sent: "done", failed: "failed", cancelled: "cancelled" };

function renderTexts() {
  const channels = b.channels || [];
  root.querySelector("#bc-texts-card").hidden = !channels.length;
  if (!channels.length) return;
  const cols = ["bc.col_channel", "bc.col_state", "bc.col_error", "bc.col_updated"];
  patchChildren(root.querySelector("#bc-texts thead"), [["h", `<tr>${cols.map((c) => `<th>${esc(t(c))}</th>`).join("")}</tr>`]]);
  const sent = new Map((b.texts || []).map((x) => [x.channel, x]));
  patchChildren(root.querySelector("#bc-texts tbody"), channels.map((ch) => {
    const x = sent.get(ch);
    const state = x
      ? `<span class="bc-dstate" data-dstate="${esc(TEXT_COLOUR[x.state] || "scheduled")}">${esc(t(`bc.tx_${x.state}`))}</span>`
      : `<span class="muted">${esc(t("bc.texts_not_yet"))}</span>`;
    // The channel's own answer, as it gave it (the technician's detail).
    const error = x && x.error ? `<small class="muted">${esc(x.error)}</small>` : esc(t("misc.none"));
    const at = x ? `<time datetime="${esc(x.updated_at)}" title="${esc(fmtTime(x.updated_at))}">${esc(fmtTime(x.updated_at, "time"))}</time>` : "";
    return [ch, `<tr data-channel="${esc(ch)}" data-tstate="${esc(x ? x.state : "")}">
      <td data-label="${esc(t(cols[0]))}"><div><strong>${esc(ch)}</strong></div></td>
      <td data-label="${esc(t(cols[1]))}"><div>${state}</div></td>
      <td data-label="${esc(t(cols[2]))}"><div>${error}</div></td>
      <td data-label="${esc(t(cols[3]))}"><div>${at}</div></td></tr>`];
  }));
}

function showNotice(text) {
  const el = root.querySelector("#bc-notice");
  el.textContent = text;
  el.hidden = false;
}

async function act(path, done) {
  const mine = root;
  try {
    b = await api(`/api/v1/broadcasts/${encodeURIComponent(id)}/${path}`, { method: "POST", body: {} });
    if (root !== mine) return;
    askingCancel = false;
    showNotice(done);
    load();
  } catch (err) {
    if (root !== mine) return;
    askingCancel = false;
    showNotice(refusalText(err));
    load();
  }
}

function onClick(e) {
  if (e.target.closest("#bc-approve")) {
    e.target.closest("#bc-approve").disabled = true;
    act("approve", t("bc.approved", { id }));
  } else if (e.target.closest("#bc-cancel")) {
    askingCancel = true;
    renderHead();
    root.querySelector("#bc-cancel-no").focus();
  } else if (e.target.closest("#bc-cancel-no")) {
    askingCancel = false;
    renderHead();
  } else if (e.target.closest("#bc-cancel-yes")) {
    e.target.closest("#bc-cancel-yes").disabled = true;
    act("cancel", t("bc.cancelled", { id }));
  }
}
