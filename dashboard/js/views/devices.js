// The device list: filters, search, and a virtualised table (only visible rows exist in the DOM),
// so 5,000 devices and a stream of updates cost a few dozen row repaints per frame.

import { collate, downloadTable, esc, fold, matchesWords, metricSummary, STATE_RANK, statePill } from "../dom.js";
import { fmtAgo, fmtSheet, fmtTime, KINDS, reasonText, STATES, t } from "../i18n.js";
import { communeName, formerCommune, store, villageName } from "../live.js";

// Rows are fixed-height (the list is virtualised); on a phone a row is two lines: the whole name,
// then state, village and when last heard. Must match .vrow's height in app.css.
const PHONE = window.matchMedia("(max-width: 720px)");
const rowHeight = () => (PHONE.matches ? 64 : 44);
const OVERSCAN = 8;
// Kept across visits so that coming back from a device page keeps the operator's filters.
const filters = { q: "", kind: "", state: "", village: "", heard: "" };
// How a device is heard (the snapshot's `heard`), for the source filter.
const HEARD = ["mqtt", "profile", "snmp", "ping", "tcp", "http", "onvif"];
let root = null;
let list = null;
let rowsEl = null;
let spacer = null;
let filtered = [];
let rowPool = [];
let frame = 0;
let scrollTop = 0;

export function mount(el) {
  root = document.createElement("section");
  root.className = "devices";
  root.id = "devices";
  root.innerHTML = `
    <div class="toolbar">
      <input name="q" type="search" placeholder="${esc(t("list.search"))}" value="${esc(filters.q)}" aria-label="${esc(t("list.search"))}">
      <select name="kind" aria-label="${esc(t("col.kind"))}"><option value="">${esc(t("list.all_kinds"))}</option>
        ${KINDS.map((k) => `<option value="${k}">${esc(t(`kind.${k}`))}</option>`).join("")}</select>
      <select name="state" aria-label="${esc(t("col.state"))}"><option value="">${esc(t("list.all_states"))}</option>
        ${STATES.map((s) => `<option value="${s}">${esc(t(`state.${s}`))}</option>`).join("")}</select>
      <select name="village" aria-label="${esc(t("col.village"))}"></select>
      <select name="heard" aria-label="${esc(t("dev.heard"))}"><option value="">${esc(t("heard.all"))}</option>
        ${HEARD.map((h) => `<option value="${h}">${esc(t(`heard.${h}`))}</option>`).join("")}</select>
      <span id="device-count" class="muted"></span>
      <button type="button" id="devices-csv" class="chip">${esc(t("list.csv"))}</button>
    </div>
    <div class="vhead vrow"><span>${esc(t("col.state"))}</span><span>${esc(t("col.name"))}</span><span>${esc(t("col.kind"))}</span>
      <span>${esc(t("col.village"))}</span><span>${esc(t("col.last_seen"))}</span><span>${esc(t("col.metrics"))}</span></div>
    <div id="device-list" class="vlist" tabindex="0"><div class="vspacer"><div class="vrows"></div></div></div>`;
  el.append(root);
  list = root.querySelector("#device-list");
  spacer = root.querySelector(".vspacer");
  rowsEl = root.querySelector(".vrows");
  rowPool = [];
  fillVillages();
  for (const name of ["kind", "state", "village", "heard"]) root.querySelector(`select[name=${name}]`).value = filters[name];
  root.querySelector("input[name=q]").addEventListener("input", (e) => setFilter("q", e.target.value));
  for (const s of root.querySelectorAll("select")) s.addEventListener("change", (e) => setFilter(e.target.name, e.target.value));
  root.querySelector("#devices-csv").addEventListener("click", exportCsv);
  list.addEventListener("scroll", () => {
    scrollTop = list.scrollTop;
    schedule();
  }, { passive: true });
  list.addEventListener("click", (e) => {
    const row = e.target.closest("[data-device-id]");
    if (row) location.hash = `#/device/${encodeURIComponent(row.dataset.deviceId)}`;
  });
  window.addEventListener("resize", schedule);
  refilter();
  list.scrollTop = scrollTop;
  paint();
}

export function unmount() {
  cancelAnimationFrame(frame);
  window.removeEventListener("resize", schedule);
  root = null;
}

export function update(delta) {
  if (!root) return;
  if (delta.full) {
    fillVillages();
    refilter();
  } else if (delta.devices.size) {
    // A state change may move a row (sort puts problems first) or out of a state filter.
    let moved = false;
    for (const id of delta.devices) {
      const d = store.devices.get(id);
      if (d && d._rank !== STATE_RANK[d.state]) moved = true;
    }
    if (moved) refilter();
  }
  schedule();
}

export function tick() {
  if (root) paint(true);
}

function setFilter(name, value) {
  filters[name] = value;
  refilter();
  list.scrollTop = 0;
  schedule();
}

function fillVillages() {
  const sel = root.querySelector("select[name=village]");
  const opts = [...store.villages.values()].sort((a, b) => collate(a.name, b.name));
  const multi = store.communes.size > 1;
  sel.innerHTML = `<option value="">${esc(t("list.all_villages"))}</option>` + opts.map((v) =>
    `<option value="${esc(`${v.commune}/${v.id}`)}">${esc(v.name)}${multi ? ` (${esc((store.communes.get(v.commune) || {}).name || v.commune)})` : ""}</option>`).join("") +
    // the former communes (before the 2025 reform) the villages name: all of one's villages at once
    [...new Set(opts.map((v) => v.former_commune).filter(Boolean))].sort(collate).map((name) =>
      `<option value="${esc(`former:${name}`)}">${esc(t("fc.label", { name }))}</option>`).join("");
  sel.value = filters.village;
}

function refilter() {
  const q = fold(filters.q.trim());
  const out = [];
  let named = true;
  for (const d of store.devices.values()) {
    d._rank = STATE_RANK[d.state] ?? 5;
    if (d._order === undefined) named = false;
    if (filters.kind && d.kind !== filters.kind) continue;
    if (filters.state && d.state !== filters.state) continue;
    if (filters.village.startsWith("former:")) {
      if (formerCommune(d.commune, d.village) !== filters.village.slice(7)) continue;
    } else if (filters.village && `${d.commune}/${d.village}` !== filters.village) continue;
    if (filters.heard && (d.heard || "mqtt") !== filters.heard) continue;
    if (q) {
      if (d._search === undefined) d._search = fold(`${d.device_id} ${d.name || ""} ${villageName(d.commune, d.village)} ${formerCommune(d.commune, d.village) || ""} ${d.kind}`);
      if (!matchesWords(d._search, q)) continue;
    }
    out.push(d);
  }
  if (!named) orderByName();
  out.sort((a, b) => a._rank - b._rank || a._order - b._order);
  filtered = out.map((d) => d.device_id);
  root.querySelector("#device-count").textContent = t("list.count", { n: filtered.length, total: store.devices.size });
  root.querySelector("#device-count").dataset.n = filtered.length;
}

// Each device's place in name order, so that re-sorting after state changes compares numbers:
// comparing 5,000 names on every update took most of a frame. Devices from a new snapshot or new
// devices have none yet.
function orderByName() {
  const all = [...store.devices.values()].sort((a, b) => collate(a.name || a.device_id, b.name || b.device_id));
  all.forEach((d, i) => {
    d._order = i;
  });
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(() => {
    frame = 0;
    paint();
  });
}

function paint(force = false) {
  if (!root) return;
  const ROW_H = rowHeight();
  spacer.style.height = `${filtered.length * ROW_H}px`;
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - OVERSCAN);
  const last = Math.min(filtered.length, Math.ceil((list.scrollTop + list.clientHeight) / ROW_H) + OVERSCAN);
  const need = last - first;
  while (rowPool.length < need) {
    const r = document.createElement("div");
    r.className = "vrow";
    r.setAttribute("role", "row");
    rowsEl.append(r);
    rowPool.push(r);
  }
  rowPool.forEach((r, i) => {
    if (i >= need) {
      r.hidden = true;
      r.removeAttribute("data-device-id");
      return;
    }
    const d = store.devices.get(filtered[first + i]);
    r.hidden = false;
    r.style.transform = `translateY(${(first + i) * ROW_H}px)`;
    // Repaint a row only when what it shows changed.
    const sig = `${d.device_id}|${d.state}|${d.last_seen}|${ROW_H}|${force ? Date.now() : ""}|${JSON.stringify(d.metrics || {})}`;
    if (r._sig === sig) return;
    r._sig = sig;
    r.dataset.deviceId = d.device_id;
    r.dataset.state = d.state || "unknown";
    r.innerHTML = `<span>${statePill(d.state)}</span>` +
      `<span class="name"><strong>${esc(d.name || d.device_id)}</strong><small>${esc(d.device_id)}</small></span>` +
      `<span>${esc(t(`kind.${d.kind}`))}</span><span>${esc(villageName(d.commune, d.village))}${villageFormer(d)}</span>` +
      `<span title="${esc(fmtTime(d.last_seen))}">${esc(fmtAgo(d.last_seen))}</span><span class="metrics">${esc(metricSummary(d))}</span>`;
  });
}

function villageFormer(d) {
  const name = formerCommune(d.commune, d.village);
  return name ? `<small class="former">${esc(t("fc.label", { name }))}</small>` : "";
}

// The rows the list shows, in its order, as a clerk reads them (one column per metric).
function exportCsv() {
  downloadTable("thiet-bi.csv", [
    ["csv.device_id", (d) => d.device_id],
    ["csv.name", (d) => d.name || ""],
    ["col.kind", (d) => t(`kind.${d.kind}`)],
    ["csv.commune", (d) => communeName(d.commune)],
    ["col.village", (d) => villageName(d.commune, d.village)],
    ["fc.column", (d) => formerCommune(d.commune, d.village) || ""],
    ["col.state", (d) => t(`state.${d.state || "unknown"}`)],
    ["col.since", (d) => fmtSheet(d.since)],
    ["col.last_seen", (d) => fmtSheet(d.last_seen)],
    ["col.reason", (d) => reasonText(d.reason)],
  ], filtered.map((id) => store.devices.get(id)), (d) => d.metrics);
}
