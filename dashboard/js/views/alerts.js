// Alerts by state (open, acknowledged, resolved) and what technicians do about them: acknowledge
// with a comment, assign, resolve. Open and acknowledged alerts are the live feed's; resolved ones
// are read from the API, and read again when an alert message arrives while that tab is shown.

import { ALERT_ROLES, allPages, api, MAINTENANCE_ROLES, query } from "../api.js";
import { downloadTable, esc, fold, matchesWords } from "../dom.js";
import { alertText, fmtAgo, fmtSheet, fmtTime, getLang, hasWord, t, tIn } from "../i18n.js";
import { communeName, deviceName, store, villageName } from "../live.js";
import { alertBroadcast } from "./broadcast_words.js";

const TABS = ["open", "acked", "resolved"];
const PAGE = 100;
const AFFECTED_OPEN = 8;
const SEV_RANK = { critical: 0, warning: 1, info: 2 };
// What can be done to an alert in each state (the API refuses the rest with 409); who may do it
// is ALERT_ROLES.
const ACTIONS = { open: ["ack", "assign", "resolve"], acked: ["assign", "resolve"], resolved: [] };
const FORM_TITLE = { ack: "al.do_ack", assign: "al.do_assign", resolve: "al.do_resolve" };
// The assign picker offers who can handle an alert, technicians first; viewers only look.
const PICK_RANK = { technician: 0, operator: 1, admin: 2 };

let tab = "open"; // kept across visits
let search = ""; // folded (no diacritics, lower case); kept across visits
let root = null;
let session = null;
let resolved = { items: [], next: null, loaded: false };
let resolvedGen = 0;
let refetchTimer = 0;
let users = []; // GET /api/v1/users: {username, role, communes}

export function mount(el, _params, sess) {
  session = sess;
  root = document.createElement("section");
  root.className = "alerts-view";
  root.id = "alerts-view";
  root.innerHTML = `
    <div class="card">
      <div class="card-head"><h2>${esc(t("al.title"))}</h2>
        <div class="seg" role="tablist" aria-label="${esc(t("al.title"))}">${TABS.map((s) =>
          `<button type="button" role="tab" data-tab="${s}">${esc(t(`al.tab.${s}`))}<span class="tab-n" data-tab-count="${s}"></span></button>`).join("")}</div>
        <button type="button" id="alerts-csv" class="chip">${esc(t("misc.csv"))}</button></div>
      <input type="search" id="alert-search" class="alert-search" placeholder="${esc(t("al.search"))}"
        aria-label="${esc(t("al.search"))}" value="${esc(search)}">
      ${canAct() ? "" : `<p class="muted" id="alerts-view-only">${esc(t("al.view_only"))}</p>`}
      <div class="bulk" id="alerts-bulk" hidden>
        <label class="check"><input type="checkbox" id="pick-all"> ${esc(t("al.pick_all"))}</label>
        <button type="button" id="bulk-ack" class="chip strong" disabled></button>
        <span id="bulk-msg" class="muted" role="status"></span></div>
      <div id="alert-list" class="alert-list"></div>
      <button type="button" id="alerts-more" class="chip" hidden>${esc(t("misc.more"))}</button>
    </div>
    <datalist id="alert-users"></datalist>`;
  el.append(root);
  root.addEventListener("click", onClick);
  root.addEventListener("submit", onSubmit);
  root.addEventListener("input", (e) => {
    e.target.removeAttribute("aria-invalid");
    if (e.target.id === "alert-search") {
      search = fold(e.target.value).trim();
      renderList();
    }
  });
  root.addEventListener("change", onPick);
  showTab(tab);
  if (canAct()) loadUsers();
}

export function unmount() {
  clearTimeout(refetchTimer);
  root = null;
}

export function update(delta) {
  if (!root || !(delta.full || delta.alerts)) return;
  renderCounts();
  if (tab === "resolved") {
    // A burst of alert messages costs one request.
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(loadResolved, 300);
  } else renderList();
}

export function tick() {
  if (!root) return;
  for (const el of root.querySelectorAll("[data-ago]")) el.textContent = `(${fmtAgo(el.dataset.ago)})`;
}

function canAct() {
  return Boolean(session.user && ALERT_ROLES.includes(session.user.role));
}

function showTab(next) {
  tab = next;
  for (const b of root.querySelectorAll("[data-tab]")) {
    b.classList.toggle("active", b.dataset.tab === tab);
    b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  }
  root.querySelector("#alert-list").replaceChildren();
  renderCounts();
  if (tab === "resolved") {
    resolved = { items: [], next: null, loaded: false };
    loadResolved();
  }
  renderList();
}

async function loadResolved(more = false) {
  const gen = ++resolvedGen;
  const mine = root;
  try {
    // A refresh asks for as many rows as are shown, so "show more" is not undone by a new alert.
    const limit = more ? PAGE : Math.max(PAGE, resolved.items.length);
    const page = await api(`/api/v1/alerts${query({ state: "resolved", limit, cursor: more ? resolved.next : null })}`);
    if (root !== mine || gen !== resolvedGen) return;
    const items = more ? [...resolved.items, ...page.items] : page.items;
    resolved = { items, next: page.next_cursor, loaded: true };
    if (tab === "resolved") renderList();
  } catch (err) {
    if (root !== mine || gen !== resolvedGen) return;
    root.querySelector("#alert-list").innerHTML = `<p class="error">${esc(t("misc.error", { msg: err.message }))}</p>`;
  }
}

// What a search reads of an alert: what is wrong, its device (name and id), village, commune and
// rule, in the page's words, folded — "mat ket noi bac thanh" finds «mất kết nối … Bắc Thạnh».
function searchText(a) {
  const place = a.village ? villageName(a.commune, a.village) : "";
  return fold(`${alertText(a)} ${a.device_id || ""} ${a.device_id ? deviceName(a.device_id) : ""} ${place} ` +
    `${a.commune ? communeName(a.commune) : ""} ${ruleLabel(a.rule)} ${(a.details && a.details.title) || ""}`);
}

function rows() {
  return tabRows().filter((a) => !search || matchesWords(searchText(a), search));
}

function tabRows() {
  if (tab === "resolved") return resolved.items;
  const list = [...store.alerts.values()].filter((a) => a.state === tab);
  if (tab === "open") {
    list.sort((a, b) => (SEV_RANK[a.severity] ?? 3) - (SEV_RANK[b.severity] ?? 3) ||
      String(b.opened_at).localeCompare(String(a.opened_at)));
  } else list.sort((a, b) => String(b.acked_at).localeCompare(String(a.acked_at)));
  return list;
}

function renderCounts() {
  for (const s of ["open", "acked"]) {
    const n = [...store.alerts.values()].filter((a) => a.state === s).length;
    const el = root.querySelector(`[data-tab-count=${s}]`);
    el.textContent = store.loaded ? String(n) : "";
    el.dataset.n = n;
  }
}

// Several open alerts acknowledged at once (a storm after a power cut): pick, then one click.
function bulkOn() {
  return canAct() && tab === "open";
}

function picked() {
  return [...root.querySelectorAll("#alert-list input[data-pick]:checked")].map((c) => c.closest("article").dataset.alertId);
}

function renderBulk() {
  const bar = root.querySelector("#alerts-bulk");
  bar.hidden = !bulkOn() || !root.querySelector("#alert-list article");
  const n = picked().length;
  const button = root.querySelector("#bulk-ack");
  button.textContent = t("al.bulk_ack", { n });
  button.disabled = n === 0;
  const all = root.querySelectorAll("#alert-list input[data-pick]");
  root.querySelector("#pick-all").checked = all.length > 0 && n === all.length;
}

function onPick(e) {
  if (e.target.id === "pick-all") {
    for (const c of root.querySelectorAll("#alert-list input[data-pick]")) c.checked = e.target.checked;
  }
  if (e.target.id === "pick-all" || e.target.matches("input[data-pick]")) renderBulk();
}

async function bulkAck() {
  const ids = picked();
  const button = root.querySelector("#bulk-ack");
  button.disabled = true;
  const mine = root;
  let failed = 0;
  for (const id of ids) {
    try {
      await api(`/api/v1/alerts/${encodeURIComponent(id)}/ack`, { method: "POST", body: {} });
    } catch {
      failed += 1; // acknowledged meanwhile by someone else, or resolved: the feed says what it is now
    }
  }
  if (root !== mine) return;
  root.querySelector("#bulk-msg").textContent = failed
    ? t("al.bulk_done_some", { n: ids.length - failed, failed })
    : t("al.bulk_done", { n: ids.length });
  renderBulk();
}

function renderList() {
  const list = root.querySelector("#alert-list");
  root.querySelector("#alerts-bulk").hidden = true; // shown again once the cards are drawn
  root.querySelector("#alerts-more").hidden = !(tab === "resolved" && resolved.next);
  if ((tab === "resolved" && !resolved.loaded) || (tab !== "resolved" && !store.loaded)) {
    list.innerHTML = `<p class="loading">${esc(t("misc.loading"))}</p>`;
    return;
  }
  const items = rows();
  list.dataset.showing = tab;
  list.dataset.n = items.length;
  if (!items.length) {
    const empty = search && tabRows().length ? t("al.empty.search") : t(`al.empty.${tab}`);
    list.innerHTML = `<p class="empty muted">${esc(empty)}</p>`;
    return;
  }
  for (const el of list.querySelectorAll(":scope > :not(article)")) el.remove();
  // Keyed: an alert's card is kept (with a form someone is typing in) while other alerts change.
  const cards = new Map([...list.querySelectorAll(":scope > article")].map((el) => [el.dataset.alertId, el]));
  let prev = null;
  for (const a of items) {
    const id = String(a.id);
    let el = cards.get(id);
    cards.delete(id);
    if (!el) {
      el = document.createElement("article");
      el.className = "alert-card";
      el.dataset.alertId = id;
      el.innerHTML = `<div class="alert-main"></div><div class="alert-actions"></div><div class="alert-panel" hidden></div>`;
    }
    const pick = el.querySelector(":scope > .pick");
    if (bulkOn() && !pick) {
      el.insertAdjacentHTML("afterbegin", `<label class="pick check"><input type="checkbox" data-pick aria-label="${esc(t("al.pick"))}"> ${esc(t("al.pick"))}</label>`);
    } else if (!bulkOn() && pick) pick.remove();
    fill(el, a);
    const at = prev ? prev.nextElementSibling : list.firstElementChild;
    if (at !== el) list.insertBefore(el, at);
    prev = el;
  }
  for (const el of cards.values()) el.remove();
  renderBulk();
}

function fill(el, a) {
  // Names come with the snapshot: a card drawn before it is drawn again after.
  const sig = `${getLang()}|${store.loaded}|${JSON.stringify(a)}`;
  if (el._sig === sig) return;
  el._sig = sig;
  el.dataset.state = a.state;
  el.dataset.severity = a.severity;
  el.dataset.rule = a.rule;
  el.querySelector(".alert-main").innerHTML = mainHtml(a);
  const allowed = canAct() ? ACTIONS[a.state] || [] : [];
  // An open or acknowledged alert of one device: its maintenance is one click away (administrators).
  const maint = a.device_id && a.state !== "resolved" && session && MAINTENANCE_ROLES.includes(session.user.role)
    ? `<a class="chip" data-maintenance href="#/maintenance/device/${encodeURIComponent(a.device_id)}">${esc(t("mt.for_device"))}</a>` : "";
  el.querySelector(".alert-actions").innerHTML = allowed.map((act) =>
    `<button type="button" class="chip${act === "ack" ? " strong" : ""}" data-action="${act}">${esc(t(`al.${act}`))}</button>`).join("") + maint;
  const panel = el.querySelector(".alert-panel");
  if (!panel.hidden && !allowed.includes(panel.dataset.for)) closePanel(el);
}

function ruleLabel(rule) {
  const label = t(`rule.${rule}`);
  return label === `rule.${rule}` ? rule : label;
}

function item(label, value, field = "") {
  return `<div${field ? ` data-field="${field}"` : ""}><dt>${esc(label)}</dt><dd>${value}</dd></div>`;
}

function when(iso, ago = false) {
  return `<time datetime="${esc(iso)}">${esc(fmtTime(iso, "long"))}</time>${ago ? ` <small data-ago="${esc(iso)}">(${esc(fmtAgo(iso))})</small>` : ""}`;
}

function knownName(id) {
  const d = id ? store.devices.get(id) : null;
  return d ? d.name : null;
}

function deviceLink(id) {
  return `<a href="#/device/${encodeURIComponent(id)}" data-device-link="${esc(id)}">${esc(deviceName(id))}</a>`;
}

// An emergency that has not reached every village links to its broadcast's page, as a device alert
// links to its device (the notifications link there too).
function broadcastLink(a, id) {
  const title = typeof a.details.title === "string" && a.details.title ? `${a.details.title} ` : "";
  return `<a href="#/broadcasts/${id}" data-broadcast-link="${id}">${esc(title)}<small class="muted">#${id}</small></a>`;
}

// How a broadcast alert that resolved by itself ended (details.outcome), as its notification says it.
function outcomeText(a) {
  const outcome = a.details && a.details.outcome;
  if (alertBroadcast(a) === null || typeof outcome !== "string" || !hasWord(`nt.outcome.${outcome}`)) return null;
  const never = typeof a.details.not_reached === "string" && a.details.not_reached ? a.details.not_reached : "—";
  return t(`nt.outcome.${outcome}`, { not_reached: never });
}

function mainHtml(a) {
  const bid = alertBroadcast(a);
  const meta = [
    bid !== null
      ? item(t("al.broadcast"), broadcastLink(a, bid), "broadcast")
      : item(t("al.device"), a.device_id ? deviceLink(a.device_id) : esc(t("al.ioc_wide")), "device"),
    item(tIn(a.commune, "al.village"), esc(a.village ? villageName(a.commune, a.village) : t("misc.none")), "village"),
    item(t("al.opened"), when(a.opened_at, a.state !== "resolved"), "opened_at"),
    item(t("al.assignee"), a.assignee ? `<b>${esc(a.assignee)}</b>` : `<span class="muted">${esc(t("al.unassigned"))}</span>`, "assignee"),
  ];
  if (a.acked_at) {
    meta.push(item(t("al.acked"), when(a.acked_at), "acked_at"), item(t("al.acked_by"), esc(a.acked_by || t("misc.none")), "acked_by"));
  }
  if (a.resolved_at) {
    meta.push(item(t("al.resolved"), when(a.resolved_at), "resolved_at"),
      item(t("al.resolved_by"), a.resolved_by ? esc(a.resolved_by) : `<span class="muted">${esc(t(bid !== null ? "al.resolved_auto_broadcast" : "al.resolved_auto"))}</span>`, "resolved_by"));
  }
  const outcome = outcomeText(a);
  if (outcome) meta.push(`<div class="wide" data-field="outcome"><dt>${esc(t("al.outcome"))}</dt><dd>${esc(outcome)}</dd></div>`);
  if (a.comment) meta.push(`<div class="wide" data-field="comment"><dt>${esc(t("al.comment"))}</dt><dd>${esc(a.comment)}</dd></div>`);
  const affected = a.affected || [];
  return `<header class="alert-head"><span class="sev" data-severity="${esc(a.severity)}">${esc(t(`sev.${a.severity}`))}</span>
      <strong class="alert-rule">${esc(ruleLabel(a.rule))}</strong><span class="alert-msg">${esc(alertText(a, knownName(a.device_id)))}</span></header>
    <dl class="alert-meta">${meta.join("")}</dl>` +
    (affected.length
      ? `<details class="affected"${affected.length <= AFFECTED_OPEN ? " open" : ""}><summary>${esc(t("al.affected", { n: affected.length }))}</summary>
        <ul>${affected.map((id) => `<li>${deviceLink(id)}</li>`).join("")}</ul></details>`
      : "");
}

async function loadUsers() {
  const mine = root;
  try {
    const items = await allPages("/api/v1/users");
    if (root !== mine) return;
    users = items;
    fillUsers();
  } catch {
    // The picker stays empty; a typed name is still checked by the server.
  }
}

function fillUsers() {
  const me = session.user && session.user.username;
  const picks = users.filter((u) => u.role in PICK_RANK)
    .sort((a, b) => PICK_RANK[a.role] - PICK_RANK[b.role] || a.username.localeCompare(b.username));
  root.querySelector("#alert-users").innerHTML = picks.map((u) =>
    `<option value="${esc(u.username)}" data-role="${esc(u.role)}">${esc(`${u.username} — ${t(`role.${u.role}`)}${u.username === me ? ` (${t("al.me")})` : ""}`)}</option>`).join("");
}

function openPanel(el, action) {
  const panel = el.querySelector(".alert-panel");
  panel.dataset.for = action;
  panel.hidden = false;
  const field = action === "assign"
    ? `<label>${esc(t("al.username"))} <input name="username" list="alert-users" required maxlength="64" autocomplete="off"></label>`
    : `<label>${esc(t("al.comment"))} <input name="comment" maxlength="2000" placeholder="${esc(t("al.comment_ph"))}"></label>`;
  panel.innerHTML = `<form class="alert-form" data-form="${action}">${field}
      <button type="submit" class="primary">${esc(t(FORM_TITLE[action]))}</button>
      <button type="button" class="link" data-cancel>${esc(t("misc.cancel"))}</button>
      <p class="error" role="alert" hidden></p></form>`;
  for (const b of el.querySelectorAll("[data-action]")) b.classList.toggle("active", b.dataset.action === action);
  panel.querySelector("input").focus();
}

function closePanel(el) {
  const panel = el.querySelector(".alert-panel");
  panel.hidden = true;
  panel.replaceChildren();
  for (const b of el.querySelectorAll("[data-action]")) b.classList.remove("active");
}

function onClick(e) {
  const tabBtn = e.target.closest("button[data-tab]");
  if (tabBtn) {
    if (tabBtn.dataset.tab !== tab) showTab(tabBtn.dataset.tab);
    return;
  }
  if (e.target.closest("#bulk-ack")) {
    bulkAck();
    return;
  }
  if (e.target.closest("#alerts-more")) {
    loadResolved(true);
    return;
  }
  if (e.target.closest("#alerts-csv")) {
    exportCsv();
    return;
  }
  const card = e.target.closest("article[data-alert-id]");
  if (!card) return;
  if (e.target.closest("[data-cancel]")) {
    closePanel(card);
    return;
  }
  const btn = e.target.closest("button[data-action]");
  if (!btn) return;
  if (btn.classList.contains("active")) closePanel(card);
  else openPanel(card, btn.dataset.action);
}

async function onSubmit(e) {
  const form = e.target.closest("form.alert-form");
  if (!form) return;
  e.preventDefault();
  const card = form.closest("article[data-alert-id]");
  const action = form.dataset.form;
  const err = form.querySelector(".error");
  let body = {};
  if (action === "assign") body = { username: form.username.value.trim() };
  else if (form.comment.value.trim()) body = { comment: form.comment.value.trim() };
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  submit.textContent = t("misc.sending");
  err.hidden = true;
  const mine = root;
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(card.dataset.alertId)}/${action}`, { method: "POST", body });
    // The change comes back on the live feed and moves the card; the form's work is done.
    if (root === mine) closePanel(card);
    if (root === mine && tab === "resolved") loadResolved();
  } catch (ex) {
    if (root !== mine) return;
    submit.disabled = false;
    submit.textContent = t(FORM_TITLE[action]);
    // The server names who it does not know ("no user NAME"): say it in the page's words.
    const unknown = action === "assign" && ex.status === 400 && /^no user /.test(ex.said || "");
    err.textContent = t("al.failed", { msg: unknown ? t("al.no_user", { name: body.username }) : ex.message });
    err.hidden = false;
    if (unknown) form.username.setAttribute("aria-invalid", "true");
  }
}

// The rows of the tab, as the page shows them, in the page's words and the commune's clock.
function exportCsv() {
  downloadTable(`canh-bao-${tab}.csv`, [
    ["csv.id", (a) => a.id],
    ["csv.message", (a) => alertText(a, knownName(a.device_id))],
    ["al.rule", (a) => ruleLabel(a.rule)],
    ["al.severity", (a) => t(`sev.${a.severity}`)],
    ["csv.alert_state", (a) => t(`al.tab.${a.state}`)],
    ["csv.device_id", (a) => a.device_id || ""],
    ["csv.name", (a) => (a.device_id ? deviceName(a.device_id) : "")],
    ["csv.commune", (a) => (a.commune ? communeName(a.commune) : "")],
    ["col.village", (a) => (a.village ? villageName(a.commune, a.village) : "")],
    ["al.opened", (a) => fmtSheet(a.opened_at)],
    ["al.acked", (a) => fmtSheet(a.acked_at)],
    ["al.acked_by", (a) => a.acked_by || ""],
    ["al.comment", (a) => a.comment || ""],
    ["al.assignee", (a) => a.assignee || ""],
    ["al.resolved", (a) => fmtSheet(a.resolved_at)],
    ["al.resolved_by", (a) => a.resolved_by || ""],
    ["csv.affected", (a) => a.affected || []],
    ["csv.broadcast_id", (a) => alertBroadcast(a) ?? ""],
  ], rows());
}
