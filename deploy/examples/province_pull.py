#!/usr/bin/env python3
"""Keep a province's copy of a commune IOC's device states, pulled from /api/share/v1/changes.

Standard library only. Each page of changes is written to SQLite in one transaction together
with the cursor to resume from, so the copy is exact whenever the script is stopped or killed:
the next run continues where the last committed page ended, without gaps or repeats.

    python3 province_pull.py --url https://ioc.example.vn --key "$IOC_KEY" --db mirror.sqlite          # poll
    python3 province_pull.py --url https://ioc.example.vn --key "$IOC_KEY" --db mirror.sqlite --once   # catch up, exit

Tables: `changes` (every state change, by seq), `device_state` (the latest state of each device),
`sync` (the cursor).
"""

import argparse
import json
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SCHEMA = """
CREATE TABLE IF NOT EXISTS sync (id INTEGER PRIMARY KEY CHECK (id = 1), cursor TEXT, pulled_at TEXT);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY, device_id TEXT NOT NULL, commune TEXT, village TEXT, kind TEXT,
    state TEXT NOT NULL, prev_state TEXT, at TEXT NOT NULL, reason TEXT);
CREATE TABLE IF NOT EXISTS device_state (
    device_id TEXT PRIMARY KEY, commune TEXT, village TEXT, kind TEXT, state TEXT NOT NULL, since TEXT NOT NULL,
    seq INTEGER NOT NULL);
"""


def fetch(url: str, key: str, params: dict[str, str], timeout: float = 30) -> dict:
    """One page; waits and retries on 429 (Retry-After), 5xx and network errors."""
    full = f"{url.rstrip('/')}/api/share/v1/changes?{urllib.parse.urlencode(params)}"
    delay = 1.0
    while True:
        req = urllib.request.Request(
            full, headers={"Authorization": f"Bearer {key}", "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:
            if err.code == 429:
                wait = float(err.headers.get("Retry-After", "5"))
            elif err.code >= 500:
                wait = delay
            else:
                body = err.read().decode(errors="replace")
                raise SystemExit(f"province_pull: HTTP {err.code}: {body}") from err
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            print(f"province_pull: {err}; retrying in {delay:.0f} s", file=sys.stderr)
            wait = delay
        time.sleep(wait)
        delay = min(delay * 2, 60)


def apply(db: sqlite3.Connection, page: dict) -> int:
    """Store one page and the cursor after it, atomically."""
    with db:
        for c in page["items"]:
            db.execute(
                "INSERT OR IGNORE INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c["seq"],
                    c["device_id"],
                    c["commune"],
                    c["village"],
                    c["kind"],
                    c["state"],
                    c["prev_state"],
                    c["at"],
                    c["reason"],
                ),
            )
            db.execute(
                "INSERT INTO device_state VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                " commune = excluded.commune, village = excluded.village, kind = excluded.kind,"
                " state = excluded.state, since = excluded.since, seq = excluded.seq WHERE excluded.seq > seq",
                (c["device_id"], c["commune"], c["village"], c["kind"], c["state"], c["at"], c["seq"]),
            )
        db.execute(
            "INSERT INTO sync VALUES (1, ?, datetime('now')) ON CONFLICT (id) DO UPDATE SET"
            " cursor = excluded.cursor, pulled_at = excluded.pulled_at",
            (page["next_cursor"],),
        )
    return len(page["items"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="base URL of the IOC gateway")
    p.add_argument("--key", required=True, help="API key from `ioc keys create`")
    p.add_argument("--db", required=True, help="SQLite file to keep the copy in")
    p.add_argument("--limit", type=int, default=1000, help="changes per request (max 10000)")
    p.add_argument("--interval", type=float, default=30, help="seconds between polls once caught up")
    p.add_argument("--once", action="store_true", help="exit once caught up")
    p.add_argument("--max-pages", type=int, default=0, help="stop after this many pages (0: no limit)")
    p.add_argument("--commune", help="only this commune (default: every commune of the key)")
    args = p.parse_args(argv)
    db = sqlite3.connect(args.db)
    db.executescript(SCHEMA)
    row = db.execute("SELECT cursor FROM sync WHERE id = 1").fetchone()
    cursor = row[0] if row else None
    pages = 0
    while True:
        params = {"limit": str(args.limit)}
        if cursor:
            params["cursor"] = cursor
        if args.commune:
            params["commune"] = args.commune
        page = fetch(args.url, args.key, params)
        n = apply(db, page)
        cursor = page["next_cursor"]
        pages += 1
        if args.max_pages and pages >= args.max_pages:
            return 0
        if n < args.limit:
            if args.once:
                return 0
            time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
