// Instruments the dashboard for bench/dashboard.py. Installed before the page's own scripts
// (Playwright's add_init_script), it keeps frame intervals, long tasks, long animation frames with
// the scripts that made them long, slow input events, input latencies, and when each probe
// device's new state reached the page (overview activity, device row, map canvas).
// `window.__benchDevices` (the registry size) is set by the bench before this script.
(() => {
  const B = (window.__bench = {
    recording: false,
    startedAt: 0, // Date.now() when the measurement began
    marks: {},
    frames: [],
    longtasks: [],
    loafs: [],
    events: [],
    probes: [],
    arrivals: [],
    sockets: [], // {opened: during a measurement, closed: close code or null}
    inputs: [],
    seen: new Set(),
    probeIds: new Set(),
    probeLats: new Map(), // latitude -> device id, for markers drawn on the map's canvas
    live: null,
    colorState: {},
  });

  // Runs after the frame being produced now has been painted (a task posted from a
  // requestAnimationFrame callback runs after that frame's rendering step).
  function afterPaint(fn) {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      // An open port with a handler is never collected: without this each call leaked a listener.
      ch.port1.close();
      fn();
    };
    ch.port2.postMessage(0);
  }

  // Marks of the first load, checked once a frame.
  const watches = [
    ["overview_total", () => {
      const el = document.querySelector("[data-count=total]");
      return el && el.textContent === String(window.__benchDevices);
    }],
  ];
  let last = 0;
  function frame(now) {
    if (B.recording && last) B.frames.push(now - last);
    last = now;
    for (const [name, pred] of watches) if (!(name in B.marks) && pred()) B.marks[name] = performance.now();
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);

  new PerformanceObserver((list) => {
    if (!B.recording) return;
    for (const e of list.getEntries()) B.longtasks.push(e.duration);
  }).observe({ type: "longtask", buffered: true });

  new PerformanceObserver((list) => {
    if (!B.recording) return;
    for (const e of list.getEntries()) {
      B.loafs.push({
        duration: e.duration,
        blocking: e.blockingDuration,
        scripts: e.scripts.map((s) => ({
          where: `${s.invoker} → ${s.sourceFunctionName || "?"} (${(s.sourceURL || "").split("/").pop()}:${s.sourceCharPosition})`,
          duration: s.duration,
        })),
        style_layout: e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0,
      });
    }
  }).observe({ type: "long-animation-frame", buffered: true });

  new PerformanceObserver((list) => {
    if (!B.recording) return;
    for (const e of list.getEntries()) {
      B.events.push({ name: e.name, duration: e.duration, delay: e.processingStart - e.startTime });
    }
  }).observe({ type: "event", durationThreshold: 16, buffered: true });

  // When each probe's message arrives over /ws/live (the pipeline's share of publish -> pixels):
  // a listener added before the page's own onmessage runs first.
  const BENCH_T = /"bench_t":\s*([0-9.eE+-]+)/g;
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      const sock = { opened: B.recording, closed: null };
      B.sockets.push(sock);
      this.addEventListener("close", (e) => {
        sock.closed = e.code;
      });
      this.addEventListener("message", (e) => {
        if (!B.recording || typeof e.data !== "string") return;
        const now = Date.now();
        for (const m of e.data.matchAll(BENCH_T)) B.arrivals.push(now - Number(m[1]) * 1000);
      });
    }
  };

  // A probe's state is seen in the page: time from its publish (bench_t, carried in the status
  // and kept in the device's metrics) to now, and to after the frame is painted.
  function probeSeen(id, state, view) {
    const d = B.live && B.live.store.devices.get(id);
    if (!B.recording || !d || d.state !== state || !d.metrics || !d.metrics.bench_t) return;
    const published = d.metrics.bench_t * 1000;
    // A state published before the measurement may first be drawn in this view now (a neighbour's
    // repaint, a row scrolled in): that is not its latency.
    if (published < B.startedAt) return;
    const key = `${view}|${id}|${published}`;
    if (B.seen.has(key)) return;
    B.seen.add(key);
    const dom = Date.now() - published;
    afterPaint(() => B.probes.push({ view, id, state, published, dom_ms: dom, painted_ms: Date.now() - published }));
  }

  function viewName() {
    const v = document.querySelector("#view");
    return v ? v.dataset.view : "";
  }

  function onMutations(records) {
    if (!B.recording) return;
    const view = viewName();
    for (const r of records) {
      if (r.type === "attributes") {
        const id = r.target.dataset.deviceId;
        if (id && B.probeIds.has(id)) probeSeen(id, r.target.dataset.state, view);
        continue;
      }
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1) continue;
        const id = n.dataset.change || n.dataset.deviceId;
        if (id && B.probeIds.has(id)) probeSeen(id, n.dataset.state, view);
      }
    }
  }

  let keyAt = null;
  function onInput(e) {
    if (!B.recording) return;
    if (e.type === "keydown") {
      keyAt = e.timeStamp;
      return;
    }
    // A select fires both input and change; the list listens to change.
    if (e.target.tagName === "SELECT" && e.type === "input") return;
    const t0 = e.type === "input" && keyAt !== null && e.timeStamp - keyAt < 200 ? keyAt : e.timeStamp;
    keyAt = null;
    const what = `${e.target.name}=${e.target.value}`;
    requestAnimationFrame(() => afterPaint(() => {
      const count = document.querySelector("#device-count");
      const first = document.querySelector("#device-list .vrow:not([hidden])");
      B.inputs.push({
        what,
        ms: performance.now() - t0,
        shown: count ? Number(count.dataset.n) : null,
        first: first ? first.dataset.deviceId : null,
      });
    }));
  }
  for (const type of ["keydown", "input", "change"]) document.addEventListener(type, onInput, true);

  // After sign-in: the page's own modules (the same instances main.js uses), the probes, and a
  // hook on Leaflet's canvas renderer that sees each circle as it is drawn.
  B.setup = async (probes) => {
    B.live = await import("/ui/js/live.js");
    const dom = await import("/ui/js/dom.js");
    B.colorState = Object.fromEntries(Object.entries(dom.STATE_COLORS).map(([s, c]) => [c, s]));
    for (const p of probes) {
      B.probeIds.add(p.id);
      B.probeLats.set(p.lat, p.id);
    }
    new MutationObserver(onMutations).observe(document.querySelector("#view"), {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: ["data-state", "data-device-id"],
    });
    const draw = window.L.Canvas.prototype._updateCircle;
    window.L.Canvas.prototype._updateCircle = function (layer) {
      draw.call(this, layer);
      const id = B.probeLats.get(layer._latlng.lat);
      if (id !== undefined) probeSeen(id, B.colorState[layer.options.fillColor], "map");
    };
  };

  // Start a measurement window, or end one and hand over what it recorded.
  B.start = () => {
    for (const k of ["frames", "longtasks", "loafs", "events", "probes", "arrivals", "inputs"]) B[k] = [];
    B.sockets = B.sockets.filter((x) => x.closed === null);
    for (const x of B.sockets) x.opened = false;
    B.startedAt = Date.now();
    B.recording = true;
  };
  B.take = () => {
    B.recording = false;
    const scripts = new Map();
    for (const f of B.loafs) {
      for (const s of f.scripts) {
        const a = scripts.get(s.where) || { where: s.where, n: 0, total_ms: 0, max_ms: 0 };
        a.n += 1;
        a.total_ms += s.duration;
        a.max_ms = Math.max(a.max_ms, s.duration);
        scripts.set(s.where, a);
      }
    }
    return {
      frames: B.frames,
      longtasks: B.longtasks,
      loafs: B.loafs.map((f) => ({ duration: f.duration, blocking: f.blocking, style_layout: f.style_layout })),
      loaf_scripts: [...scripts.values()].sort((a, b) => b.total_ms - a.total_ms).slice(0, 8),
      events: B.events,
      probes: B.probes,
      arrivals: B.arrivals,
      // Live-feed connections opened or closed during the measurement (a reconnect is a snapshot).
      sockets: B.sockets.filter((x) => x.opened || x.closed !== null).map((x) => ({ ...x })),
      inputs: B.inputs,
      dom_elements: document.getElementsByTagName("*").length,
    };
  };

  // Go to a view and time it until `ready()` holds and that frame is painted.
  B.enter = (hash, ready) => new Promise((resolve) => {
    const t0 = performance.now();
    location.hash = hash;
    const check = () => {
      if (ready()) afterPaint(() => resolve(performance.now() - t0));
      else requestAnimationFrame(check);
    };
    requestAnimationFrame(check);
  });
})();
