// Small DOM and formatting pieces shared by the views.

import { fmtNumber, getLang, METRIC_UNITS, metricLabel, t } from "./i18n.js";

export const STATE_COLORS = {
  online: "#16a34a",
  offline: "#dc2626",
  unknown: "#94a3b8",
  maintenance: "#2563eb",
  auth_failed: "#d97706",
};
// Problems first when sorting.
export const STATE_RANK = { offline: 0, auth_failed: 1, unknown: 2, maintenance: 3, online: 4 };

// Names in Vietnamese order, numbers by value ("Xóm 2" before "Xóm 10"). One collator:
// localeCompare(b, "vi") builds one per call, which was most of the cost of sorting thousands of
// devices.
export const collate = new Intl.Collator("vi", { numeric: true }).compare;

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

// Search and filters ignore diacritics and case: people type "bac thanh" for «Bắc Thạnh».
export function fold(v) {
  return String(v ?? "").toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d");
}

// Whether every word of a folded query is in a folded text ("loa trung binh 2" finds «Loa ấp Trung Bình 2»).
export function matchesWords(text, q) {
  return q.split(/\s+/).every((w) => text.includes(w));
}

export function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
}

export function statePill(state) {
  const s = state || "unknown";
  return `<span class="pill" data-state="${esc(s)}"><i class="dot"></i>${esc(t(`state.${s}`))}</span>`;
}

// Make `parent`'s element children the [key, html] entries, in order, keeping every element whose
// html has not changed: a live table or list then costs the rows that changed, not a rebuild of all
// of them on every update.
export function patchChildren(parent, entries) {
  const old = new Map();
  for (const el of parent.children) if (el._key !== undefined) old.set(el._key, el);
  const keep = entries.map(([key, html]) => {
    const el = old.get(key);
    if (!el || el._html !== html) return null;
    old.delete(key);
    return el;
  });
  // The new ones parsed in one go, in a detached copy of the parent (so a <tr> parses as a row).
  const box = parent.cloneNode(false);
  box.innerHTML = entries.filter((_, i) => !keep[i]).map(([, html]) => html).join("");
  const made = [...box.children];
  let at = parent.firstElementChild;
  entries.forEach(([key, html], i) => {
    let el = keep[i];
    if (!el) {
      el = made.shift();
      el._key = key;
      el._html = html;
    }
    if (el === at) at = at.nextElementSibling;
    else parent.insertBefore(el, at);
  });
  while (at) {
    const next = at.nextElementSibling;
    at.remove();
    at = next;
  }
}

// fn() at most every `ms`: at once after a quiet spell (or when asked `now`), otherwise once at the
// end of the interval, for views that must not redraw on every frame of a storm of changes.
export function throttle(fn, ms) {
  let timer = 0;
  let last = -Infinity;
  const run = () => {
    clearTimeout(timer);
    timer = 0;
    last = performance.now();
    fn();
  };
  return {
    request(now = false) {
      const wait = last + ms - performance.now();
      if (now || wait <= 0) run();
      else if (!timer) timer = setTimeout(run, wait);
    },
    cancel() {
      clearTimeout(timer);
      timer = 0;
    },
  };
}

// A spreadsheet runs text that begins with = + - @ (or TAB, CR, LF) as a formula: such text gets a
// leading ' (numbers, and text that is exactly a number like "-12.5", stay as they are). The same
// rule as services/csvcells.py, for every CSV the dashboard builds.
const FORMULA_START = /^[=+\-@\t\r\n]/;
const NUMBER = /^[+-]?(\d+[.,]?\d*|[.,]\d+)([eE][+-]?\d+)?$/;

// A number in a sheet for people: in Vietnamese «99,5» (a spreadsheet set to vi-VN reads it as the
// number, and «99.5» as text), in English 99.5. As services/csvcells.py writes the server's sheets.
function sheetNumber(v) {
  return getLang() === "vi" && Number.isFinite(v) && !Number.isInteger(v) ? String(v).replace(".", ",") : String(v);
}

export function csvCell(v) {
  let s = v === null || v === undefined ? "" : typeof v === "number" ? sheetNumber(v) : typeof v === "object" ? JSON.stringify(v) : String(v);
  if (typeof v === "string" && FORMULA_START.test(s) && !NUMBER.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function downloadCsv(filename, header, rows) {
  const text = [header, ...rows].map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
  // A BOM so that spreadsheet programs read Vietnamese text as UTF-8.
  const blob = new Blob(["\ufeff", text], { type: "text/csv;charset=utf-8" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// A table for people (Excel, LibreOffice): headers and values in the page's words, times on the
// commune's clock as dd/MM/yyyy HH:mm:ss, one column per metric. `columns`: [[header key, row => value]].
export function downloadTable(filename, columns, items, metricsOf = null) {
  const metricKeys = metricsOf ? [...new Set(items.flatMap((it) => Object.keys(metricsOf(it) || {})))].sort() : [];
  const header = [...columns.map(([key]) => t(key)), ...metricKeys.map((k) => metricLabel(k, true))];
  const rows = items.map((it) => [
    ...columns.map(([, get]) => cellValue(get(it))),
    ...metricKeys.map((k) => cellValue((metricsOf(it) || {})[k])),
  ]);
  downloadCsv(filename, header, rows);
}

function cellValue(v) {
  if (typeof v === "boolean") return t(v ? "csv.yes" : "csv.no");
  if (Array.isArray(v)) return v.join(", ");
  return v;
}

function fmtDuration(s) {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return t("dur.d", { d, h });
  if (h) return t("dur.h", { h, m });
  return t("dur.m", { m });
}

function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? fmtNumber(v, 1) : fmtNumber(v)} ${units[i]}`;
}

export function fmtMetric(name, value) {
  if (typeof value === "boolean") return value ? "✓" : "✗";
  if (typeof value === "number") {
    if (name === "uptime_s") return fmtDuration(value);
    if (name === "rx_bytes" || name === "tx_bytes") return fmtBytes(value);
    const v = Number.isInteger(value) ? fmtNumber(value) : fmtNumber(value, Math.abs(value) < 10 ? 2 : 1);
    const unit = METRIC_UNITS[name] || "";
    return unit === "%" || unit === "°C" || !unit ? `${v}${unit}` : `${v} ${unit}`;
  }
  if (name === "power" && typeof value === "string") {
    const label = t(`power.${value}`);
    return label === `power.${value}` ? value : label;
  }
  if (Array.isArray(value)) return value.join(", ") || t("misc.none");
  if (value && typeof value === "object") return JSON.stringify(value);
  return String(value ?? t("misc.none"));
}

// The one or two numbers an operator looks at first, per kind.
const KEY_METRICS = {
  speaker: ["volume", "battery_pct", "power"],
  eboard: ["screen_on", "brightness_pct", "temperature_c"],
  wifi: ["clients", "uplink_up", "cpu_pct"],
  gateway: ["uplink_up", "rtt_ms", "cpu_pct"],
  camera: ["rtt_ms", "recording", "clock_offset_s"],
};

export function metricSummary(d) {
  const m = d.metrics || {};
  const keys = (KEY_METRICS[d.kind] || []).filter((k) => k in m).slice(0, 3);
  return keys.map((k) => `${metricLabel(k)}: ${fmtMetric(k, m[k])}`).join(" · ");
}
