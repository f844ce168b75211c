"""How long the page takes until its words are on screen: the sign-in form's button labelled, from
navigation start, in headless Chromium; cold (a new browser context: nothing cached) and warm (a
reload). Serves `dashboard/` as the gateway does (`/` the page, `/ui/...` its files, a fixed
`/ui/config.json`) from a local HTTP server, so only the page's own loading is timed.

`--before DIR` times another copy of `dashboard/` in the same run (e.g. the words as a JS module
before the catalogue moved to words.json: `git archive ba5243b dashboard | tar -x -C /tmp/before`),
alternating the two so that the machine's load falls on both alike. Prints one JSON object.

    .venv/bin/python bench/page_words.py [--n 30] [--before /tmp/before/dashboard]
"""

import argparse
import json
import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CONFIG = b'{"lang": "vi", "tz": "Asia/Ho_Chi_Minh", "map_tile_url": null, "village_term": null}'
# Records when the sign-in button first has its words (set by applyI18n after the words loaded).
WATCH = """
new MutationObserver((_, obs) => {
  const b = document.querySelector('#login button[type=submit]');
  if (b && b.textContent.trim()) { window.__wordsAt = performance.now(); obs.disconnect(); }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


class Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a browser context closed while a file was on its way: nothing to report


class Handler(SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        path = path.split("?")[0]
        if path == "/":
            path = "/index.html"
        elif path.startswith("/ui/"):
            path = path[3:]
        return super().translate_path(path)

    def do_GET(self) -> None:
        if self.path.startswith("/ui/config.json"):
            self._json(200, CONFIG)
        elif self.path.startswith("/api/"):  # signed out: the page shows the sign-in form
            self._json(401, b'{"error": {"code": "unauthorized", "message": "sign in first"}}')
        else:
            super().do_GET()

    def _json(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    server = Server(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, name="page_words.http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def load(browser: Browser, base: str, warm: bool) -> tuple[float, int]:
    """(ms from navigation start to the words on screen, bytes of the words file transferred)."""
    ctx = browser.new_context()
    ctx.add_init_script(WATCH)
    page = ctx.new_page()
    sizes: list[int] = []
    page.on(
        "requestfinished",
        lambda r: sizes.append(r.sizes()["responseBodySize"]) if "/words." in r.url else None,
    )
    page.goto(base + "/")
    if warm:
        page.reload()
    page.wait_for_function("window.__wordsAt !== undefined")
    at = float(page.evaluate("window.__wordsAt"))
    ctx.close()
    return at, sizes[-1] if sizes else 0


def dist(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"p50_ms": round(statistics.median(xs), 1), "p90_ms": round(xs[int(0.9 * (len(xs) - 1))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30, help="loads of each kind per copy")
    ap.add_argument("--before", type=Path, help="another dashboard/ directory to time beside this one")
    args = ap.parse_args()
    trees = {"now": ROOT / "dashboard"} | ({"before": args.before} if args.before else {})
    times: dict[str, dict[str, list[float]]] = {k: {"cold": [], "warm": []} for k in trees}
    size: dict[str, int] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        with serve(trees["now"]) as now_url, serve(trees.get("before", trees["now"])) as before_url:
            urls = {"now": now_url, "before": before_url}
            for _ in range(args.n):
                for name in trees:
                    for kind in ("cold", "warm"):
                        ms, n = load(browser, urls[name], kind == "warm")
                        times[name][kind].append(ms)
                        size[name] = max(size.get(name, 0), n)
        browser.close()
    out: dict[str, Any] = {"n": args.n}
    for name in trees:
        out[name] = {kind: dist(v) for kind, v in times[name].items()} | {"words_bytes": size[name]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
