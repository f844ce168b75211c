// The page's model of the commune, kept current by /ws/live.
// Messages are applied in batches once per animation frame, and views are told what changed,
// so thousands of updates a second cost one render per frame, never one per message.

import { api } from "./api.js";
import { setCommuneWords } from "./i18n.js";

const MAX_CHANGES = 500;
const MAX_EVENTS = 200;
const HOUR_MS = 3600 * 1000;

export const store = {
  devices: new Map(), // device_id -> status row (+ name, lat, lon, parent, attrs)
  communes: new Map(), // id -> {id, name, district, province}
  villages: new Map(), // "commune/id" -> {commune, id, name}
  alerts: new Map(), // id -> alert row
  changes: [], // newest first: {at, device_id, state, prev_state, reason, ...}
  events: [], // newest first: event messages
  seq: null,
  loaded: false,
};

const subscribers = new Set();
let statusListener = () => {};
let ws = null;
let stopped = true;
let retries = 0;
let retryTimer = null;
let pending = [];
let scheduled = false;
let fresh = false;

export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export function onConnection(fn) {
  statusListener = fn;
}

export function communeName(id) {
  return (store.communes.get(id) || {}).name || id;
}

export function villageName(commune, village) {
  if (!village) return "";
  const v = store.villages.get(`${commune}/${village}`);
  return v ? v.name : village;
}

// The commune a village belonged to before the 2025 reform (its name), or null.
export function formerCommune(commune, village) {
  if (!village) return null;
  const v = store.villages.get(`${commune}/${village}`);
  return (v && v.former_commune) || null;
}

export function deviceName(id) {
  const d = store.devices.get(id);
  return (d && d.name) || id;
}

export function start() {
  stopped = false;
  connect();
}

export function stop() {
  stopped = true;
  clearTimeout(retryTimer);
  if (ws) ws.close(1000);
  ws = null;
  store.seq = null;
  store.loaded = false;
}

function connect() {
  if (stopped) return;
  // batch=1: after the snapshot each frame is an array of messages (fewer frames under load).
  const since = !fresh && store.seq !== null ? `&since=${store.seq}` : "";
  fresh = false;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const sock = new WebSocket(`${proto}://${location.host}/ws/live?batch=1${since}`);
  ws = sock;
  let opened = false;
  statusListener("connecting");
  sock.onopen = () => {
    opened = true;
    retries = 0;
    statusListener("live");
  };
  sock.onmessage = (e) => {
    if (sock !== ws) return;
    const data = JSON.parse(e.data);
    if (Array.isArray(data)) for (const m of data) pending.push(m);
    else pending.push(data);
    schedule();
  };
  sock.onclose = async () => {
    if (sock !== ws || stopped) return;
    ws = null;
    statusListener("offline");
    if (!opened) {
      // A refused handshake is most often an expired session: ask, and sign in again if so.
      try {
        await api("/api/v1/auth/me");
      } catch (err) {
        if (err.status === 401) return;
      }
    }
    const delay = Math.min(10000, 500 * 2 ** retries) * (0.5 + Math.random());
    retries += 1;
    retryTimer = setTimeout(connect, delay);
  };
}

function reconnectFresh() {
  fresh = true;
  if (ws) {
    const old = ws;
    ws = null;
    old.close(1000);
  }
  connect();
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  // Hidden tabs get no animation frames; apply on a timer there so memory stays bounded.
  if (document.hidden) setTimeout(flush, 500);
  else requestAnimationFrame(flush);
}

function flush() {
  scheduled = false;
  const batch = pending;
  pending = [];
  // maintenance: the window messages of this batch, in order (the maintenance view applies them).
  const delta = { full: false, devices: new Set(), alerts: false, changes: false, maintenance: [] };
  let registry = false;
  for (const m of batch) {
    if (m.type === "snapshot") {
      applySnapshot(m);
      delta.full = true;
      continue;
    }
    if (store.seq !== null && m.seq <= store.seq) continue;
    store.seq = m.seq;
    if (m.type === "status") applyStatus(m, delta);
    else if (m.type === "event") {
      store.events.unshift(m);
      if (store.events.length > MAX_EVENTS) store.events.length = MAX_EVENTS;
      delta.changes = true;
    } else if (m.type === "alert") {
      if (m.state === "resolved") store.alerts.delete(m.id);
      else store.alerts.set(m.id, m);
      delta.alerts = true;
    } else if (m.type === "maintenance") delta.maintenance.push(m);
    else if (m.type === "registry") registry = true;
  }
  if (delta.full || delta.devices.size || delta.alerts || delta.changes || delta.maintenance.length) {
    for (const fn of subscribers) fn(delta);
  }
  // Devices were added, moved or retired: start again from a snapshot.
  if (registry) reconnectFresh();
}

function applySnapshot(m) {
  store.seq = m.seq;
  store.devices = new Map(m.devices.map((d) => [d.device_id, d]));
  store.communes = new Map((m.communes || []).map((c) => [c.id, c]));
  setCommuneWords(new Map([...store.communes.values()].map((c) => [c.id, c.village_term || null])));
  store.villages = new Map((m.villages || []).map((v) => [`${v.commune}/${v.id}`, v]));
  store.alerts = new Map((m.alerts || []).map((a) => [a.id, a]));
  store.changes = (m.changes || []).map((c) => ({ ...c, type: "change" }));
  store.events = m.events || [];
  store.loaded = true;
}

function applyStatus(m, delta) {
  let d = store.devices.get(m.device_id);
  if (!d) {
    d = { device_id: m.device_id, name: null, lat: null, lon: null, parent: null, attrs: {} };
    store.devices.set(m.device_id, d);
    delta.full = true;
  }
  const prev = d.state;
  for (const key of ["commune", "village", "kind", "state", "since", "last_seen", "reason", "metrics"]) {
    if (key in m) d[key] = m[key];
  }
  if (prev !== d.state) {
    store.changes.unshift({
      type: "change", seq: m.seq, device_id: m.device_id, commune: m.commune, village: m.village, kind: m.kind,
      state: m.state, prev_state: prev, at: m.since || new Date().toISOString(), reason: m.reason,
    });
    if (store.changes.length > MAX_CHANGES) store.changes.length = MAX_CHANGES;
    delta.changes = true;
  }
  delta.devices.add(m.device_id);
}

// State changes and events of the last hour, newest first. Each time is parsed once (kept on the
// item) and only the items returned are copied: the overview asks on every update.
export function recentActivity(limit = 60, now = Date.now()) {
  const since = now - HOUR_MS;
  const items = [];
  for (const c of store.changes) if ((c._t ??= Date.parse(c.at)) >= since) items.push(c);
  for (const e of store.events) if ((e._t ??= Date.parse(e.ts)) >= since) items.push(e);
  items.sort((a, b) => b._t - a._t);
  return items.slice(0, limit).map((c) =>
    c.type === "change" ? { ...c, time: c.at } : { ...c, type: "event", time: c.ts });
}
