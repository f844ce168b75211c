// Small DOM and formatting pieces shared by the views.

import { t } from "./i18n.js";

export const STATE_COLORS = {
  online: "#16a34a",
  offline: "#dc2626",
  unknown: "#94a3b8",
  maintenance: "#2563eb",
  auth_failed: "#d97706",
};
// Problems first when sorting.
export const STATE_RANK = { offline: 0, auth_failed: 1, unknown: 2, maintenance: 3, online: 4 };

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
}

export function statePill(state) {
  const s = state || "unknown";
  return `<span class="pill" data-state="${esc(s)}"><i class="dot"></i>${esc(t(`state.${s}`))}</span>`;
}

export function downloadCsv(filename, header, rows) {
  const cell = (v) => {
    const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const text = [header, ...rows].map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
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

const UNITS = {
  volume: "%", battery_pct: "%", brightness_pct: "%", cpu_pct: "%", mem_pct: "%", temperature_c: "°C",
  rssi_dbm: " dBm", rtt_ms: " ms", clock_offset_s: " s", uptime_s: " s",
};

export function fmtMetric(name, value) {
  if (typeof value === "boolean") return value ? "✓" : "✗";
  if (typeof value === "number") {
    const v = Number.isInteger(value) ? value : value.toFixed(Math.abs(value) < 10 ? 2 : 1);
    return `${v}${UNITS[name] || ""}`;
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
  return keys.map((k) => `${k.replace(/_(pct|c|ms|s|dbm)$/, "")} ${fmtMetric(k, m[k])}`).join(" · ");
}
