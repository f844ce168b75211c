"""The dashboard in headless Chromium against a real gateway process and a seeded database."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from psycopg.types.json import Jsonb

from cli.embedded import Postgres
from services import auth, feed, registry, registry_file
from services.vault import Vault
from tests.dashboard.serve import gateway
from tests.fix_pg import clone_db, drop_db

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PASSWORD = "correct-horse-1"

REGISTRY = """\
commune: {id: thoai-giang, name: "Xã Thoại Giang", district: "Huyện Thoại Sơn", province: "An Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình"}
  - {id: tay-binh, name: "Ấp Tây Bình"}
  - {id: bac-thanh, name: "Ấp Bắc Thạnh"}
devices:
  - {id: gw-trung-binh, kind: gateway, village: trung-binh, name: "Router ấp Trung Bình", lat: 10.2804, lon: 105.2250}
  - {id: gw-tay-binh, kind: gateway, village: tay-binh, name: "Router ấp Tây Bình", lat: 10.2790, lon: 105.2028}
  - {id: gw-bac-thanh, kind: gateway, village: bac-thanh, name: "Router ấp Bắc Thạnh", lat: 10.3008, lon: 105.2187}
  - {id: cam-ubnd-1, kind: camera, village: trung-binh, name: "Camera cổng UBND", lat: 10.2857, lon: 105.2253,
     parent: gw-trung-binh, onvif: {host: 192.0.2.21, port: 80, username: admin, password: "pw-123456", poll_s: 30}}
  - {id: cam-cho, kind: camera, village: trung-binh, name: "Camera chợ", lat: 10.2811, lon: 105.2230,
     parent: gw-trung-binh}
  - {id: cam-ben-do, kind: camera, village: tay-binh, name: "Camera bến đò", lat: 10.2818, lon: 105.1969,
     parent: gw-tay-binh}
  - {id: spk-trung-binh-1, kind: speaker, village: trung-binh, name: "Loa ấp Trung Bình 1", lat: 10.2830,
     lon: 105.2270, parent: gw-trung-binh}
  - {id: spk-trung-binh-2, kind: speaker, village: trung-binh, name: "Loa ấp Trung Bình 2", lat: 10.2790,
     lon: 105.2262, parent: gw-trung-binh}
  - {id: spk-tay-binh-1, kind: speaker, village: tay-binh, name: "Loa ấp Tây Bình 1", lat: 10.2770,
     lon: 105.2040, parent: gw-tay-binh}
  - {id: spk-bac-thanh-1, kind: speaker, village: bac-thanh, name: "Loa ấp Bắc Thạnh 1", lat: 10.3030,
     lon: 105.2210, parent: gw-bac-thanh}
  - {id: eb-ubnd, kind: eboard, village: trung-binh, name: "Bảng tin UBND", lat: 10.2850, lon: 105.2240}
  - {id: wifi-cho, kind: wifi, village: trung-binh, name: "Wi-Fi chợ", lat: 10.2815, lon: 105.2236,
     parent: gw-trung-binh}
  - {id: wifi-bac-thanh, kind: wifi, village: bac-thanh, name: "Wi-Fi nhà văn hoá Bắc Thạnh", parent: gw-bac-thanh}
"""
# Seeded states: a commune mostly up, one speaker down, one camera refusing our password.
STATES = {
    "gw-trung-binh": "online",
    "gw-tay-binh": "online",
    "gw-bac-thanh": "online",
    "cam-ubnd-1": "online",
    "cam-cho": "auth_failed",
    "cam-ben-do": "online",
    "spk-trung-binh-1": "online",
    "spk-trung-binh-2": "online",
    "spk-tay-binh-1": "offline",
    "spk-bac-thanh-1": "online",
    "eb-ubnd": "online",
    "wifi-cho": "online",
    "wifi-bac-thanh": "unknown",
}
METRICS = {
    "speaker": {"volume": 60, "playing": False, "power": "mains", "battery_pct": 97, "temperature_c": 41.5},
    "gateway": {"uplink_up": True, "rtt_ms": 23.0, "cpu_pct": 18, "mem_pct": 41, "uptime_s": 86400},
    "camera": {
        "reachable": True,
        "rtt_ms": 12.0,
        "clock_offset_s": 0.4,
        "recording": True,
        "stream_uri": "rtsp://192.0.2.21:554/Streaming/Channels/101",
        "snapshot_uri": "http://192.0.2.21/onvif-http/snapshot?Profile_1",
    },
    "eboard": {"screen_on": True, "brightness_pct": 80, "temperature_c": 39.0, "content_id": "tb-2026-11"},
    "wifi": {"clients": 14, "uplink_up": True, "cpu_pct": 22, "mem_pct": 35},
}


def seed(db_url: str) -> None:
    """The registry, states with an hour of history, samples and events, and two users."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        registry.import_registry(
            conn, registry_file.parse_yaml(REGISTRY), Vault("test-secret-key-0123456789")
        )
        kinds = dict(conn.execute("SELECT id, kind FROM devices").fetchall())
        changes = []
        for device_id, state in STATES.items():
            metrics = METRICS[kinds[device_id]] if state != "unknown" else {}
            since = now - timedelta(minutes=20 if state in ("offline", "auth_failed") else 300)
            seen = None if state == "unknown" else now - timedelta(seconds=20)
            conn.execute(
                "UPDATE device_state SET state = %s, since = %s, last_seen = %s, metrics = %s, reason = %s"
                " WHERE device_id = %s",
                (state, since, seen, Jsonb(metrics), "seeded", device_id),
            )
            if state != "unknown":
                changes.append(
                    (device_id, "thoai-giang", None, kinds[device_id], state, "unknown", since, "seeded")
                )
        vill = dict(conn.execute("SELECT id, village_id FROM devices").fetchall())
        feed.record_changes(conn, [(c[0], c[1], vill[c[0]], *c[3:]) for c in changes])
        # 24 h of speaker samples every 10 min, volume swinging, for the history chart.
        samples = []
        for i in range(144):
            ts = now - timedelta(minutes=10 * i)
            samples.append(
                (
                    "spk-trung-binh-1",
                    ts,
                    ts,
                    Jsonb(
                        {
                            "volume": 40 + (i * 7) % 50,
                            "battery_pct": 90 + i % 10,
                            "temperature_c": 35 + (i % 12) / 2,
                        }
                    ),
                )
            )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO status_samples (device_id, ts, received_at, metrics) VALUES (%s, %s, %s, %s)",
                samples,
            )
        ev_seq = feed.publish(
            conn, [{"type": "event", "device_id": "spk-trung-binh-1", "commune": "thoai-giang"}]
        )
        conn.execute(
            "INSERT INTO device_events (device_id, ts, received_at, type, severity, message, fields, seq)"
            " VALUES (%s, %s, %s, 'amp_overheat', 'warning', 'Bộ khuếch đại quá nhiệt', '{}', %s)",
            ("spk-trung-binh-1", now - timedelta(minutes=5), now - timedelta(minutes=5), ev_seq),
        )
        auth.add_user(conn, "admin", PASSWORD, "admin")
        auth.add_user(conn, "viewer", PASSWORD, "viewer")


@pytest.fixture(scope="module")
def dash_db(pg_server: Postgres) -> Iterator[str]:
    """One seeded database for a module of browser tests (each test leaves it as it found it)."""
    name = clone_db(pg_server)
    url = pg_server.url(name)
    seed(url)
    yield url
    drop_db(pg_server, name)


@pytest.fixture(scope="module")
def dash_url(dash_db: str) -> Iterator[str]:
    with gateway(dash_db) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def sign_in(page: Page, base: str, username: str = "admin") -> None:
    page.goto(base + "/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")
    page.wait_for_selector("#conn[data-state=live]")


@pytest.fixture
def page(browser: Browser, dash_url: str) -> Iterator[Page]:
    """A signed-in page at 1366x768, Vietnamese."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(pg, dash_url)
    yield pg
    ctx.close()
    assert not errors, errors


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
