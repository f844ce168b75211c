// Every string of the page, Vietnamese first. Times are shown in the deployment's time zone.

const DICT = {
  vi: {
    "app.title": "Trung tâm điều hành xã",
    "login.subtitle": "Đăng nhập để theo dõi thiết bị của xã",
    "login.username": "Tên đăng nhập",
    "login.password": "Mật khẩu",
    "login.submit": "Đăng nhập",
    "login.failed": "Sai tên đăng nhập hoặc mật khẩu",
    "nav.overview": "Tổng quan",
    "nav.map": "Bản đồ",
    "nav.devices": "Thiết bị",
    "nav.report": "Báo cáo",
    "nav.logout": "Đăng xuất",
    "conn.live": "Trực tiếp",
    "conn.connecting": "Đang kết nối…",
    "conn.offline": "Mất kết nối máy chủ",
    "state.online": "Trực tuyến",
    "state.offline": "Mất kết nối",
    "state.unknown": "Chưa rõ",
    "state.maintenance": "Bảo trì",
    "state.auth_failed": "Sai mật khẩu",
    "kind.camera": "Camera",
    "kind.speaker": "Loa",
    "kind.eboard": "Bảng điện tử",
    "kind.wifi": "Wi-Fi",
    "kind.gateway": "Bộ định tuyến",
    "kinds.camera": "Camera",
    "kinds.speaker": "Loa",
    "kinds.eboard": "Bảng điện tử",
    "kinds.wifi": "Điểm Wi-Fi",
    "kinds.gateway": "Bộ định tuyến",
    "ov.total": "Tổng thiết bị",
    "ov.villages": "Theo xóm / ấp",
    "ov.village": "Xóm / ấp",
    "ov.alerts": "Cảnh báo đang mở",
    "ov.no_alerts": "Không có cảnh báo nào đang mở",
    "ov.changes": "Thay đổi trong 1 giờ qua",
    "ov.no_changes": "Không có thay đổi nào trong 1 giờ qua",
    "ov.kind_summary": "{kind} hoạt động {ok}/{n} xóm",
    "ov.working": "Theo loại (đang hoạt động)",
    "alert.acked": "đã xác nhận",
    "alert.ack": "Xác nhận",
    "alert.affected": "{n} thiết bị phía sau",
    "sev.critical": "Nghiêm trọng",
    "sev.warning": "Cảnh báo",
    "sev.info": "Thông tin",
    "change.state": "{from} → {to}",
    "map.plan": "Sơ đồ theo tọa độ thiết bị (không cần Internet)",
    "map.no_coords": "{n} thiết bị chưa có tọa độ được xếp quanh xóm của chúng",
    "map.legend": "Chú giải",
    "list.search": "Tìm theo tên, mã, xóm…",
    "list.all_kinds": "Mọi loại",
    "list.all_states": "Mọi trạng thái",
    "list.all_villages": "Mọi xóm / ấp",
    "list.count": "{n} / {total} thiết bị",
    "list.csv": "Tải CSV",
    "col.state": "Trạng thái",
    "col.name": "Thiết bị",
    "col.kind": "Loại",
    "col.village": "Xóm / ấp",
    "col.last_seen": "Lần cuối nhận tin",
    "col.since": "Từ lúc",
    "col.reason": "Lý do",
    "col.metrics": "Số đo",
    "dev.back": "← Danh sách thiết bị",
    "dev.not_found": "Không tìm thấy thiết bị",
    "dev.history": "Lịch sử",
    "dev.state_band": "Tỷ lệ trực tuyến",
    "dev.events": "Sự kiện",
    "dev.no_events": "Không có sự kiện trong khoảng thời gian này",
    "dev.no_history": "Chưa có số liệu trong khoảng thời gian này",
    "dev.metrics": "Số đo gần nhất",
    "dev.links": "Luồng video / ảnh chụp",
    "dev.parent": "Phụ thuộc",
    "dev.period": "Khoảng thời gian",
    "period.6h": "6 giờ",
    "period.24h": "24 giờ",
    "period.7d": "7 ngày",
    "period.30d": "30 ngày",
    "ev.time": "Thời gian",
    "ev.type": "Loại sự kiện",
    "ev.severity": "Mức độ",
    "ev.message": "Nội dung",
    "rep.title": "Báo cáo mức độ sẵn sàng",
    "rep.from": "Từ ngày",
    "rep.to": "Đến ngày",
    "rep.group": "Nhóm theo",
    "rep.by_village": "Xóm / ấp",
    "rep.by_kind": "Loại thiết bị",
    "rep.by_device": "Thiết bị",
    "rep.run": "Xem báo cáo",
    "rep.csv": "Tải CSV",
    "rep.availability": "Sẵn sàng",
    "rep.devices": "Số thiết bị",
    "rep.online_now": "Đang trực tuyến",
    "rep.villages_ok": "Xóm hoạt động đủ",
    "rep.online_h": "Giờ trực tuyến",
    "rep.offline_h": "Giờ mất kết nối",
    "rep.maint_h": "Giờ bảo trì",
    "rep.error": "Không lấy được báo cáo: {msg}",
    "rep.empty": "Không có dữ liệu",
    "rep.now": "Hiện tại",
    "misc.never": "chưa bao giờ",
    "misc.ago_s": "{n} giây trước",
    "misc.ago_m": "{n} phút trước",
    "misc.ago_h": "{n} giờ trước",
    "misc.ago_d": "{n} ngày trước",
    "misc.loading": "Đang tải…",
    "misc.error": "Lỗi: {msg}",
    "misc.none": "—",
  },
  en: {
    "app.title": "Commune Operations Center",
    "login.subtitle": "Sign in to watch the commune's devices",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.failed": "Wrong username or password",
    "nav.overview": "Overview",
    "nav.map": "Map",
    "nav.devices": "Devices",
    "nav.report": "Report",
    "nav.logout": "Sign out",
    "conn.live": "Live",
    "conn.connecting": "Connecting…",
    "conn.offline": "Server unreachable",
    "state.online": "Online",
    "state.offline": "Offline",
    "state.unknown": "Unknown",
    "state.maintenance": "Maintenance",
    "state.auth_failed": "Auth failed",
    "kind.camera": "Camera",
    "kind.speaker": "Speaker",
    "kind.eboard": "E-board",
    "kind.wifi": "Wi-Fi",
    "kind.gateway": "Gateway",
    "kinds.camera": "Cameras",
    "kinds.speaker": "Speakers",
    "kinds.eboard": "E-boards",
    "kinds.wifi": "Wi-Fi points",
    "kinds.gateway": "Gateways",
    "ov.total": "Devices",
    "ov.villages": "By village",
    "ov.village": "Village",
    "ov.alerts": "Open alerts",
    "ov.no_alerts": "No open alerts",
    "ov.changes": "Changes in the last hour",
    "ov.no_changes": "Nothing changed in the last hour",
    "ov.kind_summary": "{kind} working in {ok}/{n} villages",
    "ov.working": "By kind (working now)",
    "alert.acked": "acknowledged",
    "alert.ack": "Acknowledge",
    "alert.affected": "{n} devices behind it",
    "sev.critical": "Critical",
    "sev.warning": "Warning",
    "sev.info": "Info",
    "change.state": "{from} → {to}",
    "map.plan": "Plan drawn from device coordinates (works offline)",
    "map.no_coords": "{n} devices without coordinates are placed around their village",
    "map.legend": "Legend",
    "list.search": "Search name, id, village…",
    "list.all_kinds": "All kinds",
    "list.all_states": "All states",
    "list.all_villages": "All villages",
    "list.count": "{n} / {total} devices",
    "list.csv": "Download CSV",
    "col.state": "State",
    "col.name": "Device",
    "col.kind": "Kind",
    "col.village": "Village",
    "col.last_seen": "Last heard",
    "col.since": "Since",
    "col.reason": "Reason",
    "col.metrics": "Metrics",
    "dev.back": "← Device list",
    "dev.not_found": "No such device",
    "dev.history": "History",
    "dev.state_band": "Online share",
    "dev.events": "Events",
    "dev.no_events": "No events in this period",
    "dev.no_history": "No data in this period yet",
    "dev.metrics": "Latest metrics",
    "dev.links": "Streams / snapshots",
    "dev.parent": "Depends on",
    "dev.period": "Period",
    "period.6h": "6 hours",
    "period.24h": "24 hours",
    "period.7d": "7 days",
    "period.30d": "30 days",
    "ev.time": "Time",
    "ev.type": "Event",
    "ev.severity": "Severity",
    "ev.message": "Message",
    "rep.title": "Availability report",
    "rep.from": "From",
    "rep.to": "To",
    "rep.group": "Group by",
    "rep.by_village": "Village",
    "rep.by_kind": "Device kind",
    "rep.by_device": "Device",
    "rep.run": "Show report",
    "rep.csv": "Download CSV",
    "rep.availability": "Availability",
    "rep.devices": "Devices",
    "rep.online_now": "Online now",
    "rep.villages_ok": "Villages fully working",
    "rep.online_h": "Hours online",
    "rep.offline_h": "Hours offline",
    "rep.maint_h": "Hours in maintenance",
    "rep.error": "Could not get the report: {msg}",
    "rep.empty": "No data",
    "rep.now": "Now",
    "misc.never": "never",
    "misc.ago_s": "{n} s ago",
    "misc.ago_m": "{n} min ago",
    "misc.ago_h": "{n} h ago",
    "misc.ago_d": "{n} d ago",
    "misc.loading": "Loading…",
    "misc.error": "Error: {msg}",
    "misc.none": "—",
  },
};

export const STATES = ["online", "offline", "unknown", "maintenance", "auth_failed"];
export const KINDS = ["camera", "speaker", "eboard", "wifi", "gateway"];

let lang = "vi";
let tz = "Asia/Ho_Chi_Minh";
const listeners = new Set();
let fmtCache = {};

export function init(config) {
  tz = config.tz || tz;
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

export function t(key, vars) {
  let s = DICT[lang][key] ?? DICT.vi[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, v);
  return s;
}

export function applyI18n(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

function formatter(kind) {
  if (!fmtCache[kind]) {
    const locale = lang === "vi" ? "vi-VN" : "en-GB";
    const opts = {
      full: { dateStyle: "short", timeStyle: "medium" },
      time: { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false },
      short: { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false },
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

// The calendar date (YYYY-MM-DD) of an instant in the deployment's time zone.
export function localDate(d) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(d);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

// The instant a local calendar date starts at in the deployment's time zone.
export function startOfLocalDate(ymd) {
  const guess = new Date(`${ymd}T00:00:00Z`);
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: tz, hour12: false, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(guess);
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  const asLocal = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour") % 24, get("minute"), get("second"));
  return new Date(guess.getTime() - (asLocal - guess.getTime()));
}
