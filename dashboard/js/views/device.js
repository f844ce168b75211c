// One device: live state, latest metrics, history charts (bucketed on the server), events,
// and for cameras the stream and snapshot links they report.

import { allPages, api, MAINTENANCE_ROLES, query } from "../api.js";
import { esc, fmtMetric, STATE_COLORS, statePill } from "../dom.js";
import { eventLabel, eventMessage, fmtAgo, fmtNumber, fmtTime, getLang, getTz, metricLabel, reasonText, t } from "../i18n.js";
import { deviceName, formerCommune, store, villageName } from "../live.js";

const uPlot = window.uPlot;
const PERIODS = { "6h": [6 * 3600, "5m"], "24h": [86400, "15m"], "7d": [7 * 86400, "1h"], "30d": [30 * 86400, "6h"] };
// Metrics charted first for each kind; any other numeric metric in the history follows.
const KIND_METRICS = {
  speaker: ["volume", "battery_pct", "rssi_dbm", "temperature_c"],
  eboard: ["brightness_pct", "temperature_c"],
  wifi: ["clients", "cpu_pct", "mem_pct"],
  gateway: ["rtt_ms", "cpu_pct", "mem_pct"],
  camera: ["rtt_ms", "clock_offset_s"],
};
let period = "24h";
let session = null;
let root = null;
let id = null;
let charts = [];
let resizeObs = null;

export function mount(el, params, sess) {
  id = params[0];
  session = sess;
  root = document.createElement("section");
  root.className = "device";
  root.id = "device";
  root.dataset.deviceId = id;
  el.append(root);
  renderShell();
  loadHistory();
}

export function unmount() {
  for (const c of charts) c.destroy();
  charts = [];
  if (resizeObs) resizeObs.disconnect();
  resizeObs = null;
  root = null;
}

export function update(delta) {
  if (root && (delta.full || delta.devices.has(id))) renderLive();
}

export function tick() {
  if (root) renderLive();
}

function renderShell() {
  root.innerHTML = `
    <a class="back" href="#/devices">${esc(t("dev.back"))}</a>
    <header class="device-head" id="device-head"></header>
    <div class="grid-2">
      <div class="card"><h2>${esc(t("dev.metrics"))}</h2><dl id="device-metrics" class="kv"></dl></div>
      <div class="card" id="device-links-card" hidden><h2>${esc(t("dev.links"))}</h2><ul id="device-links" class="links"></ul></div>
    </div>
    <div class="card" id="device-probe-card" hidden><h2>${esc(t("dev.probe"))}</h2><dl id="device-probe" class="kv"></dl></div>
    <div class="card" id="device-if-card" hidden><h2>${esc(t("dev.interfaces"))}</h2>
      <div class="table-wrap"><table id="device-interfaces" class="table"></table></div></div>
    <div class="card"><div class="card-head"><h2>${esc(t("dev.history"))}</h2>
      <div class="seg" role="group" aria-label="${esc(t("dev.period"))}">${Object.keys(PERIODS).map((p) =>
        `<button type="button" data-period="${p}" class="${p === period ? "active" : ""}">${esc(t(`period.${p}`))}</button>`).join("")}</div></div>
      <div id="charts" class="charts"><div class="loading">${esc(t("misc.loading"))}</div></div></div>
    <div class="card"><h2>${esc(t("dev.events"))}</h2><div class="table-wrap"><table id="events" class="table"></table></div></div>`;
  root.querySelector(".seg").addEventListener("click", (e) => {
    const b = e.target.closest("[data-period]");
    if (!b) return;
    period = b.dataset.period;
    for (const x of root.querySelectorAll("[data-period]")) x.classList.toggle("active", x === b);
    loadHistory();
  });
  renderLive();
}

// "(thuộc Xã Thoại Giang cũ)" after the village, where the village names its commune before the 2025 reform.
function former(d) {
  const name = formerCommune(d.commune, d.village);
  return name ? ` <span id="device-former" class="former">(${esc(t("fc.label", { name }))})</span>` : "";
}

function renderLive() {
  const d = store.devices.get(id);
  const head = root.querySelector("#device-head");
  if (!d) {
    head.innerHTML = store.loaded ? `<h1>${esc(t("dev.not_found"))}: ${esc(id)}</h1>` : `<h1>${esc(id)}</h1>`;
    return;
  }
  const parent = d.parent ? ` · ${esc(t("dev.parent"))}: <a href="#/device/${encodeURIComponent(d.parent)}">${esc(deviceName(d.parent))}</a>` : "";
  head.innerHTML = `<div><h1>${esc(d.name || d.device_id)}</h1>
      <p class="muted"><code>${esc(d.device_id)}</code> · ${esc(t(`kind.${d.kind}`))} · ${esc(villageName(d.commune, d.village))}${former(d)}${parent}</p>
      <p class="muted">${esc(t("dev.heard"))}: <span id="device-heard" data-heard="${esc(d.heard || "mqtt")}">${esc(heardText(d))}</span></p></div>
    <div class="device-state"><span id="device-state" data-state="${esc(d.state)}">${statePill(d.state)}</span>
      ${session && MAINTENANCE_ROLES.includes(session.user.role)
        ? `<a class="chip" id="device-maintenance" href="#/maintenance/device/${encodeURIComponent(d.device_id)}">${esc(t("mt.for_device"))}</a>` : ""}
      <small>${esc(t("col.since"))} ${esc(fmtTime(d.since))}</small>
      <small>${esc(t("col.last_seen"))}: ${esc(fmtAgo(d.last_seen))}</small>
      ${d.reason ? `<small class="reason">${esc(t("col.reason"))}: ${esc(reasonText(d.reason))}</small>` : ""}</div>`;
  const m = d.metrics || {};
  const keys = Object.keys(m).filter((k) => !isLink(k, m[k]) && !OWN_CARDS.test(k)).sort((a, b) => metricLabel(a).localeCompare(metricLabel(b), getLang()));
  root.querySelector("#device-metrics").innerHTML = keys.length
    ? keys.map((k) => `<dt title="${esc(t("dev.field_title", { key: k }))}" data-metric-label="${esc(k)}">${esc(metricLabel(k))}</dt>` +
      `<dd data-metric="${esc(k)}">${esc(fmtMetric(k, m[k]))}</dd>`).join("")
    : `<dt>${esc(t("misc.none"))}</dt><dd></dd>`;
  const links = collectLinks({ ...(d.attrs || {}), ...m });
  const card = root.querySelector("#device-links-card");
  card.hidden = links.length === 0;
  card.parentElement.classList.toggle("single", card.hidden);
  root.querySelector("#device-metrics").classList.toggle("wide", card.hidden);
  renderProbe(m);
  renderInterfaces(m.interfaces);
  root.querySelector("#device-links").innerHTML = links.map(([k, url]) =>
    `<li><span>${esc(t(`link.${k}`) === `link.${k}` ? k : t(`link.${k}`))}</span> <a href="${esc(url)}" target="_blank" rel="noopener noreferrer" data-link="${esc(k)}">${esc(url)}</a></li>`).join("");
}

// Shown in cards of their own (the last poll, the SNMP interface table), not among the metrics.
const OWN_CARDS = /^(probe_|interfaces$)/;

// How the IOC hears the device: its own MQTT, a vendor profile, SNMP, ping, TCP, HTTP or ONVIF.
function heardText(d) {
  const heard = d.heard || "mqtt";
  const s = d.source || {};
  const parts = [t(`heard.${heard}`)];
  if (heard === "profile") {
    if (s.profile) parts.push(t("heard.profile_name", { p: s.profile }));
    if (s.broker) parts.push(t("heard.broker", { b: s.broker }));
  } else if (heard === "http" && s.url) {
    parts.push(s.url);
    // a receiver in its vendor server's list: the profile reading it and its id there
    if (s.profile) parts.push(t("heard.profile_name", { p: s.profile }), t("heard.listed_as", { id: s.id }));
  }
  else if (s.host) parts.push(s.port && heard !== "snmp" ? `${s.host}:${s.port}` : s.host);
  if (s.poll_s && heard !== "profile") parts.push(t("heard.every", { n: s.poll_s }));
  return parts.join(" · ");
}

// The last poll of a polled device: answered or not, why not (in the page's words; the IOC's
// English detail as it logged it), and how many polls in a row failed.
function renderProbe(m) {
  const card = root.querySelector("#device-probe-card");
  card.hidden = typeof m.probe_ok !== "boolean";
  if (card.hidden) return;
  const code = m.probe_error;
  const why = code ? (t(`probe_error.${code}`) === `probe_error.${code}` ? code : t(`probe_error.${code}`)) : "";
  const rtt = typeof m.probe_rtt_ms === "number" ? ` (${fmtMetric("rtt_ms", m.probe_rtt_ms)})` : "";
  const rows = [
    [t("probe.result"), `<span id="probe-result" data-ok="${m.probe_ok}">${esc(m.probe_ok ? `✓ ${t("probe.ok")}${rtt}` : `✗ ${t("probe.failed")}`)}</span>`],
  ];
  if (code) rows.push([t("col.reason"), `<span id="probe-error" data-code="${esc(code)}">${esc(why)}</span>`]);
  if (m.probe_detail) rows.push(["", `<small class="muted" id="probe-detail">${esc(m.probe_detail)}</small>`]);
  if (m.probe_fails > 0) rows.push(["", esc(t("probe.fails", { n: m.probe_fails }))]);
  root.querySelector("#device-probe").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("");
}

// SNMP: the agent's interfaces and their state.
function renderInterfaces(list) {
  const card = root.querySelector("#device-if-card");
  card.hidden = !Array.isArray(list) || list.length === 0;
  if (card.hidden) return;
  const word = (v) => (v === "up" || v === "down" ? t(`if.${v}`) : v ?? "");
  const cols = ["index", "name", "descr", "oper", "admin", "rx", "tx"];
  root.querySelector("#device-interfaces").innerHTML =
    `<thead><tr>${cols.map((c) => `<th>${esc(t(`if.${c}`))}</th>`).join("")}</tr></thead><tbody>` +
    list.slice(0, 500).map((i) => `<tr data-if="${esc(i.name ?? i.index)}" data-oper="${esc(i.oper ?? "")}">` +
      `<td>${esc(i.index ?? "")}</td><td>${esc(i.name ?? "")}</td><td>${esc(i.descr ?? "")}</td>` +
      `<td>${esc(word(i.oper))}</td><td>${esc(word(i.admin))}</td>` +
      `<td>${esc(typeof i.rx_bytes === "number" ? fmtMetric("rx_bytes", i.rx_bytes) : "")}</td>` +
      `<td>${esc(typeof i.tx_bytes === "number" ? fmtMetric("tx_bytes", i.tx_bytes) : "")}</td></tr>`).join("") + "</tbody>";
}

function isLink(key, value) {
  return /stream|snapshot|rtsp|uri|url/i.test(key) && (typeof value === "string" || Array.isArray(value) || typeof value === "object");
}

// Stream/snapshot URIs a camera reports, however they are nested (profiles, lists, strings).
function collectLinks(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (typeof v === "string" && /^(rtsp|rtsps|https?):\/\//i.test(v) && /stream|snapshot|rtsp|uri|url|video|image/i.test(name)) out.push([name, v]);
    else if (v && typeof v === "object" && out.length < 20) collectLinks(v, name, out);
  }
  return out;
}

async function loadHistory() {
  const [span, bucket] = PERIODS[period];
  const to = new Date();
  const from = new Date(to.getTime() - span * 1000);
  const params = { from: from.toISOString(), to: to.toISOString() };
  const mine = root;
  try {
    const [hist, events] = await Promise.all([
      api(`/api/v1/devices/${encodeURIComponent(id)}/history${query({ ...params, bucket, limit: 10000 })}`),
      allPages(`/api/v1/devices/${encodeURIComponent(id)}/events`, params, 500),
    ]);
    if (root !== mine) return;
    renderCharts(hist.items || []);
    renderEvents(events);
  } catch (err) {
    if (root !== mine) return;
    root.querySelector("#charts").innerHTML = `<p class="error">${esc(t("misc.error", { msg: err.message }))}</p>`;
  }
}

function renderCharts(rows) {
  for (const c of charts) c.destroy();
  charts = [];
  const box = root.querySelector("#charts");
  box.innerHTML = "";
  box.dataset.buckets = rows.length;
  if (!rows.length || rows.every((r) => !r.n && !known(r))) {
    box.innerHTML = `<p class="muted" id="no-history">${esc(t("dev.no_history"))}</p>`;
  }
  if (!rows.length) return;
  const xs = rows.map((r) => Date.parse(r.bucket) / 1000);
  const d = store.devices.get(id) || {};
  const names = new Set();
  for (const r of rows) for (const k of Object.keys(r.metrics || {})) names.add(k);
  const preferred = (KIND_METRICS[d.kind] || []).filter((k) => names.has(k));
  const metrics = [...preferred, ...[...names].filter((k) => !preferred.includes(k)).sort()].slice(0, 8);
  const width = Math.max(280, box.clientWidth - 4);
  const tz = getTz();
  const span = xs.length > 1 ? xs[xs.length - 1] - xs[0] : 0;
  const xAxis = {
    values: (_, splits) => splits.map((s) => fmtTime(new Date(s * 1000), span > 2 * 86400 ? "day" : "hm")),
    size: 36,
  };
  const base = {
    width,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
    cursor: { sync: { key: `dev-${id}` } },
    legend: { live: true },
  };
  const xSeries = { label: t("ev.time"), value: (_, v) => (v === null ? "—" : fmtTime(new Date(v * 1000), "short")) };
  // The state band: one block per bucket, coloured by the share of it spent online while the
  // device's state was known. Time before it was first heard is "no data" (grey), not offline.
  const share = rows.map((r) => (known(r) ? Math.min(100, Math.round((r.online_share / known(r)) * 1000) / 10) : null));
  const knownPct = rows.map((r) => Math.round(known(r) * 100));
  const band = document.createElement("div");
  band.className = "chart";
  band.dataset.chart = "state";
  band.dataset.noData = share.filter((v) => v === null).length;
  box.append(band);
  charts.push(new uPlot({
    ...base,
    height: 96,
    title: t("dev.state_band"),
    scales: { y: { range: [0, 100] } },
    // An empty y axis as wide as the metric charts' keeps every chart's time axis aligned.
    axes: [xAxis, { size: 56, values: () => [], grid: { show: false }, ticks: { show: false } }],
    series: [xSeries, {
      label: t("state.online"),
      stroke: STATE_COLORS.online,
      paths: () => null,
      points: { show: false },
      value: (_, v, _s, idx) => {
        if (idx === null || idx === undefined) return "—";
        if (v === null) return t("dev.no_data");
        return knownPct[idx] < 100 ? t("dev.with_data", { v, k: knownPct[idx] }) : `${v}%`;
      },
    }],
    hooks: { draw: [drawBand] },
  }, [xs, share], band));
  box.append(bandKey());
  for (const name of metrics) {
    const pick = (k) => rows.map((r) => (r.metrics && r.metrics[name] ? r.metrics[name][k] : null));
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.chart = name;
    el.dataset.metric = name;
    box.append(el);
    charts.push(new uPlot({
      ...base,
      height: 150,
      title: metricLabel(name, true),
      // Numbers in the page's style (vi-VN: «37,5»), on the axis and in the legend alike.
      series: [xSeries, { label: t("chart.min"), stroke: "#93c5fd", width: 1, dash: [4, 3], value: legendNumber },
        { label: t("chart.avg"), stroke: "#0f4c81", width: 2, fill: "rgba(15,76,129,0.08)", value: legendNumber },
        { label: t("chart.max"), stroke: "#93c5fd", width: 1, dash: [4, 3], value: legendNumber }],
      axes: [xAxis, { size: 56, values: (_, splits) => splits.map((v) => fmtNumber(v)) }],
    }, [xs, pick("min"), pick("avg"), pick("max")], el));
  }
  if (!resizeObs) {
    resizeObs = new ResizeObserver(() => {
      const w = Math.max(280, box.clientWidth - 4);
      for (const c of charts) c.setSize({ width: w, height: c.height });
    });
    resizeObs.observe(box);
  }
}

const legendNumber = (_, v) => (v === null || v === undefined ? "—" : fmtNumber(v));

// The share of a bucket's time in which the device's state was known (gateways before
// known_share existed: all of it, as they had no way to tell).
function known(r) {
  if (r.online_share === null || r.online_share === undefined) return 0;
  const k = r.known_share === undefined ? 1 : r.known_share || 0;
  return k < 0.001 ? 0 : k;
}

const NO_DATA = "#cbd5e1";
const BAND_KEY = [["ok", STATE_COLORS.online], ["good", "#84cc16"], ["poor", "#f59e0b"], ["bad", STATE_COLORS.offline]];

function bandKey() {
  const el = document.createElement("div");
  el.className = "band-key";
  el.innerHTML = BAND_KEY.map(([k, c]) => `<span><i style="background:${c}"></i>${esc(t(`band.${k}`))}</span>`).join("") +
    `<span data-key="no-data"><i style="background:${NO_DATA}"></i>${esc(t("dev.no_data"))}</span>`;
  return el;
}

function shareColor(v) {
  if (v === null || v === undefined) return NO_DATA;
  if (v >= 99.5) return STATE_COLORS.online;
  if (v >= 90) return "#84cc16";
  if (v >= 50) return "#f59e0b";
  return STATE_COLORS.offline;
}

function drawBand(u) {
  const xs = u.data[0];
  const ys = u.data[1];
  const { left, top, width, height } = u.bbox;
  const ctx = u.ctx;
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width, height);
  ctx.clip();
  const step = xs.length > 1 ? xs[1] - xs[0] : 3600;
  for (let i = 0; i < xs.length; i++) {
    const x0 = u.valToPos(xs[i], "x", true);
    const x1 = u.valToPos(xs[i] + step, "x", true);
    ctx.fillStyle = shareColor(ys[i]);
    ctx.fillRect(x0, top + height * 0.15, Math.max(1, x1 - x0 - 0.5), height * 0.7);
  }
  ctx.restore();
}

function renderEvents(events) {
  const table = root.querySelector("#events");
  table.dataset.n = events.length;
  table.innerHTML = events.length
    ? `<thead><tr><th>${esc(t("ev.time"))}</th><th>${esc(t("ev.type"))}</th><th>${esc(t("ev.severity"))}</th><th>${esc(t("ev.message"))}</th></tr></thead><tbody>` +
      events.map((e) => `<tr data-event-seq="${esc(e.seq)}"><td>${esc(fmtTime(e.ts))}</td><td>${esc(eventLabel(e.type))}</td>` +
        `<td><span class="sev" data-severity="${esc(e.severity)}">${esc(t(`sev.${e.severity}`))}</span></td><td>${esc(eventMessage(e.type, e.message, e.fields))}</td></tr>`).join("") + "</tbody>"
    : `<tbody><tr><td class="muted">${esc(t("dev.no_events"))}</td></tr></tbody>`;
}
