// Overview: counts by state, by village and kind, open alerts, and what changed in the last hour.
// Under a stream of updates only the counts, rows and activity items that changed are replaced.

import { ALERT_ROLES, api } from "../api.js";
import { collate, esc, patchChildren, statePill, throttle } from "../dom.js";
import { alertText, eventLabel, eventMessage, fmtAgo, fmtTime, KINDS, reasonText, STATES, t } from "../i18n.js";
import { deviceName, formerCommune, recentActivity, store, villageName } from "../live.js";
import { alertBroadcast, canSend } from "./broadcast_words.js";

let root = null;
let session = null;
let activityHtml = new Map(); // activity item key -> its html (times are formatted once)
// In a storm of state changes (a hundred a second) counts and activity are redrawn at most every
// REDRAW_MS; the first change after a quiet spell, a new snapshot and alerts at once. Nobody reads
// a list that moves 60 times a second, and each redraw costs style, layout and paint of most of
// the page: redrawn every frame, the overview spent 90 % of the main thread and dropped to ~25 fps.
const REDRAW_MS = 250;
let waiting = null; // what changed since the last redraw
let redrawer = null;

export function mount(el, _params, sess) {
  session = sess;
  root = document.createElement("section");
  root.id = "overview";
  root.className = "overview";
  // An emergency warning is two clicks from here: this button, then send (which asks, naming the villages).
  const warn = canSend(session)
    ? `<div class="ov-actions"><a class="bc-emergency" href="#/broadcasts/emergency" id="ov-emergency">${esc(t("bc.emergency_button"))}</a></div>`
    : "";
  root.innerHTML = `${warn}
    <div class="kpis" id="kpis"></div>
    <div class="kind-summary" id="kind-summary"></div>
    <div class="grid-2">
      <div class="card"><h2>${esc(t("ov.villages"))}</h2><div class="table-wrap"><table id="village-table" class="matrix"><thead></thead><tbody></tbody></table></div></div>
      <div class="card alerts-card"><div class="card-head"><h2>${esc(t("ov.alerts"))} <span class="badge" id="alert-count">0</span></h2>
        <a href="#/alerts" id="all-alerts">${esc(t("ov.all_alerts"))}</a></div><ul id="alerts" class="alerts"></ul></div>
    </div>
    <div class="card"><h2>${esc(t("ov.changes"))}</h2><ul id="changes" class="activity"></ul></div>`;
  el.append(root);
  activityHtml = new Map();
  redrawer = throttle(redraw, REDRAW_MS);
  root.addEventListener("click", onClick);
  render({ full: true, alerts: true, changes: true });
}

export function unmount() {
  redrawer.cancel();
  waiting = null;
  root = null;
}

export function update(delta) {
  // Statuses that change no state (most of the stream) change nothing shown here.
  if (!root || !(delta.full || delta.alerts || delta.changes)) return;
  waiting = {
    full: Boolean(waiting?.full || delta.full),
    alerts: Boolean(waiting?.alerts || delta.alerts),
    changes: Boolean(waiting?.changes || delta.changes),
  };
  redrawer.request(delta.full || delta.alerts);
}

function redraw() {
  const delta = waiting;
  waiting = null;
  if (root && delta) render(delta);
}

export function tick() {
  if (root) renderChanges();
}

function render(delta) {
  if (!store.loaded) {
    root.querySelector("#kpis").innerHTML = `<div class="loading">${esc(t("misc.loading"))}</div>`;
    return;
  }
  if (delta.full || delta.changes) renderCounts();
  if (delta.full || delta.alerts) renderAlerts();
  if (delta.full) activityHtml = new Map(); // names may have changed
  if (delta.full || delta.changes) renderChanges();
}

// villages: "commune/village" -> {kind -> {state -> n}}
function tally() {
  const total = Object.fromEntries(STATES.map((s) => [s, 0]));
  const villages = new Map();
  const kindsPresent = new Set();
  for (const d of store.devices.values()) {
    const state = d.state || "unknown";
    total[state] = (total[state] || 0) + 1;
    kindsPresent.add(d.kind);
    const key = `${d.commune}/${d.village || ""}`;
    let v = villages.get(key);
    if (!v) villages.set(key, (v = {}));
    const k = v[d.kind] || (v[d.kind] = Object.fromEntries(STATES.map((s) => [s, 0])));
    k[state] += 1;
  }
  return { total, villages, kinds: KINDS.filter((k) => kindsPresent.has(k)) };
}

function renderCounts() {
  const { total, villages, kinds } = tally();
  const n = store.devices.size;
  patchChildren(root.querySelector("#kpis"), [
    ["total", `<div class="kpi total"><span class="kpi-label">${esc(t("ov.total"))}</span><span class="kpi-value" data-count="total">${n}</span></div>`],
    ...STATES.map((s) => [s, `<div class="kpi" data-state="${s}"><span class="kpi-label"><i class="dot"></i>${esc(t(`state.${s}`))}</span>` +
      `<span class="kpi-value" data-count-state="${s}">${total[s]}</span></div>`]),
  ]);

  // "Loa hoạt động 11/11 xóm": villages whose every device of the kind is online.
  const labels = new Map([...villages.keys()].map((key) => [key, villageLabel(key)]));
  const keys = [...villages.keys()].sort((a, b) => collate(labels.get(a), labels.get(b)));
  patchChildren(root.querySelector("#kind-summary"), kinds.map((kind) => {
    let ok = 0;
    let withKind = 0;
    let online = 0;
    let count = 0;
    for (const key of keys) {
      const c = villages.get(key)[kind];
      if (!c) continue;
      withKind += 1;
      const sum = STATES.reduce((a, s) => a + c[s], 0);
      count += sum;
      online += c.online;
      if (c.online === sum) ok += 1;
    }
    const cls = ok === withKind ? "ok" : ok === 0 ? "bad" : "warn";
    return [kind, `<div class="summary-chip ${cls}" data-kind-summary="${kind}" data-ok="${ok}" data-villages="${withKind}">` +
      `<span class="kind-icon" data-kind="${kind}"></span><span>${esc(t("ov.kind_summary", { kind: t(`kinds.${kind}`), ok, n: withKind }))}</span>` +
      `<small>${esc(t("ov.online_of", { ok: online, n: count }))}</small></div>`];
  }));

  const head = `<tr><th>${esc(t("ov.village"))}</th>${kinds.map((k) => `<th data-kind="${k}">${esc(t(`kinds.${k}`))}</th>`).join("")}<th>${esc(t("ov.total"))}</th></tr>`;
  patchChildren(root.querySelector("#village-table thead"), [["head", head]]);
  patchChildren(root.querySelector("#village-table tbody"), keys.map((key) => {
    const [commune, village] = key.split("/");
    const counts = villages.get(key);
    let vOnline = 0;
    let vTotal = 0;
    const cells = kinds.map((kind) => {
      const c = counts[kind];
      const label = esc(t(`kinds.${kind}`));
      if (!c) return `<td data-kind="${kind}" data-label="${label}" class="empty">·</td>`;
      const sum = STATES.reduce((a, s) => a + c[s], 0);
      vOnline += c.online;
      vTotal += sum;
      return `<td data-kind="${kind}" data-label="${label}" data-online="${c.online}" data-total="${sum}">${ratio(c.online, sum)}${bar(c, sum)}</td>`;
    }).join("");
    return [key, `<tr data-village="${esc(village)}" data-commune="${esc(commune)}"><th scope="row">${esc(labels.get(key))}${formerLine(commune, village)}</th>${cells}` +
      `<td class="total" data-label="${esc(t("ov.total"))}" data-online="${vOnline}" data-total="${vTotal}">${ratio(vOnline, vTotal)}</td></tr>`];
  }));
}

// The commune the village belonged to before the 2025 reform, under its name.
function formerLine(commune, village) {
  const name = formerCommune(commune, village);
  return name ? `<br><small class="former">${esc(t("fc.label", { name }))}</small>` : "";
}

function villageLabel(key) {
  const [commune, village] = key.split("/");
  const name = village ? villageName(commune, village) : "—";
  return store.communes.size > 1 ? `${name} (${(store.communes.get(commune) || {}).name || commune})` : name;
}

function ratio(ok, n) {
  const cls = ok === n ? "ok" : ok === 0 ? "bad" : "warn";
  return `<span class="ratio ${cls}">${ok}/${n}</span>`;
}

function bar(c, sum) {
  return `<span class="stackbar">${STATES.filter((s) => c[s]).map((s) =>
    `<i data-state="${s}" style="width:${(100 * c[s]) / sum}%" title="${esc(t(`state.${s}`))}: ${c[s]}"></i>`).join("")}</span>`;
}

function renderAlerts() {
  const alerts = [...store.alerts.values()].sort((a, b) => sevRank(a.severity) - sevRank(b.severity) ||
    String(b.opened_at).localeCompare(String(a.opened_at)));
  // Counted as the alerts tab counts: open means not yet acknowledged (acknowledged ones stay listed, marked).
  const open = alerts.filter((a) => a.state === "open").length;
  root.querySelector("#alert-count").textContent = open;
  root.querySelector("#alert-count").dataset.n = open;
  const canAck = session.user && ALERT_ROLES.includes(session.user.role);
  root.querySelector("#alerts").innerHTML = alerts.length
    ? alerts.map((a) => `<li data-alert-id="${esc(a.id)}" data-severity="${esc(a.severity)}" data-state="${esc(a.state)}">
        <span class="sev" data-severity="${esc(a.severity)}">${esc(t(`sev.${a.severity}`))}</span>
        <div class="alert-body"><strong>${esc(alertText(a, (store.devices.get(a.device_id) || {}).name) || a.rule)}</strong>
          <small>${place(a)}` +
          `${a.village ? `${esc(villageName(a.commune, a.village))} · ` : ""}${esc(fmtAgo(a.opened_at))}` +
          `${a.affected && a.affected.length ? ` · ${esc(t("alert.affected", { n: a.affected.length }))}` : ""}` +
          `${a.state === "acked" ? ` · ${esc(t("alert.acked"))}${a.acked_by ? ` (${esc(a.acked_by)})` : ""}` : ""}</small></div>
        ${canAck && a.state === "open" ? `<button type="button" class="chip" data-ack="${esc(a.id)}">${esc(t("alert.ack"))}</button>` : ""}
      </li>`).join("")
    : `<li class="empty">${esc(t("ov.no_alerts"))}</li>`;
}

// Where an alert is: its device, or the broadcast a broadcast_not_reached alert is about.
function place(a) {
  const bid = alertBroadcast(a);
  if (bid !== null) return `<a href="#/broadcasts/${bid}" data-broadcast-link="${bid}">${esc(t("al.broadcast"))} #${bid}</a> · `;
  return a.device_id ? `<a href="#/device/${encodeURIComponent(a.device_id)}">${esc(deviceName(a.device_id))}</a> · ` : "";
}

function sevRank(s) {
  return { critical: 0, warning: 1, info: 2 }[s] ?? 3;
}

function renderChanges() {
  const items = recentActivity(60);
  if (!items.length) {
    root.querySelector("#changes").innerHTML = `<li class="empty">${esc(t("ov.no_changes"))}</li>`;
    return;
  }
  const known = activityHtml;
  activityHtml = new Map();
  patchChildren(root.querySelector("#changes"), items.map((c) => {
    const key = `${c.type}|${c.seq ?? ""}|${c.device_id}|${c.time}|${c.state ?? c.event_type}`;
    const html = known.get(key) ?? activityItem(c);
    activityHtml.set(key, html);
    return [key, html];
  }));
}

function activityItem(c) {
  const link = `<a href="#/device/${encodeURIComponent(c.device_id)}">${esc(deviceName(c.device_id))}</a>`;
  const when = `<time datetime="${esc(c.time)}" title="${esc(fmtTime(c.time))}">${esc(fmtTime(c.time, "time"))}</time>`;
  if (c.type === "change") {
    return `<li data-change="${esc(c.device_id)}" data-state="${esc(c.state)}">${when}${link}` +
      `<span class="transition">${c.prev_state ? statePill(c.prev_state) + "→" : ""}${statePill(c.state)}</span>` +
      `<small>${esc(villageName(c.commune, c.village))}${c.reason ? ` · ${esc(reasonText(c.reason))}` : ""}</small></li>`;
  }
  return `<li data-event="${esc(c.device_id)}">${when}${link}<span class="sev" data-severity="${esc(c.severity)}">${esc(eventLabel(c.event_type))}</span>` +
    `<small>${esc(eventMessage(c.event_type, c.message, c.fields))}</small></li>`;
}

async function onClick(e) {
  const btn = e.target.closest("[data-ack]");
  if (!btn) return;
  btn.disabled = true;
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(btn.dataset.ack)}/ack`, { method: "POST", body: {} });
  } catch (err) {
    btn.disabled = false;
    btn.title = err.message;
  }
}
