// The page's language and clock: words from the one catalogue (dashboard/words.json, which the
// server's services/words.py reads too), Vietnamese first; times in the deployment's time zone.

import DICT from "../words.json" with { type: "json" };

export const STATES = ["online", "offline", "unknown", "maintenance", "auth_failed"];
export const KINDS = ["camera", "speaker", "eboard", "wifi", "gateway"];
// Units of the status fields of SPEC §4 (the same in both languages).
export const METRIC_UNITS = {
  volume: "%", battery_pct: "%", brightness_pct: "%", cpu_pct: "%", mem_pct: "%", temperature_c: "°C",
  rssi_dbm: "dBm", rtt_ms: "ms", clock_offset_s: "s", uptime_s: "s", rx_bytes: "B", tx_bytes: "B",
  loss_pct: "%",
};

let lang = "vi";
let tz = "Asia/Ho_Chi_Minh";
const listeners = new Set();
let fmtCache = {};

export function init(config) {
  tz = config.tz || tz;
  villageWord = config.village_term || null;
  const saved = localStorage.getItem("ioc.lang");
  lang = DICT[saved] ? saved : DICT[config.lang] ? config.lang : "vi";
  document.documentElement.lang = lang;
}

export function getLang() {
  return lang;
}

export function getTz() {
  return tz;
}

export function setLang(next) {
  if (!DICT[next] || next === lang) return;
  lang = next;
  fmtCache = {};
  localStorage.setItem("ioc.lang", next);
  document.documentElement.lang = next;
  applyI18n(document);
  for (const fn of listeners) fn(next);
}

export function onLang(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

// What the communes call their villages (ấp, xóm, thôn, bản, tổ dân phố…; /ui/config.json); null: "xóm / ấp".
let villageWord = null;



const unknownKeys = new Set();

// Each commune's own word for its villages (the live snapshot's communes), for a view of one
// commune: Long Thành's «Xóm» beside Thoại Giang's «Ấp» where the deployment as a whole says
// «xóm / ấp».
let communeWords = new Map();
export function setCommuneWords(words) {
  communeWords = words;
}

// t() in one commune's words: its {vt} is that commune's word when it has one.
export function tIn(commune, key, vars) {
  const word = lang === "vi" ? communeWords.get(commune) : null;
  return word ? t(key, { ...vars, vt: word, Vt: word.charAt(0).toUpperCase() + word.slice(1) }) : t(key, vars);
}

export function t(key, vars) {
  let s = DICT[lang][key] ?? DICT.vi[key];
  if (s === undefined) {
    // Shown as the key itself; said once in the console so that a missing word is found.
    if (!unknownKeys.has(key)) console.warn(`words.json has no word "${key}"`);
    unknownKeys.add(key);
    s = key;
  }
  // A function, not the text itself: replaceAll reads "$&" in a replacement string as a pattern,
  // and fields carry what devices and people typed (a speaker's `source`, a broadcast's title).
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, () => String(v));
  if (s.includes("{vt}") || s.includes("{Vt}")) {
    const term = lang === "vi" ? villageWord || "xóm / ấp" : "village";
    s = s.replaceAll("{vt}", term).replaceAll("{Vt}", term.charAt(0).toUpperCase() + term.slice(1));
  }
  return s;
}

function has(key) {
  return DICT[lang][key] !== undefined || DICT.vi[key] !== undefined;
}

export const hasWord = has;

// A device event's name for people; a type the catalogue does not know keeps its own name.
export function eventLabel(type) {
  return has(`event.${type}`) ? t(`event.${type}`) : type;
}

// An event's text: the catalogue's words for a known camera event (raised or cleared), else what
// the device itself sent (devices of a Vietnamese commune often send Vietnamese already).
export function eventMessage(type, message, fields) {
  const key = `evmsg.${type}.${fields && fields.active === false ? "off" : "on"}`;
  return has(key) ? t(key) : message || "";
}

// Why a device is in its state, in the page's words; the API keeps the server's own text, and a
// reason the page has no words for is «lý do khác» (the server's English is no word for people).
const REASONS = [
  [/^no status for (\d+) s$/, "reason.silent"],
  [/^maintenance window$/, "reason.maintenance"],
  [/^device reported offline \(last will\)$/, "reason.last_will"],
  [/^never heard$/, "reason.never_heard"],
  [/^camera refuses our credentials$/, "reason.auth_failed"],
  [/^camera does not answer$/, "reason.no_answer"],
  [/^device refuses our credentials$/, "reason.device_auth_failed"],
  [/^device does not answer its polls$/, "reason.no_answer_polls"],
  [/^vendor broker refuses our credentials$/, "reason.source_refused"],
  [/^status received$/, "reason.status"],
];

export function reasonText(reason) {
  if (!reason) return "";
  for (const [re, key] of REASONS) {
    const m = reason.match(re);
    if (m) return t(key, { n: m[1] ? fmtNumber(Number(m[1])) : "" });
  }
  return t("reason.other");
}

// A status field's name for people, e.g. "Cường độ sóng (dBm)"; an unknown field keeps its key.
export function metricLabel(key, withUnit = false) {
  const name = DICT[lang][`metric.${key}`] ?? DICT.vi[`metric.${key}`] ?? key;
  return withUnit && METRIC_UNITS[key] && name !== key ? `${name} (${METRIC_UNITS[key]})` : name;
}

export function applyI18n(root) {
  document.title = t("app.title");
  // Leaflet's zoom buttons say "Zoom in" unless told otherwise: every map made from now on.
  if (window.L) Object.assign(L.Control.Zoom.prototype.options, { zoomInTitle: t("map.zoom_in"), zoomOutTitle: t("map.zoom_out") });
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}

function formatter(kind) {
  if (!fmtCache[kind]) {
    const locale = lang === "vi" ? "vi-VN" : "en-GB";
    const opts = {
      full: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false },
      time: { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false },
      short: { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false },
      minute: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false },
      long: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false },
      date: { year: "numeric", month: "2-digit", day: "2-digit" },
      day: { day: "2-digit", month: "2-digit" },
      hm: { hour: "2-digit", minute: "2-digit", hour12: false },
    }[kind];
    fmtCache[kind] = new Intl.DateTimeFormat(locale, { ...opts, timeZone: tz });
  }
  return fmtCache[kind];
}

export function fmtTime(iso, kind = "full") {
  if (!iso) return t("misc.never");
  const d = iso instanceof Date ? iso : new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : formatter(kind).format(d);
}

export function fmtAgo(iso, now = Date.now()) {
  if (!iso) return t("misc.never");
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return t("misc.ago_s", { n: s });
  if (s < 3600) return t("misc.ago_m", { n: Math.floor(s / 60) });
  if (s < 86400) return t("misc.ago_h", { n: Math.floor(s / 3600) });
  return t("misc.ago_d", { n: Math.floor(s / 86400) });
}

// Decimals of an alert's `value` (services/alerts/messages.py shows the same).
const ALERT_DECIMALS = { camera_clock_skew: 0, speaker_battery_low: 0, temperature_high: 1 };

// Numbers in the page's style (vi-VN: comma decimals, dot thousands).
export function fmtNumber(v, decimals) {
  const opts = decimals === undefined
    ? { maximumFractionDigits: 2 }
    : { minimumFractionDigits: decimals, maximumFractionDigits: decimals };
  return new Intl.NumberFormat(lang === "vi" ? "vi-VN" : "en-GB", opts).format(v);
}

// What is wrong, in the catalogue's words for the rule ("am.<rule>", its {fields} from the alert's
// details; "am.<rule>.plain" when a detail is missing), as services/alerts/messages.py words it.
function alertWhat(rule, d) {
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  if (has(`am.${rule}`)) {
    const needed = [...DICT.vi[`am.${rule}`].matchAll(/\{(\w+)\}/g)].map((m) => m[1]).filter((k) => k !== "vt" && k !== "Vt");
    const vars = {};
    for (const k of needed) {
      const v = d[k];
      if (!(isNum(v) || (typeof v === "string" && v))) return has(`am.${rule}.plain`) ? t(`am.${rule}.plain`) : null;
      vars[k] = isNum(v) ? fmtNumber(v, k === "value" ? ALERT_DECIMALS[rule] : undefined) : v;
    }
    return t(`am.${rule}`, vars);
  }
  if (typeof d.metric === "string" && typeof d.op === "string" && d.value != null) {
    // A threshold rule of the alerts file: metric, comparison and limit.
    const show = (v) => (isNum(v) ? fmtNumber(v) : String(v));
    return t("am.threshold", { metric: metricLabel(d.metric), op: d.op, value: show(d.value), threshold: show(d.threshold) });
  }
  return null;
}

// An alert's one line in the page's language, e.g. "Router ấp Trung Bình mất kết nối", from its rule,
// device and `details` (the server's `message` is in IOC_LANG, for notifications). `deviceName`: the
// device's name when the page knows it. Rules the page has no words for keep the server's text.
export function alertText(a, deviceName = null) {
  const d = a.details || {};
  const what = alertWhat(a.rule === "offline" && d.flapping ? "flapping" : a.rule, d);
  if (what === null) return a.message || "";
  if (!a.device_id) return what.charAt(0).toUpperCase() + what.slice(1);
  const name = deviceName || `${DICT[lang][`kind.${a.kind}`] || ""} ${a.device_id}`.trim();
  return `${name} ${what}`;
}

// An instant as spreadsheets read a date and time: dd/MM/yyyy HH:mm:ss on the deployment's clock
// (vi-VN's own order puts the time first, which Excel and LibreOffice take for text).
export function fmtSheet(iso) {
  if (!iso) return "";
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(iso));
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("day")}/${get("month")}/${get("year")} ${get("hour")}:${get("minute")}:${get("second")}`;
}

// A day typed and shown as dd/MM/yyyy whatever the browser's locale (its own date inputs follow it:
// «11/27/2026» on a US one), kept as YYYY-MM-DD; null for text that is not a day of the calendar.
export function showDay(ymd) {
  const [y, m, d] = ymd.split("-");
  return `${d}/${m}/${y}`;
}

export function readDay(text) {
  const m = String(text).trim().match(/^(\d{1,2})\/(\d{1,2})\/(\d{4})$/);
  if (!m) return null;
  const [, d, mo, y] = m;
  const date = new Date(Date.UTC(+y, +mo - 1, +d));
  if (date.getUTCMonth() !== +mo - 1 || date.getUTCDate() !== +d) return null;
  return `${y}-${mo.padStart(2, "0")}-${d.padStart(2, "0")}`;
}

// The calendar date (YYYY-MM-DD) of an instant in the deployment's time zone.
export function localDate(d) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(d);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

function zoneParts(d) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: tz, hour12: false, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(d);
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return { y: get("year"), mo: get("month"), d: get("day"), h: get("hour") % 24, mi: get("minute"), s: get("second") };
}

// The instant a wall-clock time "YYYY-MM-DDTHH:MM[:SS]" names in the deployment's time zone,
// whatever zone the browser itself is in.
export function fromLocalInput(text) {
  const guess = new Date(`${text.length === 16 ? `${text}:00` : text}Z`);
  if (Number.isNaN(guess.getTime())) return null;
  const p = zoneParts(guess);
  const asLocal = Date.UTC(p.y, p.mo - 1, p.d, p.h, p.mi, p.s);
  return new Date(guess.getTime() - (asLocal - guess.getTime()));
}

// The value for an <input type="datetime-local"> showing an instant on the deployment's clock.
export function toLocalInput(d) {
  const p = zoneParts(d);
  const two = (n) => String(n).padStart(2, "0");
  return `${p.y}-${two(p.mo)}-${two(p.d)}T${two(p.h)}:${two(p.mi)}`;
}

// The instant a local calendar date starts at in the deployment's time zone.
export function startOfLocalDate(ymd) {
  return fromLocalInput(`${ymd}T00:00`);
}
