"""The alerts and maintenance views in real headless Chromium, against a real gateway process."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from services import auth
from tests.dashboard.conftest import PASSWORD, shot, sign_in
from tests.dashboard.pipeline import open_alert

pytestmark = pytest.mark.browser
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture(scope="module")
def api(dash_url: str, dash_db: str) -> Iterator[httpx.Client]:
    """The operator API as admin; a technician `ky-thuat` exists to be assigned alerts."""
    with psycopg.connect(dash_db) as conn:
        auth.add_user(conn, "ky-thuat", PASSWORD, "technician")
    with httpx.Client(base_url=dash_url) as client:
        r = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        r.raise_for_status()
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        yield client


def resolve_open_alerts(api: httpx.Client) -> None:
    for a in api.get("/api/v1/alerts", params={"state": "open,acked"}).json()["items"]:
        api.post(f"/api/v1/alerts/{a['id']}/resolve").raise_for_status()


def test_alerts_view_assigns_acknowledges_with_a_comment_and_resolves(
    page: Page, dash_db: str, api: httpx.Client
) -> None:
    alert_id = open_alert(
        dash_db,
        "offline",
        "gw-tay-binh",
        message="Router ấp Tây Bình mất kết nối",
        affected=["cam-ben-do", "spk-tay-binh-1"],
    )
    try:
        page.click("[data-nav=alerts]")
        card = page.locator(f"#alert-list article[data-alert-id='{alert_id}']")
        expect(card).to_contain_text("Router ấp Tây Bình mất kết nối")
        expect(card.locator(".alert-rule")).to_have_text("Mất kết nối")
        expect(card.locator("[data-field=village]")).to_contain_text("Ấp Tây Bình")
        expect(card.locator("[data-field=device] a")).to_have_attribute("href", "#/device/gw-tay-binh")
        expect(card.locator(".affected a")).to_have_text(["Camera bến đò", "Loa ấp Tây Bình 1"])
        expect(page.locator("#nav-alerts-n")).to_have_text("1")
        opened = datetime.fromisoformat(api.get(f"/api/v1/alerts/{alert_id}").json()["opened_at"])
        expect(card.locator("[data-field=opened_at] time")).to_contain_text(f"{opened.astimezone(TZ):%H:%M}")
        shot(page, "alerts")

        card.locator("[data-action=assign]").click()
        # The picker offers the users who can handle an alert, technicians first; viewers are left out.
        picks = page.locator("#alert-users option")
        expect(picks).to_have_count(2)
        assert [o.get_attribute("value") for o in picks.all()] == ["ky-thuat", "admin"]
        expect(picks.nth(0)).to_have_text("ky-thuat — Kỹ thuật viên")
        expect(picks.nth(1)).to_have_text("admin — Quản trị viên (tôi)")
        assert card.locator("input[name=username]").get_attribute("list") == "alert-users"
        card.locator("input[name=username]").fill("ky-thuat")
        card.locator("form button[type=submit]").click()
        expect(card.locator("[data-field=assignee]")).to_contain_text("ky-thuat")
        expect(card.locator(".alert-panel")).to_be_hidden()

        card.locator("[data-action=ack]").click()
        card.locator("input[name=comment]").fill("Đã báo điện lực, đang kiểm tra")
        card.locator("form button[type=submit]").click()
        # Acknowledged: it leaves the open tab and waits on the acknowledged one.
        expect(card).to_have_count(0)
        expect(page.locator("#nav-alerts-n")).to_be_hidden()
        page.click("[data-tab=acked]")
        expect(card.locator("[data-field=acked_by]")).to_contain_text("admin")
        expect(card.locator("[data-field=comment]")).to_contain_text("Đã báo điện lực, đang kiểm tra")
        expect(card.locator("[data-action=ack]")).to_have_count(0)
        shot(page, "alerts-acked")

        card.locator("[data-action=resolve]").click()
        card.locator("form button[type=submit]").click()
        expect(card).to_have_count(0)
        page.click("[data-tab=resolved]")
        expect(card.locator("[data-field=resolved_by]")).to_contain_text("admin")
        expect(card.locator("[data-action]")).to_have_count(0)
        shot(page, "alerts-resolved")

        a = api.get(f"/api/v1/alerts/{alert_id}").json()
        assert (a["state"], a["assignee"], a["acked_by"], a["resolved_by"]) == (
            "resolved",
            "ky-thuat",
            "admin",
            "admin",
        )
        assert a["comment"] == "Đã báo điện lực, đang kiểm tra"
        assert [h["action"] for h in a["history"] if h["actor"] == "admin"] == [
            "assigned",
            "acked",
            "resolved",
        ]
    finally:
        resolve_open_alerts(api)


def test_an_assignment_to_no_such_user_is_refused_in_the_card(
    page: Page, dash_db: str, api: httpx.Client
) -> None:
    alert_id = open_alert(dash_db, "camera_tamper", "cam-ubnd-1", message="Camera cổng UBND bị che")
    try:
        page.click("[data-nav=alerts]")
        card = page.locator(f"#alert-list article[data-alert-id='{alert_id}']")
        card.locator("[data-action=assign]").click()
        card.locator("input[name=username]").fill("khong-co-ai")
        card.locator("form button[type=submit]").click()
        error = card.locator(".alert-panel .error")
        expect(error).to_have_text(
            "Không thực hiện được: không có tài khoản «khong-co-ai» — hãy chọn một người trong danh sách"
        )
        expect(card.locator("input[name=username]")).to_have_attribute("aria-invalid", "true")
        assert api.get(f"/api/v1/alerts/{alert_id}").json()["assignee"] is None
        # Picked from the list, the same card assigns.
        card.locator("input[name=username]").fill("ky-thuat")
        expect(card.locator("input[name=username]")).not_to_have_attribute("aria-invalid", "true")
        card.locator("form button[type=submit]").click()
        expect(card.locator("[data-field=assignee]")).to_contain_text("ky-thuat")
    finally:
        resolve_open_alerts(api)


def test_several_open_alerts_are_acknowledged_at_once(page: Page, dash_db: str, api: httpx.Client) -> None:
    ids = [
        open_alert(dash_db, "offline", device, message=f"{device} mất kết nối")
        for device in ("spk-bac-thanh-1", "gw-bac-thanh", "wifi-bac-thanh")
    ]
    try:
        page.click("[data-nav=alerts]")
        for i in ids:
            expect(page.locator(f"#alert-list article[data-alert-id='{i}']")).to_be_visible()
        expect(page.locator("#bulk-ack")).to_be_disabled()
        page.locator("#pick-all").check()
        expect(page.locator("#bulk-ack")).to_have_text("Xác nhận 3 cảnh báo đã chọn")
        page.locator(f"#alert-list article[data-alert-id='{ids[2]}'] input[data-pick]").uncheck()
        expect(page.locator("#bulk-ack")).to_have_text("Xác nhận 2 cảnh báo đã chọn")
        page.click("#bulk-ack")
        expect(page.locator("#bulk-msg")).to_have_text("Đã xác nhận 2 cảnh báo")
        states = {
            a["id"]: a["state"]
            for a in api.get("/api/v1/alerts", params={"state": "open,acked"}).json()["items"]
        }
        assert [states[i] for i in ids] == ["acked", "acked", "open"]
        expect(page.locator("[data-tab-count=open]")).to_have_text("1")
    finally:
        resolve_open_alerts(api)


def test_alerts_are_searched_without_diacritics_and_one_opens_its_devices_maintenance(
    page: Page, dash_db: str, api: httpx.Client
) -> None:
    ids = {
        device: open_alert(dash_db, "offline", device, message=f"{device} mất kết nối")
        for device in ("spk-bac-thanh-1", "gw-tay-binh")
    }
    try:
        page.click("[data-nav=alerts]")
        search = page.locator("#alert-search")
        expect(search).to_have_attribute("placeholder", re.compile("không cần dấu"))
        cards = page.locator("#alert-list article")
        expect(cards).to_have_count(2)
        # typed as people type: no diacritics, any case, words in any order
        search.fill("BAC thanh loa")
        expect(cards).to_have_count(1)
        expect(cards.first).to_have_attribute("data-alert-id", str(ids["spk-bac-thanh-1"]))
        search.fill("mat ket noi tay binh")
        expect(cards).to_have_count(1)
        expect(cards.first).to_have_attribute("data-alert-id", str(ids["gw-tay-binh"]))
        search.fill("xyz không có")
        expect(cards).to_have_count(0)
        expect(page.locator("#alert-list .empty")).to_have_text(
            "Không có cảnh báo nào khớp với từ khóa đã gõ"
        )
        search.fill("")
        expect(cards).to_have_count(2)
        # an alert's own maintenance button opens the form on its device
        page.locator(f"#alert-list article[data-alert-id='{ids['gw-tay-binh']}'] [data-maintenance]").click()
        expect(page.locator("#mt-form select[name=device_id]")).to_have_value("gw-tay-binh")
    finally:
        resolve_open_alerts(api)


def test_alerts_raised_and_resolved_while_the_view_is_open_appear_without_reload(
    page: Page, dash_db: str, api: httpx.Client
) -> None:
    page.click("[data-nav=alerts]")
    expect(page.locator("#alert-list")).to_have_attribute("data-showing", "open")
    page.evaluate("window.__noReload = true")
    alert_id = open_alert(
        dash_db,
        "speaker_battery_low",
        "spk-bac-thanh-1",
        severity="warning",
        message="Loa ấp Bắc Thạnh 1 đang chạy pin, còn 15%",
    )
    try:
        card = page.locator(f"#alert-list article[data-alert-id='{alert_id}']")
        expect(card.locator(".alert-rule")).to_have_text("Loa sắp hết pin")
        expect(card).to_have_attribute("data-severity", "warning")
        expect(page.locator("[data-tab-count=open]")).to_have_text("1")
        page.click("[data-tab=resolved]")
        expect(page.locator("#alert-list")).to_have_attribute("data-showing", "resolved")
        expect(card).to_have_count(0)
        api.post(f"/api/v1/alerts/{alert_id}/resolve").raise_for_status()
        expect(card).to_be_visible()
        expect(page.locator("[data-tab-count=open]")).to_have_text("0")
        assert page.evaluate("window.__noReload") is True
    finally:
        resolve_open_alerts(api)


def test_maintenance_from_the_device_page_starts_now_for_two_hours(page: Page, api: httpx.Client) -> None:
    page.goto(page.url.split("#")[0] + "#/device/cam-cho")
    page.click("#device-maintenance")
    form = page.locator("#mt-form")
    expect(form.locator("select[name=device_id]")).to_have_value("cam-cho")
    start = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh"))
    expect(form.locator("input[name=starts_at]")).to_have_value(re.compile(start.strftime("%d/%m/%Y")))
    form.locator("[data-quick=tomorrow7]").click()
    tomorrow = (start + timedelta(days=1)).strftime("%d/%m/%Y")
    expect(form.locator("input[name=ends_at]")).to_have_value(f"{tomorrow} 07:00")
    form.locator('[data-quick="2h"]').click()
    form.locator("input[name=reason]").fill("Lau ống kính")
    form.locator("button[type=submit]").click()
    expect(page.locator("#mt-notice")).to_contain_text("Đã tạo lịch bảo trì")
    (w,) = [x for x in api.get("/api/v1/maintenance").json()["items"] if x["reason"] == "Lau ống kính"]
    starts, ends = datetime.fromisoformat(w["starts_at"]), datetime.fromisoformat(w["ends_at"])
    assert w["device_id"] == "cam-cho" and ends - starts == timedelta(hours=2)
    assert abs((starts - datetime.now(UTC)).total_seconds()) < 600  # from now, not the next full hour
    api.delete(f"/api/v1/maintenance/{w['id']}").raise_for_status()


def test_maintenance_form_creates_refuses_and_deletes_a_window(page: Page, api: httpx.Client) -> None:
    page.click("[data-nav=maintenance]")
    form = page.locator("#mt-form")
    expect(form).to_be_visible()
    expect(page.locator("#mt-tz")).to_contain_text("Asia/Ho_Chi_Minh")
    # Found by typing without diacritics; picked from what is left.
    form.locator("input[name=device_q]").fill("loa trung binh 2")
    expect(form.locator("select[name=device_id]")).to_have_value("spk-trung-binh-2")
    # Typed as dd/MM/yyyy HH:mm on the commune's clock (UTC+7), whatever zone or locale the browser has.
    form.locator("input[name=starts_at]").fill("02/01/2030 08:00")
    form.locator("input[name=ends_at]").fill("02/01/2030 11:30")
    form.locator("input[name=reason]").fill("Thay bộ nguồn loa")
    form.locator("button[type=submit]").click()
    expect(page.locator("#mt-notice")).to_contain_text("Đã tạo lịch bảo trì")
    windows = api.get("/api/v1/maintenance").json()["items"]
    (w,) = [x for x in windows if x["reason"] == "Thay bộ nguồn loa"]
    assert w["device_id"] == "spk-trung-binh-2"
    assert datetime.fromisoformat(w["starts_at"]) == datetime(2030, 1, 2, 1, 0, tzinfo=UTC)
    assert datetime.fromisoformat(w["ends_at"]) == datetime(2030, 1, 2, 4, 30, tzinfo=UTC)
    row = page.locator(f"#mt-table tr[data-window-id='{w['id']}']")
    expect(row).to_contain_text("Loa ấp Trung Bình 2")
    expect(row).to_contain_text("08:00")
    expect(row).to_contain_text("11:30")
    expect(row).to_contain_text("Một lần")
    expect(row.locator(".mt-status")).to_have_text("Sắp tới")

    # A village-wide window that repeats weekly.
    form.locator("input[name=scope][value=area]").check()
    expect(form.locator("select[name=device_id]")).to_be_hidden()
    form.locator("select[name=village]").select_option("bac-thanh")
    form.locator("select[name=kind]").select_option("speaker")
    form.locator("input[name=starts_at]").fill("07/01/2030 22:00")
    form.locator("input[name=ends_at]").fill("07/01/2030 23:00")
    form.locator("input[name=reason]").fill("Bảo dưỡng định kỳ")
    # Repeat chosen in words: weekly, on Monday (no RRULE to type).
    form.locator("select[name=repeat]").select_option("weekly")
    form.locator("input[name=byday][value=MO]").check()
    form.locator("button[type=submit]").click()
    weekly = page.locator("#mt-table tr", has_text="Bảo dưỡng định kỳ")
    expect(weekly).to_contain_text("Ấp Bắc Thạnh · Loa")
    expect(weekly).to_contain_text("hằng tuần: Thứ Hai")
    expect(weekly).not_to_contain_text("FREQ=")
    shot(page, "maintenance")

    # The API's refusal is shown next to the form, in Vietnamese, on the field it is about.
    count = len(api.get("/api/v1/maintenance").json()["items"])
    form.locator("input[name=starts_at]").fill("01/02/2030 10:00")
    form.locator("input[name=ends_at]").fill("01/02/2030 09:00")
    form.locator("button[type=submit]").click()
    error = page.locator("#mt-error")
    expect(error).to_contain_text("Thời điểm kết thúc phải sau thời điểm bắt đầu")
    expect(error).not_to_contain_text("ends_at")  # the server's words stay in the log
    expect(form.locator("input[name=ends_at]")).to_have_attribute("aria-invalid", "true")
    shot(page, "maintenance-refused")
    form.locator("input[name=ends_at]").fill("01/02/2030 12:00")
    form.locator("select[name=repeat]").select_option("custom")
    form.locator("input[name=rrule]").fill("FREQ=SOMETIMES")
    form.locator("button[type=submit]").click()
    expect(error).to_contain_text("Quy tắc lặp (RRULE) không hợp lệ")
    expect(form.locator("input[name=rrule]")).to_have_attribute("aria-invalid", "true")
    expect(form.locator("input[name=ends_at]")).not_to_have_attribute("aria-invalid", "true")
    # A time that is not a date is refused in the page, before anything is sent.
    form.locator("select[name=repeat]").select_option("")
    form.locator("input[name=starts_at]").fill("2/30/2030 25:00")
    form.locator("button[type=submit]").click()
    expect(error).to_contain_text("ngày/tháng/năm")
    expect(form.locator("input[name=starts_at]")).to_have_attribute("aria-invalid", "true")
    assert len(api.get("/api/v1/maintenance").json()["items"]) == count

    # Delete asks first; "Hủy" keeps the window.
    row.locator("[data-delete]").click()
    expect(row).to_contain_text("Xóa lịch này?")
    row.locator("[data-cancel-delete]").click()
    expect(row.locator("[data-delete]")).to_be_visible()
    row.locator("[data-delete]").click()
    row.locator("[data-confirm-delete]").click()
    expect(row).to_have_count(0)
    expect(page.locator("#mt-notice")).to_contain_text(f"Đã xóa lịch bảo trì #{w['id']}")
    assert w["id"] not in [x["id"] for x in api.get("/api/v1/maintenance").json()["items"]]
    for x in api.get("/api/v1/maintenance").json()["items"]:
        api.delete(f"/api/v1/maintenance/{x['id']}").raise_for_status()


def test_windows_created_and_deleted_elsewhere_appear_and_go_without_reload(
    page: Page, api: httpx.Client
) -> None:
    page.click("[data-nav=maintenance]")
    expect(page.locator("#mt-table")).to_have_attribute("data-n", "0")
    page.evaluate("window.__noReload = true")
    # Another admin's delete question stays open while windows come and go around it.
    other = api.post(
        "/api/v1/maintenance",
        json={
            "device_id": "cam-cho",
            "starts_at": "2030-04-01T01:00:00Z",
            "ends_at": "2030-04-01T02:00:00Z",
            "reason": "Lau ống kính",
        },
    ).json()
    kept = page.locator(f"#mt-table tr[data-window-id='{other['id']}']")
    expect(kept).to_contain_text("Camera chợ")
    kept.locator("[data-delete]").click()
    expect(kept).to_contain_text("Xóa lịch này?")
    try:
        w = api.post(
            "/api/v1/maintenance",
            json={
                "commune": "thoai-giang",
                "village": "tay-binh",
                "kind": "speaker",
                "starts_at": "2020-01-01T00:00:00Z",
                "ends_at": "2040-01-01T00:00:00Z",
                "reason": "Kéo lại dây loa",
            },
        ).json()
        row = page.locator(f"#mt-table tr[data-window-id='{w['id']}']")
        expect(row).to_contain_text("Ấp Tây Bình · Loa")
        expect(row).to_contain_text("Kéo lại dây loa")
        expect(row.locator(".mt-status")).to_have_text("Đang diễn ra")
        expect(page.locator("#mt-count")).to_have_text("2")
        expect(kept).to_contain_text("Xóa lịch này?")
        api.delete(f"/api/v1/maintenance/{w['id']}").raise_for_status()
        expect(row).to_have_count(0)
        expect(page.locator("#mt-count")).to_have_text("1")
        api.delete(f"/api/v1/maintenance/{other['id']}").raise_for_status()
        expect(kept).to_have_count(0)
        expect(page.locator("#mt-empty")).to_be_visible()
        assert page.evaluate("window.__noReload") is True
    finally:
        for x in api.get("/api/v1/maintenance").json()["items"]:
            api.delete(f"/api/v1/maintenance/{x['id']}").raise_for_status()


@pytest.mark.parametrize(
    ("username", "actions"),
    [("viewer", []), ("ky-thuat", ["ack", "assign", "resolve"])],
)
def test_each_role_sees_only_the_buttons_the_api_lets_it_use(
    browser: Browser, dash_url: str, dash_db: str, api: httpx.Client, username: str, actions: list[str]
) -> None:
    # Viewers only look; technicians handle alerts; only administrators change maintenance windows.
    alert_id = open_alert(
        dash_db, "uplink_down", "wifi-cho", severity="warning", message="Wi-Fi chợ mất uplink"
    )
    api.post(
        "/api/v1/maintenance",
        json={
            "device_id": "eb-ubnd",
            "starts_at": "2030-03-01T01:00:00Z",
            "ends_at": "2030-03-01T02:00:00Z",
            "reason": "Lau màn hình",
        },
    ).raise_for_status()
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()
    try:
        sign_in(page, dash_url, username)
        page.click("[data-nav=alerts]")
        card = page.locator(f"#alert-list article[data-alert-id='{alert_id}']")
        expect(card.locator(".alert-rule")).to_have_text("Mất đường truyền Internet")
        expect(card.locator("[data-action]")).to_have_count(len(actions))
        for action in actions:
            expect(card.locator(f"[data-action={action}]")).to_be_visible()
        expect(page.locator("#alerts-view-only")).to_have_count(0 if actions else 1)
        page.click("[data-nav=maintenance]")
        expect(page.locator("#mt-table tr", has_text="Lau màn hình")).to_be_visible()
        expect(page.locator("#mt-view-only")).to_be_visible()
        expect(page.locator("#mt-form")).to_have_count(0)
        expect(page.locator("[data-delete]")).to_have_count(0)
    finally:
        ctx.close()
        resolve_open_alerts(api)
        for x in api.get("/api/v1/maintenance").json()["items"]:
            api.delete(f"/api/v1/maintenance/{x['id']}").raise_for_status()


def test_alerts_and_maintenance_fit_a_phone_and_switch_to_english(
    browser: Browser, dash_url: str, dash_db: str, api: httpx.Client
) -> None:
    alert_id = open_alert(
        dash_db,
        "offline",
        "gw-bac-thanh",
        message="Router ấp Bắc Thạnh mất kết nối",
        affected=["spk-bac-thanh-1", "wifi-bac-thanh"],
    )
    ctx = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    try:
        sign_in(page, dash_url)
        page.goto(dash_url + "/#/alerts")
        card = page.locator(f"#alert-list article[data-alert-id='{alert_id}']")
        expect(card.locator("[data-action=ack]")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        shot(page, "phone-alerts")
        page.goto(dash_url + "/#/maintenance")
        expect(page.locator("#mt-form")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        shot(page, "phone-maintenance")
        page.click("#lang-switch")
        expect(page.locator("[data-nav=maintenance]")).to_have_text("Maintenance")
        expect(page.locator("#mt-form button[type=submit]")).to_have_text("Create window")
        page.click("[data-nav=alerts]")
        expect(card.locator(".alert-rule")).to_have_text("Offline")
        expect(card.locator("[data-action=ack]")).to_have_text("Acknowledge")
        expect(card.locator(".affected summary")).to_have_text("Devices affected behind it (2)")
    finally:
        ctx.close()
        resolve_open_alerts(api)
