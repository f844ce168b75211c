// Pushes to the province (IOC_UPSTREAMS_FILE) and to NGSI-LD subscribers: each target's backlog,
// its last success and its last error, in the page's words (GET /api/v1/upstreams, admins only).
// Read again every 10 s while shown; the table downloads as CSV like every other.

import { api } from "../api.js";
import { downloadTable, esc } from "../dom.js";
import { fmtAgo, fmtNumber, fmtTime, t } from "../i18n.js";

const REFRESH_MS = 10000;
let root = null;
let items = [];
let timer = null;
let gen = 0;

export function mount(el, _params, session) {
  root = document.createElement("section");
  root.className = "upstreams";
  root.id = "upstreams";
  if (!session.user || session.user.role !== "admin") {
    root.innerHTML = `<div class="card"><p class="muted" id="up-admin-only">${esc(t("up.admin_only"))}</p></div>`;
    el.append(root);
    return;
  }
  root.innerHTML = `
    <div class="card"><div class="card-head"><h2>${esc(t("up.title"))} <span class="badge neutral" id="up-count"></span></h2>
      <button type="button" id="up-csv" class="chip">${esc(t("misc.csv"))}</button></div>
      <p class="muted">${esc(t("up.intro"))}</p>
      <p id="up-notice" class="notice" role="status" hidden></p>
      <div class="table-wrap"><table id="up-table" class="table stack"></table></div></div>`;
  el.append(root);
  root.querySelector("#up-csv").addEventListener("click", () =>
    downloadTable("upstreams.csv", COLUMNS, items),
  );
  load();
  timer = setInterval(load, REFRESH_MS);
}

export function unmount() {
  root = null;
  if (timer) clearInterval(timer);
  timer = null;
}

async function load() {
  const mine = ++gen;
  try {
    const r = await api("/api/v1/upstreams");
    if (!root || mine !== gen) return;
    items = r.items;
    root.querySelector("#up-notice").hidden = true;
    render();
  } catch (ex) {
    if (!root || mine !== gen) return;
    const n = root.querySelector("#up-notice");
    n.textContent = t("misc.error", { msg: ex.message });
    n.hidden = false;
  }
}

function targetName(it) {
  const [kind, ...rest] = it.id.split(":");
  return { kind: t(kind === "ngsi" ? "up.kind_ngsi" : "up.kind_upstream"), name: rest.join(":") };
}

// The last error in words: its kind (token, refused, server down ...), then what the receiver said.
export function errorWords(it) {
  if (!it.last_error) return "";
  const status = (it.last_error.match(/^HTTP (\d{3})/) || [])[1] || "";
  return t(`up.err.${it.last_error_kind || "other"}`, { status });
}

function stateOf(it) {
  if (!it.configured) return "removed";
  if (it.failing) return "failing";
  if (it.dead) return "dead";
  return "ok";
}

const COLUMNS = [
  ["up.col.kind", (it) => targetName(it).kind],
  ["up.col.target", (it) => targetName(it).name],
  ["up.col.state", (it) => t(`up.state.${stateOf(it)}`)],
  ["up.col.backlog", (it) => it.backlog],
  ["up.col.dead", (it) => it.dead],
  ["up.col.last_success", (it) => (it.last_success_at ? fmtTime(it.last_success_at) : "")],
  ["up.col.last_error", (it) => [errorWords(it), it.last_error || ""].filter(Boolean).join(" — ")],
  ["up.col.last_error_at", (it) => (it.last_error_at ? fmtTime(it.last_error_at) : "")],
];

function render() {
  root.querySelector("#up-count").textContent = String(items.length);
  const table = root.querySelector("#up-table");
  if (!items.length) {
    table.innerHTML = `<tbody><tr><td class="muted" id="up-empty">${esc(t("up.empty"))}</td></tr></tbody>`;
    return;
  }
  const head = COLUMNS.map(([k]) => `<th>${esc(t(k))}</th>`).join("");
  const rows = items.map((it) => {
    const { kind, name } = targetName(it);
    const state = stateOf(it);
    const err = it.last_error
      ? `<span class="up-err">${esc(errorWords(it))}</span><br><small class="muted">${esc(it.last_error)}</small>`
      : `<span class="muted">${esc(t("up.no_error"))}</span>`;
    return `<tr data-target="${esc(it.id)}" data-state="${state}">
      <td data-label="${esc(t("up.col.kind"))}">${esc(kind)}</td>
      <td data-label="${esc(t("up.col.target"))}"><strong>${esc(name)}</strong></td>
      <td data-label="${esc(t("up.col.state"))}"><span class="badge${state === "removed" ? " neutral" : ""}" data-n="${state === "ok" ? 0 : 1}">${esc(t(`up.state.${state}`))}</span>${state === "failing" ? `<br><small class="muted">${esc(t("up.retrying"))}</small>` : ""}</td>
      <td data-label="${esc(t("up.col.backlog"))}" class="num up-backlog">${esc(fmtNumber(it.backlog, 0))}${it.oldest_pending_at ? `<br><small class="muted">${esc(t("up.waiting_since", { ago: fmtAgo(it.oldest_pending_at) }))}</small>` : ""}</td>
      <td data-label="${esc(t("up.col.dead"))}" class="num">${esc(fmtNumber(it.dead, 0))}</td>
      <td data-label="${esc(t("up.col.last_success"))}">${it.last_success_at ? `${esc(fmtTime(it.last_success_at))}<br><small class="muted">${esc(fmtAgo(it.last_success_at))}</small>` : esc(t("misc.never"))}</td>
      <td data-label="${esc(t("up.col.last_error"))}">${err}</td>
      <td data-label="${esc(t("up.col.last_error_at"))}">${it.last_error_at ? esc(fmtTime(it.last_error_at)) : ""}</td>
    </tr>`;
  });
  table.innerHTML = `<thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody>`;
}
