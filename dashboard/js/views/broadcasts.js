// «Phát thanh»: the commune radio's bulletins and warnings (SPEC §9). `#/broadcasts` lists what
// awaits approval and the history (filters, CSV in the page's words); `#/broadcasts/new` composes,
// `#/broadcasts/emergency` composes an emergency to every village (the overview's button), and
// `#/broadcasts/{id}` watches one's delivery live (broadcast_compose.js, broadcast_detail.js).

import { allPages, api } from "../api.js";
import { downloadTable, esc, fold, matchesWords, patchChildren } from "../dom.js";
import { fmtSheet, readDay, startOfLocalDate, t } from "../i18n.js";
import * as compose from "./broadcast_compose.js";
import * as detail from "./broadcast_detail.js";
import {
  canSend, isAdmin, OPEN_STATES, PRIORITIES, priorityBadge, refusalText, riskBadge, stateBadge, villageLabel,
} from "./broadcast_words.js";
import { repeatWords, showLocal } from "./schedule_fields.js";

const STATES = ["awaiting_approval", "scheduled", "active", "finished", "cancelled"];
const DAY_MS = 86400000;
let sub = null; // compose or detail while one of them is shown
let root = null;
let session = null;
let items = [];
let gen = 0;

export function mount(el, params, sess) {
  session = sess;
  const what = params[0];
  if (what === "new" || what === "emergency") {
    sub = compose;
    compose.mount(el, sess, { prefillEmergency: what === "emergency" });
    return;
  }
  if (what) {
    sub = detail;
    detail.mount(el, sess, what);
    return;
  }
  sub = null;
  items = [];
  root = document.createElement("section");
  root.className = "broadcasts bc-list";
  root.id = "broadcasts";
  const send = canSend(session);
  root.innerHTML = `
    <div class="bc-top"><h1>${esc(t("bc.title"))}</h1>
      ${send ? `<div class="bc-top-actions"><a class="chip strong" href="#/broadcasts/new" id="bc-new">${esc(t("bc.new"))}</a>
        <a class="bc-emergency" href="#/broadcasts/emergency" id="bc-emergency">${esc(t("bc.emergency_button"))}</a></div>`
        : `<p class="muted" id="bc-view-only">${esc(t("bc.view_only", { role: t(`role.${session.user.role}`) }))}</p>`}</div>
    <p id="bc-notice" class="notice" role="status" hidden></p>
    <div class="card" id="bc-awaiting-card" hidden><h2>${esc(t("bc.awaiting"))} <span class="badge" id="bc-awaiting-n"></span></h2>
      <ul class="bc-awaiting" id="bc-awaiting"></ul></div>
    <div class="card"><div class="card-head"><h2>${esc(t("bc.history"))} <span class="badge neutral" id="bc-count"></span></h2>
      <button type="button" id="bc-csv" class="chip">${esc(t("misc.csv"))}</button></div>
      <form class="toolbar bc-filters" id="bc-filters" autocomplete="off">
        <input type="search" name="q" placeholder="${esc(t("bc.search_ph"))}" aria-label="${esc(t("bc.search_ph"))}">
        <label>${esc(t("bc.f_state"))} <select name="state"><option value="">${esc(t("bc.all"))}</option>${STATES.map((s) =>
          `<option value="${s}">${esc(t(`bc.state_${s}`))}</option>`).join("")}</select></label>
        <label>${esc(t("bc.f_priority"))} <select name="priority"><option value="">${esc(t("bc.all"))}</option>${PRIORITIES.map((p) =>
          `<option value="${p}">${esc(t(`bc.prio_${p}`))}</option>`).join("")}</select></label>
        <label>${esc(t("bc.f_from"))} <input name="from" inputmode="numeric" placeholder="${esc(t("fmt.day"))}" size="10"></label>
        <label>${esc(t("bc.f_to"))} <input name="to" inputmode="numeric" placeholder="${esc(t("fmt.day"))}" size="10"></label>
      </form>
      <div class="table-wrap"><table class="table stack" id="bc-table"><thead></thead><tbody></tbody></table></div></div>`;
  el.append(root);
  root.addEventListener("click", onClick);
  const filters = root.querySelector("#bc-filters");
  filters.addEventListener("submit", (e) => e.preventDefault());
  filters.addEventListener("input", (e) => {
    e.target.removeAttribute("aria-invalid");
    if (e.target.name === "q") renderTable();
  });
  filters.addEventListener("change", (e) => {
    if (e.target.name !== "q") load();
  });
  load();
}

export function unmount() {
  if (sub) sub.unmount();
  sub = null;
  root = null;
}

export function update(delta) {
  if (sub) sub.update(delta);
  else if (root && delta.full) renderTable();
}

export function tick() {
  // Open broadcasts move: their counts are read again now and then (every 10 s, main.js).
  if (!sub && root && items.some((b) => OPEN_STATES.includes(b.state))) load();
}

function filterParams() {
  const f = root.querySelector("#bc-filters");
  const params = { counts: "true", state: f.state.value, priority: f.priority.value };
  for (const [name, shift] of [["from", 0], ["to", DAY_MS]]) {
    const text = f[name].value.trim();
    if (!text) continue;
    const day = readDay(text);
    if (!day) {
      f[name].setAttribute("aria-invalid", "true");
      continue;
    }
    params[name] = new Date(startOfLocalDate(day).getTime() + shift).toISOString();
  }
  return params;
}

async function load() {
  const mine = root;
  const g = ++gen;
  try {
    const fetched = await allPages("/api/v1/broadcasts", filterParams());
    const waiting = await allPages("/api/v1/broadcasts", { state: "awaiting_approval" });
    if (root !== mine || g !== gen) return;
    items = fetched.reverse(); // newest first
    renderAwaiting(waiting.reverse());
    renderTable();
  } catch (err) {
    if (root !== mine || g !== gen) return;
    root.querySelector("#bc-table tbody").innerHTML = `<tr><td class="error">${esc(t("misc.error", { msg: err.message }))}</td></tr>`;
  }
}

function renderAwaiting(waiting) {
  const card = root.querySelector("#bc-awaiting-card");
  card.hidden = !waiting.length;
  root.querySelector("#bc-awaiting-n").textContent = waiting.length;
  const admin = isAdmin(session);
  patchChildren(root.querySelector("#bc-awaiting"), waiting.map((b) => [String(b.id), `<li data-broadcast="${esc(b.id)}">
      <div class="bc-aw-main"><a href="#/broadcasts/${esc(b.id)}"><strong>${esc(b.title)}</strong></a> ${priorityBadge(b.priority)} ${riskBadge(b.risk_level)}
        <small class="muted">${esc(t("bc.aw_by", { who: b.created_by, at: showLocal(new Date(b.created_at)) }))} · ${esc(targetsText(b))}</small></div>
      ${admin ? `<button type="button" class="primary" data-approve="${esc(b.id)}">${esc(t("bc.approve"))}</button>`
        : `<span class="bc-waiting">${esc(t("bc.state_awaiting_approval"))}</span>`}</li>`]));
}

function targetsText(b) {
  const vs = (b.targets && b.targets.villages) || [];
  if (!vs.length) return t("bc.targets_other");
  const names = vs.map(villageLabel);
  return names.length > 3 ? t("bc.targets_many", { list: names.slice(0, 3).join(", "), n: names.length }) : names.join(", ");
}

function shown() {
  const q = fold(root.querySelector("#bc-filters").q.value.trim());
  return q ? items.filter((b) => matchesWords(fold(`${b.title} ${b.text || ""} ${b.created_by} ${b.id}`), q)) : items;
}

function reachText(b) {
  if (b.villages_targeted === undefined || b.state === "awaiting_approval") return t("misc.none");
  return t("bc.reached_n", { n: b.villages_reached, total: b.villages_targeted });
}

function renderTable() {
  const rows = shown();
  root.querySelector("#bc-count").textContent = rows.length;
  const cols = ["bc.col_title", "bc.f_priority", "bc.f_starts", "bc.col_state", "bc.col_reached", "bc.created_by"];
  patchChildren(root.querySelector("#bc-table thead"), [["h", `<tr>${cols.map((c) => `<th>${esc(t(c))}</th>`).join("")}</tr>`]]);
  const cell = (i, html) => `<td data-label="${esc(t(cols[i]))}"><div>${html}</div></td>`;
  patchChildren(root.querySelector("#bc-table tbody"), rows.length ? rows.map((b) => {
    const full = b.villages_targeted > 0 && b.villages_reached === b.villages_targeted;
    return [String(b.id), `<tr data-broadcast="${esc(b.id)}" data-bc-state="${esc(b.state)}">
      ${cell(0, `<a href="#/broadcasts/${esc(b.id)}"><strong>${esc(b.title)}</strong></a><small class="muted"> #${esc(b.id)}</small>`)}
      ${cell(1, `${priorityBadge(b.priority)} ${riskBadge(b.risk_level)}`)}
      ${cell(2, `<time datetime="${esc(b.starts_at)}">${esc(showLocal(new Date(b.starts_at)))}</time>${b.rrule ? `<small class="muted"> · ${esc(repeatWords(b.rrule))}</small>` : ""}`)}
      ${cell(3, stateBadge(b.state))}
      ${cell(4, `<span class="ratio ${b.state === "awaiting_approval" ? "" : full ? "ok" : b.villages_reached ? "warn" : "bad"}">${esc(reachText(b))}</span>`)}
      ${cell(5, esc(b.created_by))}</tr>`];
  }) : [["empty", `<tr class="empty-row"><td class="muted" id="bc-empty">${esc(t("bc.empty"))}</td></tr>`]]);
}

function showNotice(text) {
  const el = root.querySelector("#bc-notice");
  el.textContent = text;
  el.hidden = false;
}

async function onClick(e) {
  if (e.target.closest("#bc-csv")) {
    exportCsv();
    return;
  }
  const yes = e.target.closest("[data-approve]");
  if (!yes) return;
  yes.disabled = true;
  const mine = root;
  try {
    await api(`/api/v1/broadcasts/${encodeURIComponent(yes.dataset.approve)}/approve`, { method: "POST", body: {} });
    if (root !== mine) return;
    showNotice(t("bc.approved", { id: yes.dataset.approve }));
  } catch (err) {
    if (root !== mine) return;
    showNotice(refusalText(err));
  }
  load();
}

// The history as shown, in the page's words and the commune's clock.
function exportCsv() {
  downloadTable("phat-thanh.csv", [
    ["csv.id", (b) => b.id],
    ["bc.col_title", (b) => b.title],
    ["bc.f_priority", (b) => t(`bc.prio_${b.priority}`)],
    ["bc.f_risk", (b) => (b.risk_level ? `${b.risk_level} · ${t(`bc.risk_${b.risk_level}`)}` : "")],
    ["bc.col_state", (b) => t(`bc.state_${b.state}`)],
    ["bc.f_starts", (b) => fmtSheet(b.starts_at)],
    ["bc.f_expires", (b) => fmtSheet(b.expires_at)],
    ["mt.repeat", (b) => repeatWords(b.rrule)],
    ["bc.col_villages", (b) => ((b.targets && b.targets.villages) || []).map(villageLabel)],
    ["bc.col_villages_targeted", (b) => b.villages_targeted],
    ["bc.col_villages_reached", (b) => b.villages_reached],
    ["bc.col_devices_targeted", (b) => b.devices_targeted],
    ["bc.col_devices_done", (b) => b.devices_done],
    ["bc.created_by", (b) => b.created_by],
    ["csv.created_at", (b) => fmtSheet(b.created_at)],
    ["bc.approved_by", (b) => b.approved_by || ""],
    ["bc.col_approved_at", (b) => fmtSheet(b.approved_at)],
    ["bc.cancelled_by", (b) => b.cancelled_by || ""],
    ["bc.f_text", (b) => b.text || ""],
  ], shown());
}
