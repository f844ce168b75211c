// When something happens, as a clerk types and reads it, shared by the maintenance form and the
// broadcast form: times as dd/MM/yyyy HH:mm on the deployment's clock (IOC_TZ) whatever zone or
// locale the browser has, and the repeat chosen in words (daily, weekly on chosen days, monthly on
// the same day), the RFC 5545 rule itself only under "advanced"; repeats shown back in words.

import { esc } from "../dom.js";
import { fromLocalInput, readDay, showDay, t, toLocalInput } from "../i18n.js";

const DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
const CHOICES = ["", "daily", "weekly", "monthly", "custom"];

// dd/MM/yyyy HH:mm on the deployment's clock, both ways (the browser's own date inputs follow its
// locale: a US browser showed «12/02/2026, 05:00 AM»).
export function showLocal(d) {
  const [date, time] = toLocalInput(d).split("T");
  return `${showDay(date)} ${time}`;
}

export function readLocal(text) {
  const m = String(text).trim().match(/^(\S+)[ ,]+(\d{1,2}):(\d{2})$/);
  const day = m && readDay(m[1]);
  if (!day || +m[2] > 23 || +m[3] > 59) return null;
  return fromLocalInput(`${day}T${m[2].padStart(2, "0")}:${m[3]}`);
}

// The repeat's fields (select `repeat`, checkboxes `byday`, text `rrule`) for a form; `helpId` is
// the id of the hint under them (ids are unique in the page).
export function repeatFieldsHtml(helpId) {
  return `<label><span>${esc(t("mt.repeat"))}</span><select name="repeat">${CHOICES.map((r) =>
    `<option value="${r}">${esc(t(`mt.repeat_${r || "none"}`))}</option>`).join("")}</select></label>
    <fieldset class="days" data-repeat="weekly" hidden><legend>${esc(t("mt.repeat_on"))}</legend>
      ${DAYS.map((d) => `<label class="check"><input type="checkbox" name="byday" value="${d}"> ${esc(t(`day.${d}`))}</label>`).join("")}</fieldset>
    <div data-repeat="custom" hidden>
      <label><span>${esc(t("mt.rrule"))}</span><input name="rrule" maxlength="500" spellcheck="false" placeholder="${esc(t("mt.rrule_ph"))}" aria-describedby="${esc(helpId)}"></label></div>
    <p class="hint" id="${esc(helpId)}">${esc(t("mt.rrule_help"))}</p>`;
}

// Show the fields of the repeat chosen (call on the form's change events).
export function showRepeat(form) {
  for (const el of form.querySelectorAll("[data-repeat]")) el.hidden = el.dataset.repeat !== form.repeat.value;
}

// The repeat chosen in words, as RFC 5545 (null: once).
export function readRepeat(form, starts) {
  const r = form.repeat.value;
  if (r === "daily") return "FREQ=DAILY";
  if (r === "weekly") {
    const days = [...form.querySelectorAll("input[name=byday]:checked")].map((c) => c.value);
    return `FREQ=WEEKLY${days.length ? `;BYDAY=${days.join(",")}` : ""}`;
  }
  if (r === "monthly") return `FREQ=MONTHLY${starts ? `;BYMONTHDAY=${Number(toLocalInput(starts).slice(8, 10))}` : ""}`;
  if (r === "custom") return form.rrule.value.trim() || null;
  return null;
}

export function resetRepeat(form) {
  form.rrule.value = "";
  form.repeat.value = "";
  for (const c of form.querySelectorAll("input[name=byday]")) c.checked = false;
  showRepeat(form);
}

// A rule in words ("hằng tuần: Thứ Hai, Thứ Năm"), and whether the words say all of it (no
// interval, count, end date…); null for a rule the words cannot say.
export function repeatParts(rrule) {
  const parts = Object.fromEntries(rrule.toUpperCase().split(";").map((p) => p.split("=")));
  const word = parts.FREQ ? t(`freq.${parts.FREQ}`) : "";
  if (!word || word.startsWith("freq.")) return null;
  const days = parts.BYDAY && /^(MO|TU|WE|TH|FR|SA|SU)(,(MO|TU|WE|TH|FR|SA|SU))*$/.test(parts.BYDAY)
    ? parts.BYDAY.split(",").map((d) => t(`day.${d}`)).join(", ") : null;
  const plain = Object.keys(parts).every((k) => k === "FREQ" || (k === "BYDAY" && days) || k === "BYMONTHDAY");
  return { words: days ? `${word}: ${days}` : word, plain };
}

export function repeatWords(rrule) {
  if (!rrule) return t("mt.once");
  const r = repeatParts(rrule);
  return r ? r.words : rrule;
}

// The repeat for a table cell: words, the rule itself only when it says more than the words can
// (and always as the tooltip).
export function repeatCellHtml(rrule) {
  if (!rrule) return esc(t("mt.once"));
  const r = repeatParts(rrule);
  if (!r) return `<code>${esc(rrule)}</code>`;
  return `<span title="${esc(rrule)}">${esc(r.words)}</span>` + (r.plain ? "" : ` <code>${esc(rrule)}</code>`);
}
