// The villages a broadcast goes to: a list found by typing (with or without diacritics: "bac thanh"
// finds «Ấp Bắc Thạnh»), each with the speakers and e-boards it has, and a map with one dot per
// village at the middle of its devices, tapped to pick or leave it. Both show the same picks.

import { collate, esc, fold, matchesWords } from "../dom.js";
import { t } from "../i18n.js";
import { communeName, store } from "../live.js";
import { villageLabel } from "./broadcast_words.js";

const L = window.L;

// The card: the list, the map, and which kinds of device hear it.
export function villagesCardHtml() {
  return `<div class="card bc-where"><h2>${esc(t("bc.f_villages"))} <span class="badge neutral" id="bc-picked-n"></span></h2>
      <div class="toolbar"><input type="search" name="vq" placeholder="${esc(t("bc.vq_ph"))}" aria-label="${esc(t("bc.vq_ph"))}">
        <button type="button" class="chip" data-pick="all">${esc(t("bc.pick_all"))}</button>
        <button type="button" class="chip" data-pick="none">${esc(t("bc.pick_none"))}</button></div>
      <ul class="bc-vlist" id="bc-vlist"></ul>
      <div class="bc-map" id="bc-map"></div><p class="hint" id="bc-map-hint">${esc(t("bc.map_hint"))}</p>
      <fieldset class="bc-choice" id="bc-kinds"><legend>${esc(t("bc.f_kinds"))}</legend>
        <label class="check"><input type="checkbox" name="kinds" value="speaker" checked> ${esc(t("kinds.speaker"))}</label>
        <label class="check"><input type="checkbox" name="kinds" value="eboard" checked> ${esc(t("kinds.eboard"))}</label></fieldset>
    </div>`;
}

// The villages of the commune(s), with what each has to hear a broadcast.
function villages() {
  const kinds = new Map();
  for (const d of store.devices.values()) {
    if (!d.village || (d.kind !== "speaker" && d.kind !== "eboard")) continue;
    const key = `${d.commune}/${d.village}`;
    const k = kinds.get(key) || { speaker: 0, eboard: 0 };
    k[d.kind] += 1;
    kinds.set(key, k);
  }
  return [...store.villages.values()].map((v) => {
    const key = `${v.commune}/${v.id}`;
    const label = villageLabel(key);
    return { key, label, search: fold(`${label} ${v.id} ${communeName(v.commune)}`), ...(kinds.get(key) || { speaker: 0, eboard: 0 }) };
  }).sort((a, b) => collate(a.label, b.label));
}

function dotStyle(on) {
  return { radius: 13, weight: 3, color: on ? "#0b3a63" : "#64748b", fillColor: on ? "#0f4c81" : "#ffffff", fillOpacity: on ? 0.9 : 0.8 };
}

// The picks ("commune/village") of the card in `root`; `onPicked()` after each change.
export class VillagePicker {
  constructor(root, { picked, tileUrl = null, onPicked = () => {} }) {
    this.root = root;
    this.picked = picked;
    this.onPicked = onPicked;
    this.map = null;
    this.dots = new Map();
    const card = root.querySelector(".bc-where");
    card.addEventListener("input", (e) => {
      if (e.target.name === "vq") this.filter();
    });
    card.addEventListener("change", (e) => {
      if (e.target.name !== "village") return;
      if (e.target.checked) this.picked.add(e.target.value);
      else this.picked.delete(e.target.value);
      this.show();
    });
    card.addEventListener("click", (e) => {
      const pick = e.target.closest("[data-pick]");
      if (!pick) return;
      for (const li of root.querySelectorAll("#bc-vlist li[data-key]")) {
        if (li.hidden) continue; // "all" picks what the search shows
        if (pick.dataset.pick === "all") this.picked.add(li.dataset.key);
        else this.picked.delete(li.dataset.key);
      }
      this.show();
    });
    this.render();
    this.buildMap(tileUrl);
  }

  render() {
    const list = this.root.querySelector("#bc-vlist");
    list.innerHTML = villages().map((v) => `<li data-key="${esc(v.key)}" data-search="${esc(v.search)}"><label class="check">
        <input type="checkbox" name="village" value="${esc(v.key)}"${this.picked.has(v.key) ? " checked" : ""}> <span>${esc(v.label)}</span></label>
        <small class="${v.speaker ? "muted" : "bc-warn"}">${esc(v.speaker ? t("bc.n_speakers", { n: v.speaker }) : t("bc.no_speaker"))}` +
        `${v.eboard ? ` · ${esc(t("bc.n_eboards", { n: v.eboard }))}` : ""}</small></li>`).join("") ||
      `<li class="empty">${esc(t("bc.no_villages"))}</li>`;
    this.filter();
    this.show();
  }

  filter() {
    const q = fold(this.root.querySelector("input[name=vq]").value.trim());
    for (const li of this.root.querySelectorAll("#bc-vlist li[data-key]")) li.hidden = Boolean(q) && !matchesWords(li.dataset.search, q);
  }

  show() {
    for (const c of this.root.querySelectorAll("#bc-vlist input[name=village]")) c.checked = this.picked.has(c.value);
    const n = this.root.querySelectorAll("#bc-vlist li[data-key]").length;
    this.root.querySelector("#bc-picked-n").textContent = t("bc.picked_n", { n: this.picked.size, total: n });
    for (const [key, m] of this.dots) m.setStyle(dotStyle(this.picked.has(key)));
    this.onPicked();
  }

  // One dot per village at the middle of its devices; a tap picks it or leaves it.
  buildMap(tileUrl) {
    const el = this.root.querySelector("#bc-map");
    const sums = new Map();
    for (const d of store.devices.values()) {
      if (!d.village || d.lat === null || d.lat === undefined || d.lon === null || d.lon === undefined) continue;
      const key = `${d.commune}/${d.village}`;
      const s = sums.get(key) || { lat: 0, lon: 0, n: 0 };
      s.lat += d.lat;
      s.lon += d.lon;
      s.n += 1;
      sums.set(key, s);
    }
    const placed = villages().filter((v) => sums.has(v.key));
    const hint = this.root.querySelector("#bc-map-hint");
    if (!L || !placed.length) {
      el.hidden = true;
      hint.textContent = t("bc.map_none");
      return;
    }
    this.map = L.map(el, { attributionControl: false, zoomSnap: 0.25, scrollWheelZoom: false });
    if (tileUrl) L.tileLayer(tileUrl, { maxZoom: 19 }).addTo(this.map);
    const points = placed.map((v) => {
      const s = sums.get(v.key);
      return [v, [s.lat / s.n, s.lon / s.n]];
    });
    this.map.fitBounds(L.latLngBounds(points.map(([, p]) => p)).pad(0.25));
    for (const [v, p] of points) {
      const m = L.circleMarker(p, { ...dotStyle(this.picked.has(v.key)), bubblingMouseEvents: false }).addTo(this.map);
      m.bindTooltip(esc(v.label), { permanent: true, direction: "top", offset: [0, -12], className: "bc-map-label" });
      m.on("click", () => {
        if (this.picked.has(v.key)) this.picked.delete(v.key);
        else this.picked.add(v.key);
        this.show();
      });
      m.getElement()?.setAttribute("data-village", v.key);
      this.dots.set(v.key, m);
    }
    const missing = store.villages.size - placed.length;
    if (missing > 0) hint.textContent = `${t("bc.map_hint")} ${t("bc.map_missing", { n: missing })}`;
    requestAnimationFrame(() => this.map && this.map.invalidateSize());
  }

  destroy() {
    if (this.map) this.map.remove();
    this.map = null;
    this.dots = new Map();
  }
}
