// The question before a broadcast goes: every village named, their count, how many speakers and
// e-boards, the text channels it also goes to, when, and whether it waits for approval. An emergency's confirm button is disarmed for a
// moment (to read the list) and sits on the other side from the send button; Enter never presses it.

import { api } from "../api.js";
import { esc } from "../dom.js";
import { t } from "../i18n.js";
import { priorityBadge, refusalText, riskBadge } from "./broadcast_words.js";
import { showLocal } from "./schedule_fields.js";

// Long enough to read the list, not to delay a warning.
const ARM_MS = 2500;
let armTimer = 0;

// Listeners of the <dialog> once: `onSent(broadcast)` after the server made it, `onRefused(text)`.
export function wireConfirm(dlg, { onSent, onRefused }) {
  // Enter never sends: a warning to every village must be a deliberate press, not a reflex.
  dlg.addEventListener("keydown", (e) => {
    if (e.key === "Enter") e.preventDefault();
  });
  dlg.addEventListener("close", () => clearTimeout(armTimer));
  dlg.addEventListener("click", async (e) => {
    if (e.target.closest("#bc-confirm-no")) {
      dlg.close();
      return;
    }
    const yes = e.target.closest("#bc-confirm-yes");
    if (!yes || yes.disabled) return;
    yes.disabled = true;
    yes.textContent = t("misc.sending");
    try {
      const b = await api("/api/v1/broadcasts", { method: "POST", body: dlg._body });
      if (!dlg.isConnected) return; // the view was left meanwhile
      dlg.close();
      onSent(b);
    } catch (err) {
      if (!dlg.isConnected) return;
      dlg.close();
      onRefused(refusalText(err));
    }
  });
}

// Ask about `body` (the POST /api/v1/broadcasts body): `names` of its villages, sorted; `speakers`
// and `eboards` it reaches; `start` (null: now); `waits` when it will await an admin's approval.
export function askConfirm(dlg, { body, names, speakers, eboards, start, waits }) {
  const urgent = body.priority === "emergency";
  dlg.dataset.priority = body.priority;
  dlg.innerHTML = `<form method="dialog" class="bc-dialog-body">
    <h2 id="bc-confirm-title">${esc(t(urgent ? "bc.confirm_emergency" : "bc.confirm_send", { n: names.length }))}</h2>
    <p class="bc-confirm-what"><strong>${esc(body.title)}</strong> ${priorityBadge(body.priority)} ${riskBadge(body.risk_level)}</p>
    <p class="bc-confirm-count" id="bc-confirm-count">${esc(t("bc.confirm_count", { n: names.length, speakers, eboards }))}</p>
    <ul class="bc-confirm-villages" id="bc-confirm-villages">${names.map((v) => `<li>${esc(v)}</li>`).join("")}</ul>
    <p class="muted">${esc(start ? t("bc.confirm_at", { at: showLocal(start) }) : t("bc.confirm_now"))}` +
      `${body.media_id ? "" : ` ${esc(t("bc.confirm_text_only"))}`}</p>
    ${body.channels && body.channels.length ? `<p class="bc-confirm-channels" id="bc-confirm-channels">${esc(t("bc.confirm_channels", { list: body.channels.join(", ") }))}</p>` : ""}
    ${waits ? `<p class="notice">${esc(t("bc.confirm_waits"))}</p>` : ""}
    <div class="bc-dialog-actions">
      <button type="button" class="primary${urgent ? " danger" : ""}" id="bc-confirm-yes"${urgent ? " disabled data-arming" : ""}>${esc(t(urgent ? "bc.confirm_yes_emergency" : "bc.confirm_yes"))}</button>
      <button type="button" class="chip" id="bc-confirm-no">${esc(t("bc.confirm_back"))}</button>
    </div></form>`;
  dlg._body = body;
  dlg.showModal();
  dlg.querySelector("#bc-confirm-no").focus();
  clearTimeout(armTimer);
  if (urgent) {
    const yes = dlg.querySelector("#bc-confirm-yes");
    armTimer = setTimeout(() => {
      yes.disabled = false;
      delete yes.dataset.arming;
    }, ARM_MS);
  }
}
