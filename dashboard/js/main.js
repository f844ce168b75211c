// Start-up, sign-in, top bar and the hash router that swaps views.

import { api, setUnauthorizedHandler } from "./api.js";
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import * as live from "./live.js";
import * as overview from "./views/overview.js";
import * as mapView from "./views/map.js";
import * as devices from "./views/devices.js";
import * as device from "./views/device.js";
import * as report from "./views/report.js";
import * as alerts from "./views/alerts.js";
import * as maintenance from "./views/maintenance.js";
import * as broadcasts from "./views/broadcasts.js";
import * as upstreams from "./views/upstreams.js";

const $ = (sel) => document.querySelector(sel);
const ROUTES = [
  [/^#?\/?$/, "overview", overview],
  [/^#\/map$/, "map", mapView],
  [/^#\/devices$/, "devices", devices],
  // `#/devices/{id}` too: the link notifications carried before it was corrected.
  [/^#\/devices?\/([^/]+)$/, "devices", device],
  [/^#\/report$/, "report", report],
  [/^#\/alerts$/, "alerts", alerts],
  [/^#\/maintenance(?:\/device\/([^/]+))?$/, "maintenance", maintenance],
  // `#/broadcasts`, `#/broadcasts/new`, `#/broadcasts/emergency`, `#/broadcasts/{id}`.
  [/^#\/broadcasts(?:\/([^/]+))?$/, "broadcasts", broadcasts],
  [/^#\/upstreams$/, "upstreams", upstreams],
];

export const session = { user: null, config: {} };
let current = null;
let connState = "connecting";
let staleSince = null; // when the live feed was lost; null while it is live

async function boot() {
  session.config = await fetch("/ui/config.json").then((r) => r.json()).catch(() => ({}));
  i18n.init(session.config);
  i18n.applyI18n(document);
  setUnauthorizedHandler(showLogin);
  for (const b of document.querySelectorAll("[data-lang]")) b.addEventListener("click", () => i18n.setLang(b.dataset.lang));
  $("#lang-switch").addEventListener("click", () => i18n.setLang(i18n.getLang() === "vi" ? "en" : "vi"));
  $("#login").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  i18n.onLang(() => {
    renderTopbar();
    route(true);
  });
  live.onConnection((state) => {
    // The numbers on the page were current until the feed was lost: say so, and since when.
    if (connState === "live" && state !== "live") staleSince = new Date();
    if (state === "live") staleSince = null;
    connState = state;
    renderConn();
  });
  live.subscribe((delta) => {
    renderCommune();
    if (delta.full || delta.alerts) renderAlertBadge();
    if (current && current.view.update) current.view.update(delta);
  });
  window.addEventListener("hashchange", () => route());
  setInterval(tick, 1000);
  try {
    session.user = await api("/api/v1/auth/me");
    showApp();
  } catch {
    showLogin();
  }
}

function showLogin() {
  live.stop();
  unmount();
  session.user = null;
  $("#app").hidden = true;
  $("#login-view").hidden = false;
  document.body.dataset.signedIn = "false";
  $("#login input[name=username]").focus();
}

function showApp() {
  $("#login-view").hidden = true;
  $("#app").hidden = false;
  document.body.dataset.signedIn = "true";
  renderTopbar();
  live.start();
  route(true);
}

// What the server said, in the page's words: a locked account or a sign-in limit is not a wrong password.
function loginRefusal(ex) {
  if (ex.code === "locked_out" || ex.status === 429) return t("login.locked");
  if (ex.status === 401) return t("login.failed");
  return t("misc.error", { msg: ex.message });
}

async function login(e) {
  e.preventDefault();
  const form = e.target;
  const err = $("#login-error");
  err.hidden = true;
  form.querySelector("button[type=submit]").disabled = true;
  try {
    await api("/api/v1/auth/login", {
      method: "POST",
      body: { username: form.username.value.trim(), password: form.password.value },
    });
    session.user = await api("/api/v1/auth/me");
    form.password.value = "";
    showApp();
  } catch (ex) {
    err.textContent = loginRefusal(ex);
    err.hidden = false;
  } finally {
    form.querySelector("button[type=submit]").disabled = false;
  }
}

async function logout() {
  try {
    await api("/api/v1/auth/logout", { method: "POST" });
  } catch {
    // Signed out either way.
  }
  showLogin();
}

function renderTopbar() {
  $("#lang-switch").textContent = t("lang.switch");
  $("#lang-switch").dataset.lang = i18n.getLang() === "vi" ? "en" : "vi";
  if (session.user) $("#user").textContent = `${session.user.username} · ${t(`role.${session.user.role}`)}`;
  $("#nav-upstreams").hidden = !session.user || session.user.role !== "admin";
  renderConn();
  renderCommune();
  renderAlertBadge();
}

// Open (not yet acknowledged) alerts on the nav tab, visible from every view.
function renderAlertBadge() {
  const n = [...live.store.alerts.values()].filter((a) => a.state === "open").length;
  const el = $("#nav-alerts-n");
  el.textContent = String(n);
  el.dataset.n = n;
  el.hidden = n === 0;
}

function renderConn() {
  const el = $("#conn");
  el.dataset.state = connState;
  el.querySelector(".conn-label").textContent = t(`conn.${connState}`);
  const banner = $("#stale");
  banner.hidden = !staleSince;
  $("#view").classList.toggle("stale", Boolean(staleSince));
  if (staleSince) banner.textContent = t("conn.stale", { at: i18n.fmtTime(staleSince, "long") });
}

function renderCommune() {
  const names = [...live.store.communes.values()].map((c) => c.name).join(" · ");
  // Called on every live update: touch the DOM only when the names changed.
  if ($("#commune-name").textContent !== names) $("#commune-name").textContent = names;
}

function tick() {
  if (!session.user) return;
  $("#clock").textContent = i18n.fmtTime(new Date(), "time");
  if (current && current.view.tick && Date.now() % 10000 < 1000) current.view.tick();
}

function unmount() {
  if (current && current.view.unmount) current.view.unmount();
  current = null;
  $("#view").replaceChildren();
}

function route(force = false) {
  if (!session.user) return;
  const hash = location.hash || "#/";
  for (const [re, nav, view] of ROUTES) {
    const m = hash.match(re);
    if (!m) continue;
    if (!force && current && current.hash === hash) return;
    unmount();
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.classList.toggle("active", a.dataset.nav === nav);
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    // On a phone the tabs scroll sideways: keep the current one in view.
    const tab = document.querySelector(`[data-nav="${nav}"]`);
    if (tab) tab.scrollIntoView({ block: "nearest", inline: "nearest" });
    const el = $("#view");
    el.dataset.view = view === device ? "device" : nav;
    current = { hash, view };
    // An optional group that did not match stays undefined (not the text "undefined").
    view.mount(el, m.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p))), session);
    return;
  }
  location.hash = "#/";
}

boot();
