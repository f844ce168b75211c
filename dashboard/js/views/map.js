// The commune map: every device a dot coloured by its state, one commune at a time (a selector when
// the deployment has several), fitted to it so that an outage shows at the first view.
// Background: the commune's own tiles (an MBTiles file served by the gateway) and village boundaries
// (GeoJSON) when installed, online tiles only when a setting names them, otherwise a plan drawn from
// device coordinates (no internet needed); with no coordinates at all, one block per village.

import { collate, esc, STATE_COLORS, throttle } from "../dom.js";
import { STATES, t, tIn } from "../i18n.js";
import { deviceName, store, villageName } from "../live.js";

const L = window.L;
// Beyond this many changed markers in a frame, one repaint of the area around all of them.
const MAX_SPOTS = 300;

// Leaflet's canvas repaints, once a frame, the one rectangle around every marker that changed in
// it. State changes land all over the commune, so that rectangle was most of the map and each
// frame repainted thousands of markers (long tasks of 100-300 ms on the main thread with 5,000
// devices under load). This renderer clears and repaints only each changed marker's own small
// area, in one pass over the markers a frame. It replaces Leaflet 1.9.4's private
// _requestRedraw/_extendRedrawBounds (vendored, pinned) and draws the way its _redraw does.
const SpotCanvas = L.Canvas.extend({
  _requestRedraw(layer) {
    if (!this._map) return;
    this._extendRedrawBounds(layer);
    this._redrawRequest = this._redrawRequest || L.Util.requestAnimFrame(this._redrawSpots, this);
  },
  _extendRedrawBounds(layer) {
    if (!layer._pxBounds) return;
    const pad = (layer.options.weight || 0) + 1;
    const spot = L.bounds(layer._pxBounds.min.subtract([pad, pad]), layer._pxBounds.max.add([pad, pad]));
    const spots = (this._spots ||= []);
    // A recoloured marker asks three times (style, old size, new size): keep the largest area.
    const prev = spots[spots.length - 1];
    if (prev && prev.contains(spot)) return;
    if (prev && spot.contains(prev)) spots[spots.length - 1] = spot;
    else spots.push(spot);
  },
  _redrawSpots() {
    const spots = this._spots || [];
    this._spots = [];
    const area = spots.length ? spots.reduce((all, b) => all.extend(b.min).extend(b.max), L.bounds(spots[0].min, spots[0].max)) : null;
    if (!area || spots.length > MAX_SPOTS) {
      // No area known means everything, as in Leaflet's own renderer.
      this._redrawBounds = area;
      this._redraw();
      return;
    }
    this._redrawRequest = null;
    const ctx = this._ctx;
    ctx.save();
    ctx.beginPath();
    for (const b of spots) {
      b.min._floor();
      b.max._ceil();
      const size = b.getSize();
      ctx.clearRect(b.min.x, b.min.y, size.x, size.y);
      ctx.rect(b.min.x, b.min.y, size.x, size.y);
    }
    ctx.clip();
    this._drawing = true;
    for (let n = this._drawFirst; n; n = n.next) {
      const pb = n.layer._pxBounds;
      if (pb && pb.intersects(area) && spots.some((b) => pb.intersects(b))) n.layer._updatePath();
    }
    this._drawing = false;
    ctx.restore();
  },
});
let map = null;
let markers = new Map();
let root = null;
let tileUrl = null;
let config = {};
let commune = null; // the commune shown; "" = all of them (kept across visits)
let boundaries = null; // the GeoJSON, fetched once
// Markers whose device changed state since the last recolour. In a storm of changes the map is
// recoloured at most every RECOLOUR_MS (a single change at once): each recolour is a repaint and a
// copy of the whole canvas to the screen, which every frame cost most of the main thread.
const RECOLOUR_MS = 250;
let dirty = new Set();
let recolourer = null;

export function mount(el, _params, session) {
  config = session.config || {};
  tileUrl = config.map_tile_url || null;
  root = document.createElement("section");
  root.className = "mapview";
  root.innerHTML = `<div id="map" class="${tileUrl ? "tiles" : "plan"}"></div>
    <label class="map-commune card" hidden>${esc(t("map.commune"))} <select id="map-commune"></select></label>
    <div class="map-legend card" id="map-legend"></div><div class="map-note" id="map-note"></div>`;
  el.append(root);
  root.querySelector("#map-commune").addEventListener("change", (e) => {
    commune = e.target.value;
    build();
  });
  if (config.map_boundaries && !boundaries) {
    fetch("/ui/boundaries.geojson").then((r) => (r.ok ? r.json() : null)).then((doc) => {
      boundaries = doc;
      if (root && doc) build();
    }).catch(() => {});
  }
  dirty = new Set();
  recolourer = throttle(recolour, RECOLOUR_MS);
  build();
}

export function unmount() {
  recolourer.cancel();
  if (map) map.remove();
  map = null;
  markers = new Map();
  root = null;
}

export function update(delta) {
  if (!root) return;
  if (delta.full || !map) {
    build();
    return;
  }
  // Most updates are statuses of a device whose state did not change: nothing to redraw.
  for (const id of delta.devices) {
    const m = markers.get(id);
    const d = store.devices.get(id);
    if (m && d && m._state !== d.state) dirty.add(id);
  }
  if (dirty.size) recolourer.request();
}

function recolour() {
  if (!map) return;
  for (const id of dirty) {
    const m = markers.get(id);
    const d = store.devices.get(id);
    if (m && d && m._state !== d.state) {
      m._state = d.state;
      m.setStyle(style(d.state));
    }
  }
  dirty.clear();
  renderLegend();
}

// What is wrong is drawn larger and ringed, so that it shows at the commune's zoom.
function style(state) {
  const color = STATE_COLORS[state] || STATE_COLORS.unknown;
  const bad = state === "offline" || state === "auth_failed";
  return { color: bad ? "#7f1d1d" : "#0f172a", weight: bad ? 3 : 1, fillColor: color, fillOpacity: 0.95,
    radius: state === "online" ? 6 : bad ? 10 : 8 };
}

// The first view opens on the commune with the most devices in trouble (offline, refusing our
// credentials), so an outage is on screen at once; the first by name when none or a tie.
const TROUBLE = new Set(["offline", "auth_failed"]);
function mostInTrouble(communes) {
  const down = new Map();
  for (const d of store.devices.values()) {
    if (TROUBLE.has(d.state)) down.set(d.commune, (down.get(d.commune) || 0) + 1);
  }
  return communes.reduce((best, c) => ((down.get(c.id) || 0) > (down.get(best.id) || 0) ? c : best), communes[0]);
}

// The communes to choose from, and the devices of the one shown.
function shownDevices() {
  const communes = [...store.communes.values()].sort((a, b) => collate(a.name, b.name));
  const select = root.querySelector("#map-commune");
  select.closest("label").hidden = communes.length < 2;
  if (communes.length < 2) return [...store.devices.values()];
  if (commune === null || (commune && !store.communes.has(commune))) commune = mostInTrouble(communes).id;
  select.innerHTML = communes.map((c) => `<option value="${esc(c.id)}">${esc(c.name)}</option>`).join("") +
    `<option value="">${esc(t("map.all_communes"))}</option>`;
  select.value = commune;
  return [...store.devices.values()].filter((d) => !commune || d.commune === commune);
}

function build() {
  dirty.clear();
  if (map) {
    map.remove();
    markers = new Map();
  }
  if (!store.loaded) return;
  const devices = shownDevices();
  const geo = devices.some((d) => d.lat !== null && d.lon !== null && d.lat !== undefined);
  map = L.map(root.querySelector("#map"), {
    renderer: new SpotCanvas(),
    crs: geo ? L.CRS.EPSG3857 : L.CRS.Simple,
    minZoom: geo ? 3 : -5,
    attributionControl: Boolean(tileUrl),
    zoomSnap: 0.25,
  });
  if (tileUrl && geo) {
    L.tileLayer(tileUrl, {
      minZoom: config.map_min_zoom ?? 0, maxNativeZoom: config.map_max_zoom ?? 19, maxZoom: 19,
      attribution: config.map_attribution || "© OpenStreetMap contributors",
    }).addTo(map);
  }
  const { pos, villages, placed } = geo ? geoLayout(devices) : planLayout(devices);
  // The view must be set before any vector layer is added.
  const points = [...pos.values()];
  if (points.length) map.fitBounds(L.latLngBounds(points).pad(0.15));
  else map.setView([0, 0], 0);
  if (geo && boundaries) {
    L.geoJSON(boundaries, {
      style: { color: "#0f4c81", weight: 2, opacity: 0.7, fillOpacity: 0.04, dashArray: "6 4" },
      interactive: false,
      onEachFeature: (f, layer) => {
        const name = f.properties && f.properties.name;
        if (name) layer.bindTooltip(esc(name), { permanent: true, direction: "center", className: "boundary-label" });
      },
    }).addTo(map);
  }
  const links = L.layerGroup().addTo(map);
  for (const d of devices) {
    const p = pos.get(d.device_id);
    const parent = d.parent && pos.get(d.parent);
    if (p && parent) L.polyline([parent, p], { color: "#64748b", weight: 1, opacity: 0.45, interactive: false }).addTo(links);
  }
  for (const [, , area] of villages) {
    if (area) L.circle(area.center, { radius: area.radius, color: "#0f4c81", weight: 1, opacity: 0.35, fillColor: "#0f4c81", fillOpacity: 0.05, interactive: false }).addTo(map);
  }
  for (const [label, center] of villages) {
    L.marker(center, { icon: L.divIcon({ className: "village-label", html: `<span>${esc(label)}</span>`, iconSize: null }), interactive: false, keyboard: false }).addTo(map);
  }
  for (const d of devices) {
    const p = pos.get(d.device_id);
    if (!p) continue;
    const m = L.circleMarker(p, style(d.state)).addTo(map);
    m._state = d.state;
    m.bindTooltip(() => tooltip(d.device_id), { direction: "top", offset: [0, -6] });
    m.on("click", () => { location.hash = `#/device/${encodeURIComponent(d.device_id)}`; });
    markers.set(d.device_id, m);
  }
  root.querySelector("#map-note").textContent = [tileUrl ? "" : t("map.plan"), placed ? tIn(commune, "map.no_coords", { n: placed }) : ""]
    .filter(Boolean).join(" · ");
  renderLegend();
  // The container got its size only now that the view is in the page.
  requestAnimationFrame(() => map && map.invalidateSize());
}

function tooltip(id) {
  const d = store.devices.get(id);
  return `<strong>${esc(deviceName(id))}</strong><br>${esc(t(`kind.${d.kind}`))} · ${esc(villageName(d.commune, d.village))}<br>` +
    `<span class="pill" data-state="${esc(d.state)}"><i class="dot"></i>${esc(t(`state.${d.state || "unknown"}`))}</span>`;
}

function renderLegend() {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  // The devices on the map (the commune shown), not the whole deployment.
  for (const id of markers.keys()) {
    const d = store.devices.get(id);
    if (d) counts[d.state || "unknown"] += 1;
  }
  const legend = root.querySelector("#map-legend");
  if (!legend.firstChild) {
    legend.innerHTML = STATES.map((s) =>
      `<span class="legend-item" data-state="${s}"><i class="dot"></i>${esc(t(`state.${s}`))} <b data-map-count="${s}"></b></span>`).join("");
  }
  // Only the numbers change while the map is open.
  for (const b of legend.querySelectorAll("[data-map-count]")) {
    const n = String(counts[b.dataset.mapCount]);
    if (b.textContent !== n) b.textContent = n;
  }
}

function groupByVillage(devices) {
  const groups = new Map();
  for (const d of devices) {
    const key = `${d.commune}/${d.village || ""}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(d);
  }
  return groups;
}

// Real coordinates; devices without them go on rings around their village's centre.
function geoLayout(devices) {
  const pos = new Map();
  const villages = [];
  let placed = 0;
  const all = devices.filter((d) => d.lat !== null && d.lon !== null && d.lat !== undefined);
  const mid = centre(all);
  for (const [key, members] of groupByVillage(devices)) {
    const located = members.filter((d) => d.lat !== null && d.lon !== null && d.lat !== undefined);
    for (const d of located) pos.set(d.device_id, [d.lat, d.lon]);
    const c = located.length ? centre(located) : mid;
    const missing = members.filter((d) => !pos.has(d.device_id));
    missing.forEach((d, i) => {
      const ring = Math.floor(i / 12) + 1;
      const a = (2 * Math.PI * (i % 12)) / 12 + ring * 0.3;
      pos.set(d.device_id, [c[0] + 0.0012 * ring * Math.sin(a), c[1] + 0.0012 * ring * Math.cos(a)]);
      placed += 1;
    });
    const [commune, village] = key.split("/");
    if (!village) continue;
    // The village's area: a circle around its devices; its name just above it.
    let radius = 120;
    for (const d of members) {
      const p = pos.get(d.device_id);
      radius = Math.max(radius, L.latLng(c).distanceTo(p) + 90);
    }
    const top = [c[0] + radius / 111320, c[1]];
    villages.push([villageName(commune, village), top, { center: c, radius }]);
  }
  return { pos, villages, placed };
}

// No coordinates anywhere: one square block per village, devices on a grid inside it.
function planLayout(devices) {
  const pos = new Map();
  const villages = [];
  const groups = [...groupByVillage(devices).entries()].sort((a, b) => a[0].localeCompare(b[0]));
  const cols = Math.ceil(Math.sqrt(groups.length || 1));
  const block = 120;
  groups.forEach(([key, members], gi) => {
    const bx = (gi % cols) * block;
    const by = Math.floor(gi / cols) * block;
    const per = Math.ceil(Math.sqrt(members.length));
    const step = (block - 40) / Math.max(per, 1);
    members.sort((a, b) => a.kind.localeCompare(b.kind) || a.device_id.localeCompare(b.device_id));
    members.forEach((d, i) => {
      pos.set(d.device_id, [-(by + 30 + Math.floor(i / per) * step), bx + 20 + (i % per) * step]);
    });
    const [commune, village] = key.split("/");
    villages.push([village ? villageName(commune, village) : "—", [-(by + 12), bx + block / 2 - 10]]);
  });
  return { pos, villages, placed: devices.length };
}

function centre(list) {
  if (!list.length) return [0, 0];
  let lat = 0;
  let lon = 0;
  for (const d of list) {
    lat += d.lat;
    lon += d.lon;
  }
  return [lat / list.length, lon / list.length];
}
