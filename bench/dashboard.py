"""Dashboard at scale: the real page in headless Chromium with 5,000 devices under a live stream.

Starts its own PostgreSQL+TimescaleDB, Mosquitto, `ioc ingest` and `ioc gateway` (bench/stack.py),
registers `--devices` devices over `--villages` villages and the five kinds, signs in to the real
dashboard in Debian's chromium (1366×768) and measures, in the page (bench/dashboard_page.js):
  load      navigation -> the overview showing the total; entering the device list and the map
  per view  overview, device list, map in turn, `--seconds` / 3 each, while statuses arrive at
            `--rate` msg/s (`--flip-share` of them availability flips online <-> offline):
            long tasks, frame intervals, main-thread busy share; for probe cameras (their publish
            time travels in the status as `bench_t`) publish -> page (WebSocket frame), -> DOM and
            -> painted (overview activity, device row — offline ones, which sort into view —, map
            marker drawn on the canvas); DOM elements, DOM nodes, listeners and JS heap (after a
            forced GC) at start and end; the scripts of long animation frames; live-feed reconnects;
            CPU of chromium, ingest and gateway; in the device list also the input latency of typing
            a search and choosing filters (input event -> the filtered list painted)
A share of state changes (`--flip-share`, default 5 %: 100 a second) is a storm; `--flip-share
0.005` is a busy day. The CPU figures say how loaded the machine was: read them before the rest.
Prints one JSON object. `--profile DIR` also writes a CPU profile per view (open in DevTools),
`--screenshots DIR` the page at the end of each view.

    .venv/bin/python bench/dashboard.py [--devices 5000] [--rate 2000] [--seconds 60] [--profile DIR]
"""

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import CDPSession, Page, sync_playwright  # noqa: E402

from bench.dashboard_feed import Registry, Stream, seed  # noqa: E402
from bench.proc_cpu import CpuMeter  # noqa: E402
from bench.stack import stack, wait_states  # noqa: E402
from tests.dashboard.conftest import sign_in  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PAGE_JS = (Path(__file__).parent / "dashboard_page.js").read_text()
VIEWS = {
    "overview": (
        "#/",
        "() => document.querySelector('[data-count=total]')?.textContent === String(__benchDevices)",
    ),
    "devices": (
        "#/devices",
        "() => document.querySelector('#device-count')?.dataset.n === String(__benchDevices)"
        " && !!document.querySelector('#device-list .vrow[data-device-id]')",
    ),
    "map": (
        "#/map",
        "() => !!document.querySelector('#map canvas') && [...document.querySelectorAll('[data-map-count]')]"
        ".reduce((a, b) => a + Number(b.textContent), 0) === __benchDevices",
    ),
}


def dist(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0}
    s = sorted(xs)
    return {
        "n": len(s),
        "p50": round(s[len(s) // 2], 1),
        "p99": round(s[min(len(s) - 1, int(0.99 * len(s)))], 1),
        "max": round(s[-1], 1),
    }


def enter(page: Page, view: str) -> float:
    """Go to a view; ms until it shows every device and that frame is painted."""
    hash_, ready = VIEWS[view]
    return round(page.evaluate(f"() => __bench.enter({hash_!r}, {ready})"), 1)


def metrics(cdp: CDPSession) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def type_and_filter(page: Page, reg: Registry) -> None:
    """What an operator does in the list: search for a device, clear it, pick a state and a kind."""
    box = page.locator("#devices input[name=q]")
    box.click()
    page.keyboard.type(reg.ids[123].split("-")[-1], delay=400)
    page.wait_for_timeout(800)
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    for name, value in (("state", "offline"), ("kind", "camera")):
        page.wait_for_timeout(800)
        page.select_option(f"#devices select[name={name}]", value)
        page.wait_for_timeout(800)
        page.select_option(f"#devices select[name={name}]", "")


def profile_top(profile: dict[str, Any], n: int = 12) -> list[dict[str, Any]]:
    """Self time per function of a CDP CPU profile, the largest first."""
    interval_ms = (profile["endTime"] - profile["startTime"]) / 1000 / max(1, len(profile["samples"]))
    self_ms: Counter[str] = Counter()
    for node in profile["nodes"]:
        f = node["callFrame"]
        where = f"{f['functionName'] or '(anonymous)'} {f['url'].rsplit('/', 1)[-1]}:{f['lineNumber'] + 1}"
        self_ms[where] += node.get("hitCount", 0) * interval_ms
    return [{"where": w, "self_ms": round(ms)} for w, ms in self_ms.most_common(n)]


def phase(
    page: Page,
    cdp: CDPSession,
    cpu: CpuMeter,
    view: str,
    seconds: float,
    reg: Registry,
    profile: Path | None,
    screenshots: Path | None,
) -> dict[str, Any]:
    entered_ms = enter(page, view)
    cdp.send("HeapProfiler.collectGarbage")
    m0 = metrics(cdp)
    dom0 = page.evaluate("document.getElementsByTagName('*').length")
    if profile:
        cdp.send("Profiler.start")
    cpu.mark()
    page.evaluate("__bench.start()")
    t0 = time.monotonic()
    started_ms = time.time() * 1000
    typing = (0.0, 0.0)
    if view == "devices":
        page.wait_for_timeout(seconds * 300)
        typing = (time.time() * 1000, 0.0)
        type_and_filter(page, reg)
        page.wait_for_timeout(500)
        typing = (typing[0], time.time() * 1000)
    page.wait_for_timeout(max(0.0, seconds - (time.monotonic() - t0)) * 1000)
    raw = page.evaluate("__bench.take()")
    if screenshots:
        page.screenshot(path=str(screenshots / f"{view}.png"))
    wall = time.monotonic() - t0
    cpu_pct = cpu.percent()
    top = None
    if profile:
        prof = cdp.send("Profiler.stop")["profile"]
        (profile / f"{view}.cpuprofile").write_text(json.dumps(prof))
        top = profile_top(prof)
    m1 = metrics(cdp)
    cdp.send("HeapProfiler.collectGarbage")
    m2 = metrics(cdp)
    frames = raw["frames"]
    # While the list is filtered a probe may show late (hidden by the filter) or early (an online
    # probe, normally far below the offline rows, brought into view by a search): left out.
    probes = [
        p for p in raw["probes"] if p["published"] > typing[1] or p["published"] + p["dom_ms"] < typing[0]
    ]
    out: dict[str, Any] = {
        "enter_ms": entered_ms,
        "seconds": round(wall, 1),
        "long_tasks": {
            "n": len(raw["longtasks"]),
            "total_ms": round(sum(raw["longtasks"])),
            "max_ms": round(max(raw["longtasks"], default=0)),
        },
        "frames": {
            **dist(frames),
            "fps": round(len(frames) / wall, 1),
            "over_50ms": sum(1 for f in frames if f > 50),
        },
        "main_thread_busy_pct": round(100 * (m1["TaskDuration"] - m0["TaskDuration"]) / wall, 1),
        "script_ms_per_s": round(1000 * (m1["ScriptDuration"] - m0["ScriptDuration"]) / wall, 1),
        "style_layout_ms_per_s": round(
            1000
            * (
                m1["RecalcStyleDuration"]
                - m0["RecalcStyleDuration"]
                + m1["LayoutDuration"]
                - m0["LayoutDuration"]
            )
            / wall,
            1,
        ),
        "publish_to_page_ms": dist(raw["arrivals"]),
        "publish_to_dom_ms": dist([p["dom_ms"] for p in probes]),
        "publish_to_painted_ms": dist([p["painted_ms"] for p in probes]),
        "probe_states_seen": dict(Counter(p["state"] for p in probes)),
        "probes_left_out_while_typing": len(raw["probes"]) - len(probes),
        "slowest_probes": [
            {
                "id": p["id"],
                "state": p["state"],
                "painted_ms": round(p["painted_ms"]),
                "published_s": round((p["published"] - started_ms) / 1000, 1),
            }
            for p in sorted(probes, key=lambda p: -p["painted_ms"])[:3]
        ],
        "typing_s": [round((t - started_ms) / 1000, 1) for t in typing] if typing[0] else None,
        "dom_elements": {"start": dom0, "end": raw["dom_elements"]},
        "dom_nodes": {"start": int(m0["Nodes"]), "end_after_gc": int(m2["Nodes"])},
        "js_heap_mb": {
            "start_after_gc": round(m0["JSHeapUsedSize"] / 2**20, 1),
            "end": round(m1["JSHeapUsedSize"] / 2**20, 1),
            "end_after_gc": round(m2["JSHeapUsedSize"] / 2**20, 1),
        },
        "event_listeners": {"start": int(m0["JSEventListeners"]), "end": int(m2["JSEventListeners"])},
        "live_feed_reconnects": sum(1 for x in raw["sockets"] if x["opened"]),
        "live_feed_closes": [x["closed"] for x in raw["sockets"] if x["closed"] is not None],
        "slow_events": {
            "n": len(raw["events"]),
            "max_ms": max((e["duration"] for e in raw["events"]), default=0),
        },
        "long_frame_scripts": [
            {**s, "total_ms": round(s["total_ms"]), "max_ms": round(s["max_ms"])}
            for s in raw["loaf_scripts"][:5]
        ],
        "cpu_pct": cpu_pct,
    }
    if raw["inputs"]:
        out["input_latency_ms"] = [{**i, "ms": round(i["ms"], 1)} for i in raw["inputs"]]
    if top:
        out["profile_self_ms"] = top
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=5000)
    p.add_argument("--villages", type=int, default=25)
    p.add_argument("--probes", type=int, default=6, help="cameras whose state flips carry their publish time")
    p.add_argument("--rate", type=float, default=2000, help="statuses per second during the views")
    p.add_argument("--seconds", type=float, default=60, help="stream duration, split over the three views")
    p.add_argument("--flip-share", type=float, default=0.05, help="share of messages that flip availability")
    p.add_argument("--offline", type=int, default=250, help="devices offline at any time (flips rotate them)")
    p.add_argument("--probe-every", type=float, default=0.4, help="seconds between probe flips")
    p.add_argument("--profile", type=Path, help="write a CPU profile per view into this directory")
    p.add_argument(
        "--screenshots", type=Path, help="write the page at the end of each view into this directory"
    )
    args = p.parse_args()
    reg = Registry.build(args.devices, args.villages, args.probes)
    for out in (args.profile, args.screenshots):
        if out:
            out.mkdir(parents=True, exist_ok=True)

    with stack("ioc-bench-dashboard-", lambda url: seed(url, reg)) as s:
        stream = Stream(s.mqtt_url, reg, args.rate, args.flip_share, args.offline, args.probe_every)
        stream.warm_up()
        wait_states(s.db_url, "offline", args.offline)
        wait_states(s.db_url, "online", args.devices - args.offline)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            ctx = browser.new_context(viewport={"width": 1366, "height": 768})
            ctx.add_init_script(script=f"window.__benchDevices = {args.devices};\n{PAGE_JS}")
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            sign_in(page, s.gateway_url)
            cdp = ctx.new_cdp_session(page)
            cdp.send("Performance.enable")
            if args.profile:
                cdp.send("Profiler.enable")
            # A fresh load with the session cookie: navigation -> the overview counting every device.
            page.reload()
            page.wait_for_function("() => 'overview_total' in __bench.marks", timeout=120_000)
            load = {"overview_total_ms": round(page.evaluate("__bench.marks.overview_total"), 1)}
            page.evaluate("p => __bench.setup(p)", reg.probe_positions())
            load["devices_ms"] = enter(page, "devices")
            load["map_ms"] = enter(page, "map")
            enter(page, "overview")

            cpu = CpuMeter(os.getpid())
            views: dict[str, Any] = {}
            with stream.running():
                page.wait_for_timeout(2000)  # the feed reaches its steady rate
                for view in VIEWS:
                    views[view] = phase(
                        page, cdp, cpu, view, args.seconds / len(VIEWS), reg, args.profile, args.screenshots
                    )
            browser_version = browser.version
            browser.close()
        result = {
            "params": {
                "devices": args.devices,
                "villages": args.villages,
                "kinds": 5,
                "probes": args.probes,
                "rate_msg_s": args.rate,
                "seconds": args.seconds,
                "flip_share": args.flip_share,
                "offline": args.offline,
                "probe_every_s": args.probe_every,
                "viewport": "1366x768",
                "chromium": browser_version,
                "cpus": os.cpu_count(),
            },
            "stream": stream.summary(),
            "load": load,
            "views": views,
            "loadavg": os.getloadavg(),
            "page_errors": errors,
        }
        print(json.dumps(result, indent=2, ensure_ascii=False))
        if errors:
            sys.exit(1)


if __name__ == "__main__":
    main()
