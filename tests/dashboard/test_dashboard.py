"""The operations dashboard in real headless Chromium, served by a real gateway process."""

import csv
import io
from collections import Counter
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.dashboard.conftest import PASSWORD, shot, sign_in
from tests.dashboard.pipeline import set_state

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


def test_overview_counts_match_the_status_api(page: Page, dash_url: str) -> None:
    rows = httpx.get(dash_url + "/api/v1/status", headers=api_token(dash_url)).json()["items"]
    by_state = Counter(r["state"] for r in rows)
    expect(page.locator("[data-count=total]")).to_have_text(str(len(rows)))
    for state in ("online", "offline", "unknown", "maintenance", "auth_failed"):
        expect(page.locator(f"[data-count-state={state}]")).to_have_text(str(by_state[state]))
    # Per village and kind: online/total, and the "Loa hoạt động 2/3 xóm" headline.
    for village in ("trung-binh", "tay-binh", "bac-thanh"):
        for kind in ("speaker", "camera", "gateway"):
            mine = [r for r in rows if r["village"] == village and r["kind"] == kind]
            if not mine:
                continue
            cell = page.locator(f"tr[data-village={village}] td[data-kind={kind}]")
            expect(cell).to_have_attribute("data-total", str(len(mine)))
            expect(cell).to_have_attribute("data-online", str(sum(r["state"] == "online" for r in mine)))
    expect(page.locator("[data-kind-summary=speaker]").first).to_contain_text("Loa hoạt động 2/3 xóm")
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
    shot(page, "device")
    page.goto(dash_url + "/#/device/cam-ubnd-1")
    expect(page.locator("#device-links a[data-link=stream_uri]")).to_have_attribute(
        "href", "rtsp://192.0.2.21:554/Streaming/Channels/101"
    )
    expect(page.locator("#device-links a[data-link=snapshot_uri]")).to_be_visible()


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


def test_availability_report_downloads_as_csv(page: Page) -> None:
    page.click("[data-nav=report]")
    expect(page.locator("#report-table tbody tr[data-row]")).to_have_count(3)
    expect(page.locator("#report-table")).to_contain_text("Ấp Trung Bình")
    shot(page, "report")
    with page.expect_download() as info:
        page.click("#report-csv")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["village"] for r in rows} == {"trung-binh", "tay-binh", "bac-thanh"}
    assert "availability_pct" in rows[0]
    page.select_option("select[name=group_by]", "kind")
    expect(page.locator("#report-table tbody tr[data-row=speaker]")).to_contain_text("2/3")


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
