"""The dashboard's «Đẩy dữ liệu» view in Chromium: each push target's backlog and last error, in
Vietnamese, for administrators only."""

from collections.abc import Iterator

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.dashboard.conftest import (  # noqa: F401 - fixtures
    PASSWORD,
    browser,
    dash_db,
    dash_url,
    page,
    shot,
    sign_in,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def targets(dash_db: str) -> Iterator[None]:  # noqa: F811
    """An LGSP that is down, an NGSI-LD subscriber that took everything, one refused push."""
    with psycopg.connect(dash_db) as conn:
        conn.execute(
            "INSERT INTO push_targets (target, next_seq, last_success_at, last_error, last_error_at,"
            " delivered_total, failures_total) VALUES"
            " ('upstream:lgsp-an-giang', 3, now() - interval '2 hours', 'HTTP 503: {\"error\": \"bảo trì\"}',"
            "  now() - interval '1 minute', 40, 12),"
            " ('ngsi:urn:ngsi-ld:Subscription:tinh-1', 1, now() - interval '5 minutes',"
            "  'token endpoint answered 401: invalid_client', now() - interval '1 day', 9, 1)"
        )
        conn.execute(
            "INSERT INTO push_outbox (target, seq, body, items, status, created_at) VALUES"
            " ('upstream:lgsp-an-giang', 1, '{\"type\": \"changes\", \"items\": []}', 1, 'dead', now() - interval '3 hours'),"
            " ('upstream:lgsp-an-giang', 2, '{\"type\": \"changes\", \"items\": []}', 500, 'pending', now() - interval '2 hours'),"
            " ('upstream:lgsp-an-giang', 3, '{\"type\": \"changes\", \"items\": []}', 250, 'pending', now() - interval '1 hour')"
        )
    yield
    with psycopg.connect(dash_db) as conn:
        conn.execute("DELETE FROM push_outbox")
        conn.execute("DELETE FROM push_targets")


def test_admins_see_each_backlog_and_the_last_error_in_vietnamese(page: Page) -> None:  # noqa: F811
    page.click("[data-nav=upstreams]")
    expect(page.locator("#upstreams h2")).to_contain_text("Đẩy dữ liệu lên tỉnh")
    lgsp = page.locator("tr[data-target='upstream:lgsp-an-giang']")
    expect(lgsp).to_contain_text("Cấp trên (LGSP)")
    expect(lgsp).to_contain_text("lgsp-an-giang")
    expect(lgsp.locator(".up-backlog")).to_contain_text("750")
    expect(lgsp).to_contain_text("Đang lỗi")
    expect(lgsp).to_contain_text("sẽ tự gửi lại")
    expect(lgsp).to_contain_text("Bên nhận đang lỗi (mã 503)")
    expect(lgsp).to_contain_text("bảo trì")
    expect(lgsp).to_contain_text("2 giờ trước")
    ngsi = page.locator("tr[data-target='ngsi:urn:ngsi-ld:Subscription:tinh-1']")
    expect(ngsi).to_contain_text("Đăng ký NGSI-LD")
    expect(ngsi).to_contain_text("Bình thường")
    expect(ngsi).to_contain_text("Không lấy được mã truy cập (token OAuth2)")
    shot(page, "upstreams")
    with page.expect_download() as dl:
        page.click("#up-csv")
    with open(dl.value.path(), encoding="utf-8-sig") as f:
        text = f.read()
    assert text.splitlines()[0].startswith("Loại,Đích nhận,Tình trạng,Tồn đọng")
    assert "Bên nhận đang lỗi (mã 503)" in text


def test_on_a_phone(browser: Browser, dash_url: str) -> None:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    pg = ctx.new_page()
    sign_in(pg, dash_url)
    pg.goto(dash_url + "/#/upstreams")
    expect(pg.locator("tr[data-target='upstream:lgsp-an-giang'] .up-backlog")).to_contain_text("750")
    shot(pg, "upstreams-phone")
    ctx.close()


def test_other_roles_have_no_tab_and_read_why(browser: Browser, dash_url: str) -> None:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = ctx.new_page()
    sign_in(pg, dash_url, "viewer")
    expect(pg.locator("[data-nav=upstreams]")).to_be_hidden()
    pg.goto(dash_url + "/#/upstreams")
    expect(pg.locator("#up-admin-only")).to_have_text("Chỉ quản trị viên xem được mục đẩy dữ liệu.")
    ctx.close()
