"""The operations dashboard in real headless Chromium, served by a real gateway process."""

import csv
import io
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from cli.embedded import Postgres, free_port
from services import auth, feed
from services.alerts import messages
from tests.dashboard.conftest import METRICS, PASSWORD, shot, sign_in
from tests.dashboard.pipeline import set_state
from tests.dashboard.serve import gateway
from tests.fix_pg import clone_db, drop_db

pytestmark = pytest.mark.browser


def api_token(base: str) -> dict[str, str]:
    r = httpx.post(base + "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_login_form_refuses_a_wrong_password_then_signs_in(browser: Browser, dash_url: str) -> None:
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()
    page.goto(dash_url + "/")
    expect(page.locator("input[name=username]")).to_be_visible()
    expect(page.locator("#login button[type=submit]")).to_have_text("Đăng nhập")
    shot(page, "login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong-password")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Sai tên đăng nhập hoặc mật khẩu")
    sign_in(page, dash_url)
    expect(page.locator("#overview")).to_be_visible()
    # The session is a cookie: a reload stays signed in.
    page.reload()
    expect(page.locator("#overview")).to_be_visible()
    ctx.close()


def test_a_locked_account_is_told_it_is_locked_not_that_its_password_is_wrong(
    browser: Browser, dash_url: str, dash_db: str
) -> None:
    with psycopg.connect(dash_db) as conn:
        auth.add_user(conn, "khoa", PASSWORD, "viewer")
        conn.execute("UPDATE users SET locked_until = now() + interval '10 minutes' WHERE username = 'khoa'")
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    page.goto(dash_url + "/")
    page.fill("input[name=username]", "khoa")
    page.fill("input[name=password]", PASSWORD)  # the right password: the lock still holds
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("tạm khóa")
    ctx.close()


def test_overview_counts_match_the_status_api(page: Page, dash_url: str) -> None:
    rows = httpx.get(dash_url + "/api/v1/status", headers=api_token(dash_url)).json()["items"]
    by_state = Counter(r["state"] for r in rows)
    expect(page.locator("[data-count=total]")).to_have_text(str(len(rows)))
    for state in ("online", "offline", "unknown", "maintenance", "auth_failed"):
        expect(page.locator(f"[data-count-state={state}]")).to_have_text(str(by_state[state]))
    # Per village and kind: online/total, and the "Loa hoạt động 2/3 ấp" headline (its villages are ấp).
    for village in ("trung-binh", "tay-binh", "bac-thanh"):
        for kind in ("speaker", "camera", "gateway"):
            mine = [r for r in rows if r["village"] == village and r["kind"] == kind]
            if not mine:
                continue
            cell = page.locator(f"tr[data-village={village}] td[data-kind={kind}]")
            expect(cell).to_have_attribute("data-total", str(len(mine)))
            expect(cell).to_have_attribute("data-online", str(sum(r["state"] == "online" for r in mine)))
    expect(page.locator("[data-kind-summary=speaker]").first).to_contain_text("Loa hoạt động 2/3 ấp")
    expect(page.locator("#changes li[data-change]").first).to_be_visible()
    expect(page.locator("#overview")).to_contain_text("Mất kết nối")
    expect(page.locator("#overview")).to_contain_text("Sai mật khẩu")
    shot(page, "overview")


def test_a_status_change_recolours_the_device_live_without_reload(
    page: Page, dash_url: str, dash_db: str
) -> None:
    page.evaluate("window.__noReload = true")
    page.click("[data-nav=devices]")
    row = page.locator("#device-list [data-device-id=spk-bac-thanh-1]")
    expect(row).to_have_attribute("data-state", "online")
    online_before = int(page.evaluate("document.querySelector('#device-list') && 0") or 0)
    set_state(dash_db, ("spk-bac-thanh-1", "offline"))
    expect(row).to_have_attribute("data-state", "offline")
    expect(row.locator(".pill")).to_have_text("Mất kết nối")
    expect(row.locator(".pill")).to_have_css("background-color", "rgb(254, 226, 226)")
    page.click("[data-nav=overview]")
    expect(page.locator("tr[data-village=bac-thanh] td[data-kind=speaker]")).to_have_attribute(
        "data-online", "0"
    )
    expect(page.locator("[data-kind-summary=speaker]").first).to_contain_text("1/3")
    expect(page.locator("#changes li[data-change=spk-bac-thanh-1]").first).to_have_attribute(
        "data-state", "offline"
    )
    shot(page, "overview-after-change")
    page.click("[data-nav=map]")
    expect(page.locator("[data-map-count=offline]")).to_have_text("2")
    shot(page, "map")
    set_state(dash_db, ("spk-bac-thanh-1", "online"))
    expect(page.locator("[data-map-count=offline]")).to_have_text("1")
    page.click("[data-nav=devices]")
    expect(row).to_have_attribute("data-state", "online")
    expect(row.locator(".pill")).to_have_css("background-color", "rgb(220, 252, 231)")
    assert page.evaluate("window.__noReload") is True
    assert online_before == 0


def test_a_live_change_replaces_only_the_counts_rows_and_items_it_touched(page: Page, dash_db: str) -> None:
    # Under thousands of updates a second the overview must not be rebuilt: what a change leaves
    # alone stays the same element (marked here; a replaced element loses the mark).
    expect(page.locator("#changes li[data-change]").first).to_be_visible()
    page.evaluate(
        "document.querySelectorAll('#kpis > *, #kind-summary > *, #village-table tbody tr, #changes li')"
        ".forEach((e) => { e.dataset.kept = '1'; })"
    )
    try:
        set_state(dash_db, ("eb-ubnd", "online"), metrics=METRICS["eboard"])  # no state change
        set_state(dash_db, ("spk-bac-thanh-1", "offline"))
        expect(page.locator("tr[data-village=bac-thanh] td[data-kind=speaker]")).to_have_attribute(
            "data-online", "0"
        )
        expect(page.locator("#changes li").first).to_have_attribute("data-change", "spk-bac-thanh-1")
        assert page.locator("tr[data-village=bac-thanh]:not([data-kept])").count() == 1
        kept = page.locator("tr[data-village=trung-binh][data-kept], tr[data-village=tay-binh][data-kept]")
        assert kept.count() == 2
        replaced = page.locator("#kpis > :not([data-kept])")
        assert sorted(replaced.evaluate_all("els => els.map((e) => e.dataset.state)")) == [
            "offline",
            "online",
        ]
        assert page.locator("#kind-summary > :not([data-kept])").count() == 1  # speakers
        assert page.locator("#changes li:not([data-kept])").count() == 1
    finally:
        set_state(dash_db, ("spk-bac-thanh-1", "online"))


def test_device_list_filters_and_search(page: Page) -> None:
    page.click("[data-nav=devices]")
    expect(page.locator("#device-count")).to_have_attribute("data-n", "13")
    page.select_option("select[name=kind]", "speaker")
    expect(page.locator("#device-count")).to_have_attribute("data-n", "4")
    page.select_option("select[name=state]", "offline")
    expect(page.locator("#device-list [data-device-id]")).to_have_count(1)
    expect(page.locator("#device-list [data-device-id]")).to_have_attribute(
        "data-device-id", "spk-tay-binh-1"
    )
    page.select_option("select[name=kind]", "")
    page.select_option("select[name=state]", "")
    page.fill("input[name=q]", "chợ")
    expect(page.locator("#device-count")).to_have_attribute("data-n", "2")
    shot(page, "devices")
    # People type without diacritics and in any case: the same two devices.
    for typed in ("cho", "CHỢ", "Cho"):
        page.fill("input[name=q]", typed)
        expect(page.locator("#device-count")).to_have_attribute("data-n", "2")
    page.fill("input[name=q]", "")


def test_device_page_draws_history_charts_events_and_camera_links(page: Page, dash_url: str) -> None:
    page.goto(dash_url + "/#/device/spk-trung-binh-1")
    expect(page.locator("#device-state")).to_have_attribute("data-state", "online")
    expect(page.locator("[data-chart=state] canvas")).to_have_count(1)
    expect(page.locator("[data-chart=volume] canvas")).to_have_count(1)
    assert int(page.locator("#charts").get_attribute("data-buckets") or 0) >= 90
    # The chart has drawn something: its canvas is not blank.
    painted = page.evaluate(
        """() => { const c = document.querySelector('[data-chart=volume] canvas');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert painted > 500
    expect(page.locator("#events tbody tr")).to_have_count(1)
    expect(page.locator("#events")).to_contain_text("Bộ khuếch đại quá nhiệt")
    expect(page.locator("#events")).not_to_contain_text("amp_overheat")
    shot(page, "device")
    page.goto(dash_url + "/#/device/cam-ubnd-1")
    expect(page.locator("#device-links a[data-link=stream_uri]")).to_have_attribute(
        "href", "rtsp://192.0.2.21:554/Streaming/Channels/101"
    )
    expect(page.locator("#device-links a[data-link=snapshot_uri]")).to_be_visible()
    # People's words and numbers: no field names, comma decimals.
    expect(page.locator("#device-links")).to_contain_text("Luồng video (RTSP)")
    expect(page.locator("#device-links")).not_to_contain_text("stream_uri")
    expect(page.locator("#device-metrics")).to_contain_text("0,40 s")


def test_a_notification_link_opens_the_device_page_after_sign_in(browser: Browser, dash_url: str) -> None:
    alert = {
        "rule": "offline",
        "device_id": "spk-tay-binh-1",
        "severity": "critical",
        "since": datetime.now(UTC),
    }
    _title, body = messages.render("open", alert, messages.Place(kind="speaker"), public_url=dash_url)
    link = re.search(r"https?://\S+", body)
    assert link, body
    # A technician taps the link on a phone that is not signed in yet.
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    page.goto(link.group(0))
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login button[type=submit]")
    expect(page.locator("#device-state")).to_have_attribute("data-state", "offline")
    expect(page.locator("#view")).to_contain_text("spk-tay-binh-1")
    ctx.close()


def test_metrics_read_as_labels_with_units_in_vietnamese_then_english(
    page: Page, dash_url: str, dash_db: str
) -> None:
    metrics = {"clients": 14, "uplink_up": True, "cpu_pct": 22, "rssi_dbm": -67, "vendor_fan_rpm": 3200}
    set_state(dash_db, ("wifi-cho", "online"), metrics=metrics)
    page.goto(dash_url + "/#/device/spk-trung-binh-1")
    expect(page.locator("[data-chart=volume] .u-title")).to_have_text("Âm lượng (%)")
    expect(page.locator("[data-chart=temperature_c] .u-title")).to_have_text("Nhiệt độ (°C)")
    page.goto(dash_url + "/#/device/wifi-cho")
    labels = page.locator("#device-metrics")
    expect(labels.locator("[data-metric-label=rssi_dbm]")).to_have_text("Cường độ sóng")
    expect(labels.locator("[data-metric=rssi_dbm]")).to_have_text("-67 dBm")
    expect(labels.locator("[data-metric-label=cpu_pct]")).to_have_text("Tải CPU")
    # A field the page has no name for keeps its key.
    expect(labels.locator("[data-metric-label=vendor_fan_rpm]")).to_have_text("vendor_fan_rpm")
    page.click("[data-nav=devices]")
    row = page.locator("#device-list [data-device-id=spk-trung-binh-1] .metrics")
    expect(row).to_have_text("Âm lượng: 60% · Pin: 97% · Nguồn điện: điện lưới")
    page.click("#lang-switch")
    expect(row).to_have_text("Volume: 60% · Battery: 97% · Power supply: mains")
    page.goto(dash_url + "/#/device/wifi-cho")
    expect(labels.locator("[data-metric-label=rssi_dbm]")).to_have_text("Signal strength")
    expect(labels.locator("[data-metric-label=vendor_fan_rpm]")).to_have_text("vendor_fan_rpm")
    page.goto(dash_url + "/#/device/spk-trung-binh-1")
    expect(page.locator("[data-chart=volume] .u-title")).to_have_text("Volume (%)")
    page.click("#lang-switch")
    expect(page.locator("[data-chart=volume] .u-title")).to_have_text("Âm lượng (%)")


def band_at(page: Page, fraction: float) -> tuple[str, list[int]]:
    """Hover the state band at `fraction` of its width (1: its right edge, the newest bucket): the
    legend's text and the colour drawn there."""
    box = page.locator("[data-chart=state] .u-over").bounding_box()
    assert box is not None
    x, y = box["x"] + min(box["width"] * fraction, box["width"] - 2), box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    text = page.locator("[data-chart=state] .u-legend .u-series").nth(1).locator(".u-value").inner_text()
    rgb = page.evaluate(
        """([x, y]) => { const c = document.querySelector('[data-chart=state] canvas');
                         const r = c.getBoundingClientRect(), k = c.width / r.width;
                         return [...c.getContext('2d').getImageData((x - r.left) * k, (y - r.top) * k, 1, 1).data]; }""",
        [x, y],
    )
    return text, rgb[:3]


def test_history_band_shows_no_data_before_the_device_was_first_heard(page: Page, dash_url: str) -> None:
    # Seeded: first heard 20 minutes ago, offline since. The 24 h band is grey until then, red after.
    page.goto(dash_url + "/#/device/spk-tay-binh-1")
    expect(page.locator("[data-period='24h']")).to_have_class("active")
    expect(page.locator("[data-chart=state] canvas")).to_have_count(1)
    expect(page.locator("[data-chart=state]")).not_to_have_attribute("data-no-data", "0")
    text, rgb = band_at(page, 0.1)
    assert text == "Không có dữ liệu"
    assert rgb == [203, 213, 225]  # grey, not the offline red
    text, rgb = band_at(page, 1)
    assert text == "0%"
    assert rgb == [220, 38, 38]
    expect(page.locator(".band-key [data-key=no-data]")).to_have_text("Không có dữ liệu")
    shot(page, "device-no-data")
    page.click("#lang-switch")
    expect(page.locator("[data-chart=state] canvas")).to_have_count(1)
    assert band_at(page, 0.1)[0] == "No data"
    page.click("#lang-switch")


def test_state_reasons_and_event_names_read_in_vietnamese(page: Page) -> None:
    said = page.evaluate(
        """async () => { const m = await import('/ui/js/i18n.js');
             return [m.reasonText('no status for 1200 s'), m.reasonText('device reported offline (last will)'),
                     m.reasonText('something new'), m.eventLabel('boot'), m.eventLabel('vendor_thing'),
                     m.eventMessage('tamper', 'camera view tampered with', {active: true}),
                     m.eventMessage('tamper', 'camera view back to normal', {active: false}),
                     m.eventMessage('amp_overheat', 'Bộ khuếch đại quá nhiệt', {})]; }"""
    )
    assert said == [
        "không nhận được tin trong 1.200 giây",
        "thiết bị ngắt kết nối (máy chủ nhận tin báo tự động của thiết bị)",
        "lý do khác",  # a reason the catalogue does not know: a word, not the server's English
        "Khởi động",
        "vendor_thing",
        "Camera bị che, xoay hoặc chói",
        "Hình ảnh camera trở lại bình thường",
        "Bộ khuếch đại quá nhiệt",
    ]


def test_api_docs_render_without_internet(page: Page, dash_url: str) -> None:
    page.goto(dash_url + "/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=20000)
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/status")


def test_language_switch_turns_the_page_english_and_back(page: Page) -> None:
    expect(page.locator("[data-nav=overview]")).to_have_text("Tổng quan")
    expect(page.locator(".kpi[data-state=online] .kpi-label")).to_have_text("Trực tuyến")
    page.click("#lang-switch")
    expect(page.locator("[data-nav=overview]")).to_have_text("Overview")
    for state, label in (
        ("online", "Online"),
        ("offline", "Offline"),
        ("unknown", "Unknown"),
        ("maintenance", "Maintenance"),
        ("auth_failed", "Auth failed"),
    ):
        expect(page.locator(f".kpi[data-state={state}] .kpi-label")).to_have_text(label)
    expect(page.locator("[data-kind-summary=speaker]").first).to_contain_text(
        "Speakers working in 2/3 villages"
    )
    shot(page, "overview-en")
    page.click("#lang-switch")
    expect(page.locator(".kpi[data-state=offline] .kpi-label")).to_have_text("Mất kết nối")


def test_device_list_downloads_a_csv_a_clerk_can_open(page: Page) -> None:
    page.click("[data-nav=devices]")
    page.select_option("select[name=kind]", "speaker")
    with page.expect_download() as info:
        page.click("#devices-csv")
    raw = Path(info.value.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads Vietnamese right
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == 4  # the same rows as the page (filtered to speakers)
    row = next(r for r in rows if r["Mã thiết bị"] == "spk-tay-binh-1")
    assert (row["Loại"], row["Trạng thái"], row["Ấp"]) == ("Loa", "Mất kết nối", "Ấp Tây Bình")
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", row["Lần cuối nhận tin"]), row
    # One column per metric, named for people, values as numbers.
    assert row["Âm lượng (%)"] == "60"
    assert "metrics" not in rows[0] and "device_id" not in rows[0]


def test_availability_report_downloads_as_csv(page: Page) -> None:
    page.click("[data-nav=report]")
    expect(page.locator("#report-table tbody tr[data-row]")).to_have_count(3)
    expect(page.locator("#report-table")).to_contain_text("Ấp Trung Bình")
    # Names in the order people count them, durations in words, percentages with comma decimals.
    names = page.locator("#report-table tbody tr[data-row] th").all_inner_texts()
    assert names == ["Ấp Bắc Thạnh", "Ấp Tây Bình", "Ấp Trung Bình"], names
    cells = page.locator("#report-table tbody tr[data-row] td").all_inner_texts()
    assert any(re.fullmatch(r"\d+ (phút|giờ)( \d+ phút)?", c) for c in cells), cells
    assert not any(re.fullmatch(r"\d+\.\d", c) for c in cells), cells
    expect(page.locator("#report-table")).to_contain_text(",")
    shot(page, "report")
    with page.expect_download() as info:
        page.click("#report-csv")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    # The page's rows in its order, for people: names, Vietnamese headers (tests/gateway/test_report_csv.py).
    assert [r["Ấp"] for r in rows] == names
    assert "Tỷ lệ sẵn sàng (%)" in rows[0] and "availability_pct" not in rows[0]
    # decimals with a comma, as a spreadsheet set to vi-VN reads numbers (a dot would make them text)
    assert not [v for r in rows for v in r.values() if re.fullmatch(r"-?\d+\.\d+", v or "")], rows
    page.select_option("select[name=group_by]", "kind")
    expect(page.locator("#report-table tbody tr[data-row=speaker]")).to_contain_text("2/3")
    # Days read and typed as dd/MM/yyyy, whatever the browser's locale; a day that does not exist is refused.
    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%d/%m/%Y")
    expect(page.locator("#report-form input[name=to]")).to_have_value(today)
    page.fill("#report-form input[name=from]", "31/02/2026")
    page.click("#report-form button[type=submit]")
    expect(page.locator("#report-form input[name=from]")).to_have_attribute("aria-invalid", "")


def test_phone_layout_shows_overview_and_list(browser: Browser, dash_url: str) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    sign_in(page, dash_url)
    expect(page.locator("[data-count=total]")).to_have_text("13")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    shot(page, "phone-overview")
    page.click("[data-nav=devices]")
    expect(page.locator("#device-list [data-device-id]").first).to_be_visible()
    shot(page, "phone-devices")
    ctx.close()


def seed_many(db_url: str, n: int) -> None:
    """n devices in 25 villages, all online, by plain SQL (an import of thousands is slower)."""
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO communes (id, name) VALUES ('xa-lon', 'Xã Lớn')")
        conn.execute(
            "INSERT INTO villages (commune_id, id, name)"
            " SELECT 'xa-lon', 'xom-' || v, 'Xóm ' || v FROM generate_series(1, 25) v"
        )
        conn.execute(
            "INSERT INTO devices (id, commune_id, village_id, kind, name, lat, lon)"
            " SELECT 'dev-' || i, 'xa-lon', 'xom-' || (i %% 25 + 1),"
            " (ARRAY['camera','speaker','eboard','wifi','gateway'])[i %% 5 + 1], 'Thiết bị ' || i,"
            " 10.2 + (i %% 25 / 5) * 0.01 + (i %% 7) * 0.0004, 105.2 + (i %% 5) * 0.01 + (i %% 11) * 0.0003"
            " FROM generate_series(1, %s) i",
            (n,),
        )
        conn.execute(
            "INSERT INTO device_state (device_id, state, last_seen, metrics)"
            " SELECT id, 'online', now(), '{\"volume\": 50}' FROM devices"
        )


def bulk_offline(db_url: str, ids: list[str]) -> None:
    """One ingest-like transaction turning many devices offline (one feed row, many messages)."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "UPDATE device_state s SET state = 'offline', since = %s, reason = 'bulk' FROM devices d"
            " WHERE d.id = s.device_id AND s.device_id = ANY(%s)"
            " RETURNING d.id, d.commune_id, d.village_id, d.kind",
            (now, ids),
        ).fetchall()
        feed.publish(
            conn,
            [
                {
                    "type": "status",
                    "device_id": r[0],
                    "commune": r[1],
                    "village": r[2],
                    "kind": r[3],
                    "state": "offline",
                    "since": now.isoformat(),
                    "last_seen": now.isoformat(),
                    "reason": "bulk",
                    "metrics": {"volume": 50},
                }
                for r in rows
            ],
        )


def test_five_thousand_devices_stay_virtualised_through_bulk_updates(
    browser: Browser, pg_server: Postgres
) -> None:
    name = clone_db(pg_server)
    url = pg_server.url(name)
    try:
        seed_many(url, 5000)
        with psycopg.connect(url) as conn:
            auth.add_user(conn, "admin", PASSWORD, "admin")
        with gateway(url) as base:
            ctx = browser.new_context(viewport={"width": 1366, "height": 768})
            page = ctx.new_page()
            sign_in(page, base)
            expect(page.locator("[data-count=total]")).to_have_text("5000")
            # Villages in number order: Xóm 1, Xóm 2, ... Xóm 10.
            expect(page.locator("#village-table tbody th").nth(1)).to_have_text("Xóm 2")
            page.click("[data-nav=devices]")
            expect(page.locator("#device-count")).to_have_attribute("data-n", "5000")
            # Only the rows in view (plus a margin) exist.
            assert page.locator("#device-list .vrow").count() < 60
            page.evaluate("window.__rows = document.querySelectorAll('#device-list .vrow').length")
            bulk_offline(url, [f"dev-{i}" for i in range(1, 2001)])
            expect(page.locator("#device-list .vrow[data-state=offline]").first).to_be_visible()
            page.click("[data-nav=overview]")
            expect(page.locator("[data-count-state=offline]")).to_have_text("2000")
            expect(page.locator("[data-count-state=online]")).to_have_text("3000")
            page.click("[data-nav=devices]")
            page.locator("#device-list").evaluate("el => el.scrollTop = el.scrollHeight")
            expect(page.locator("#device-list .vrow[data-device-id=dev-4999]")).to_be_visible()
            assert page.locator("#device-list .vrow").count() < 60
            shot(page, "devices-5000")
            page.click("[data-nav=map]")
            expect(page.locator("[data-map-count=offline]")).to_have_text("2000")
            shot(page, "map-5000")
            ctx.close()
    finally:
        drop_db(pg_server, name)


def test_page_reconnects_and_resumes_with_since_after_a_gateway_restart(
    browser: Browser, dash_db: str
) -> None:
    port = free_port()
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()
    try:
        with gateway(dash_db, port=port) as base:
            sign_in(page, base)
            page.click("[data-nav=devices]")
            row = page.locator("#device-list [data-device-id=eb-ubnd]")
            expect(row).to_have_attribute("data-state", "online")
            page.evaluate("window.__noReload = true")
        expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
        # Said plainly: the numbers are dimmed and the banner says since when they are not current.
        expect(page.locator("#stale")).to_be_visible()
        expect(page.locator("#stale")).to_contain_text("Mất kết nối máy chủ")
        expect(page.locator("#stale")).to_contain_text(
            datetime.now().astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%d/%m/%Y")
        )
        expect(page.locator("#view")).to_have_class("stale")
        shot(page, "stale")
        # Missed while no gateway ran.
        set_state(dash_db, ("eb-ubnd", "offline"))
        with gateway(dash_db, port=port):
            expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=20000)
            expect(row).to_have_attribute("data-state", "offline")
            expect(page.locator("#stale")).to_be_hidden()
            expect(page.locator("#view")).not_to_have_class("stale")
            assert page.evaluate("window.__noReload") is True
        assert "/ws/live?batch=1&since=" in gateway.last_log  # type: ignore[attr-defined]
    finally:
        set_state(dash_db, ("eb-ubnd", "online"))
        ctx.close()


def test_alert_messages_open_and_resolve_on_the_overview(page: Page, dash_db: str) -> None:
    expect(page.locator("#alert-count")).to_have_text("0")
    alert = {
        "type": "alert",
        "id": 9001,
        "rule": "offline",
        "device_id": "spk-tay-binh-1",
        "commune": "thoai-giang",
        "village": "tay-binh",
        "severity": "critical",
        "state": "open",
        "message": "Loa ấp Tây Bình 1 mất kết nối",
        "opened_at": datetime.now(UTC).isoformat(),
        "acked_at": None,
        "acked_by": None,
        "resolved_at": None,
        "affected": [],
    }
    with psycopg.connect(dash_db) as conn:
        feed.publish(conn, [dict(alert)])
    expect(page.locator("#alerts li[data-alert-id='9001']")).to_contain_text("Loa ấp Tây Bình 1 mất kết nối")
    expect(page.locator("#alert-count")).to_have_text("1")
    expect(page.locator("#nav-alerts-n")).to_have_text("1")
    shot(page, "overview-alert")
    # Acknowledged: still listed (marked), no longer counted as open — on the panel as on the tab.
    acked = {**alert, "state": "acked", "acked_at": datetime.now(UTC).isoformat(), "acked_by": "admin"}
    with psycopg.connect(dash_db) as conn:
        feed.publish(conn, [acked])
    expect(page.locator("#alerts li[data-alert-id='9001']")).to_have_attribute("data-state", "acked")
    expect(page.locator("#alert-count")).to_have_text("0")
    expect(page.locator("#nav-alerts-n")).to_be_hidden()
    with psycopg.connect(dash_db) as conn:
        feed.publish(conn, [{**alert, "state": "resolved", "resolved_at": datetime.now(UTC).isoformat()}])
    expect(page.locator("#alerts li[data-alert-id='9001']")).to_have_count(0)
    expect(page.locator("#alert-count")).to_have_text("0")
