// What the broadcast pages share: who may send and approve, the priorities of Thông tư 39/2020/TT-BTTTT,
// the risk levels of Quyết định 18/2021/QĐ-TTg with their colours, and the states and reasons of
// broadcasts, deliveries and villages in the page's words.

import { esc } from "../dom.js";
import { t } from "../i18n.js";
import { communeName, store, villageName } from "../live.js";

// As in the API (gateway/routes/broadcasts.py, SPEC §9): operators and admins upload and send; only
// admins approve; viewers and technicians read.
export const SEND_ROLES = ["admin", "operator"];
export const PRIORITIES = ["normal", "priority", "emergency"];
export const MAX_MEDIA_BYTES = 50_000_000; // SPEC §9: 50 MB, as services/media.py
// Broadcasts whose deliveries still move: their page asks the server again every few seconds.
export const OPEN_STATES = ["awaiting_approval", "scheduled", "active"];

// Quyết định 18/2021/QĐ-TTg, Điều 4 khoản 3 (and its Phụ lục XII): each risk level has its colour
// on every map and bulletin — cấp 1 xanh dương nhạt (rủi ro thấp), cấp 2 vàng nhạt (trung bình),
// cấp 3 da cam (lớn), cấp 4 đỏ (rất lớn), cấp 5 tím (thảm họa). The decision names the colours; these
// are our shades of them, with the text colour that reads on each.
export const RISK_COLORS = {
  1: { bg: "#8ecdf5", ink: "#0c3b5e" },
  2: { bg: "#fde68a", ink: "#5b3a06" },
  3: { bg: "#f7913d", ink: "#3b1203" },
  4: { bg: "#dc2626", ink: "#ffffff" },
  5: { bg: "#7e22ce", ink: "#ffffff" },
};

export function canSend(session) {
  return Boolean(session.user && SEND_ROLES.includes(session.user.role));
}

// The broadcast a `broadcast_not_reached` alert is about (details.broadcast), or null: the alerts
// page, the overview and the CSV name it, as the notification links to it.
export function alertBroadcast(a) {
  const id = a.rule === "broadcast_not_reached" && a.details ? a.details.broadcast : null;
  return Number.isInteger(id) ? id : null;
}

export function isAdmin(session) {
  return Boolean(session.user && session.user.role === "admin");
}

export function priorityBadge(p) {
  return `<span class="bc-prio" data-priority="${esc(p)}">${esc(t(`bc.prio_${p}`))}</span>`;
}

export function riskBadge(level) {
  if (!level) return "";
  const c = RISK_COLORS[level];
  return `<span class="bc-risk" data-risk="${level}" style="background:${c.bg};color:${c.ink}">${esc(t("bc.risk_n", { n: level }))}` +
    ` · ${esc(t(`bc.risk_${level}`))}</span>`;
}

export function stateBadge(state) {
  return `<span class="bc-state" data-bc-state="${esc(state)}">${esc(t(`bc.state_${state}`))}</span>`;
}

export function deliveryPill(state) {
  return `<span class="bc-dstate" data-dstate="${esc(state)}">${esc(t(`bc.d_${state}`))}</span>`;
}

// A village of a target ("commune/village") as people call it, with the commune when there are several.
export function villageLabel(key) {
  const [commune, village] = key.includes("/") ? key.split("/") : [null, key];
  const c = commune || [...store.villages.values()].find((v) => v.id === village)?.commune;
  const name = villageName(c, village);
  return store.communes.size > 1 && c ? `${name} (${communeName(c)})` : name;
}

// Why a village was not reached (services/broadcasts/model.py why_not), in words.
export function coverageReason(reason, broadcastState) {
  if (!reason) return "";
  if (reason === "not_started" && broadcastState === "awaiting_approval") return t("bc.why_awaiting");
  const key = `bc.why_${reason}`;
  const s = t(key);
  return s === key ? reason : s;
}

// A delivery's reason: the worker's words (services/broadcasts/delivery.py) in the page's
// language; what a device itself said is shown as its words.
const DELIVERY_REASONS = [
  [/^offline$/, "bc.dr_offline"],
  [/^never sent: the device was offline$/, "bc.dr_never_sent"],
  [/^no result from the device before expiry$/, "bc.dr_no_result"],
  [/^no result from the device before expiry: it is under maintenance$/, "bc.dr_no_result_maint"],
  [/^waiting: the device plays broadcast (\d+)/, "bc.dr_waiting"],
  [/^preempted by broadcast (\d+)/, "bc.dr_preempted"],
  [/^cancelled by (.+)$/, "bc.dr_cancelled_by"],
  [/^busy: playing broadcast (\S+)/, "bc.dr_busy"],
  [/^fetch error/, "bc.dr_fetch"],
  [/^amplifier fault$/, "bc.dr_amplifier"],
];

export function deliveryReason(reason) {
  if (!reason) return "";
  for (const [re, key] of DELIVERY_REASONS) {
    const m = reason.match(re);
    if (m) return t(key, { n: m[1] ?? "", who: m[1] ?? "" });
  }
  return t("bc.dr_device_said", { msg: reason });
}

// What the server refused, in the page's words where the page knows the refusal.
const REFUSALS = [
  [/unknown media_id/, "bc.err_media_gone"],
  [/give media_id \(audio\) or text/, "bc.err_no_content"],
  [/targets: name at least one/, "bc.err_no_villages"],
  [/targets: unknown/, "bc.err_unknown_targets"],
  [/no access to commune/, "bc.err_commune_access"],
  [/expires_at must be after starts_at/, "bc.err_expiry_before_start"],
  [/expired already/, "bc.err_expired"],
  [/rrule/i, "mt.err_rrule"],
  [/only an admin approves/, "bc.err_admin_only"],
  [/only the broadcast's creator or an admin/, "bc.err_creator_only"],
  [/is cancelled already|is finished already/, "bc.err_over"],
  [/not awaiting_approval/, "bc.err_not_awaiting"],
];

export function refusalText(err) {
  for (const [re, key] of REFUSALS) if (re.test(err.said ?? err.message ?? "")) return t(key);
  if (err.status === 403) return t("bc.err_forbidden");
  if (err.status === 401) return t("bc.err_signed_out");
  return err.message; // an ApiError's message is the sentence for its code (error.<code>)
}
