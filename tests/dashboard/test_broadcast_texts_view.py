"""The «Phát thanh» form's text channels and a broadcast's text messages, in headless Chromium on a
gateway process whose IOC_ALERTS_FILE has a Zalo OA and a Telegram channel (local receivers), the
delivery worker's round run by the test, and a real alert engine that sends the texts."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from services import auth
from services.broadcasts import delivery
from tests.alerts.conftest import Receiver, running, write_config
from tests.alerts.conftest import settings as alert_settings
from tests.broadcasts.conftest import SECRET, wav
from tests.dashboard.conftest import PASSWORD, seed, sign_in
from tests.dashboard.serve import gateway
from tests.fix_pg import clone_db, drop_db
from tests.support import scalar, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def stack(pg_server: Any, tmp_path: Path, receiver: Receiver) -> Iterator[tuple[str, str, Path]]:
    name = clone_db(pg_server)
    url = pg_server.url(name)
    seed(url)
    with psycopg.connect(url) as conn:
        auth.add_user(conn, "operator", PASSWORD, "operator")
    base = f"http://127.0.0.1:{receiver.port}"
    alerts_file = write_config(
        tmp_path,
        {
            "channels": {
                "zalo_oa": f"zalo://tok-1@oa/5512345678901234567?base={base}",
                "telegram-xa": f"tgram://123456789:AAbbCCdd_eeFF/-1001234567?api={base}/bot",
            },
            "routes": [{"match": {"rule": "none"}, "channels": ["zalo_oa"]}],
        },
    )
    try:
        with gateway(
            url, secret_key=SECRET, alerts_file=str(alerts_file), broadcast_emergency_channels="zalo_oa"
        ) as gw:
            yield url, gw, alerts_file
    finally:
        drop_db(pg_server, name)


def ticked(page: Page) -> dict[str, bool]:
    boxes = page.locator("#bc-channels input[name=channels]")
    return {
        boxes.nth(i).get_attribute("value") or "": boxes.nth(i).is_checked() for i in range(boxes.count())
    }


@pytest.mark.timeout(180)
def test_an_emergency_ticks_its_default_channels_and_its_page_shows_each_text_sent(
    browser: Browser, stack: tuple[str, str, Path], receiver: Receiver
) -> None:
    db, base, alerts_file = stack
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    errors: list[str] = []
    try:
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, base, "operator")
        page.goto(base + "/#/broadcasts/emergency")
        expect(page.locator("#bc-channels legend")).to_have_text("Gửi kèm tin nhắn văn bản")
        expect(page.locator("#bc-channels-hint")).to_be_visible()
        wait_for(lambda: ticked(page) == {"telegram-xa": False, "zalo_oa": True})
        page.locator("#bc-form label[data-priority=normal]").click()
        assert ticked(page) == {"telegram-xa": False, "zalo_oa": False}
        page.locator("#bc-form label[data-priority=emergency]").click()
        assert ticked(page) == {"telegram-xa": False, "zalo_oa": True}
        page.locator("#bc-channels label[data-channel=telegram-xa]").click()
        page.set_input_files(
            "#bc-form input[name=file]",
            files=[FilePayload(name="canh-bao.wav", mimeType="audio/wav", buffer=wav(2.0))],
        )
        expect(page.locator("#bc-media")).to_have_attribute("data-state", "ok")
        page.click("#bc-send")
        expect(page.locator("#bc-confirm-channels")).to_have_text(
            "Gửi kèm tin nhắn qua: telegram-xa, zalo_oa"
        )
        yes = page.locator("#bc-confirm-yes")
        expect(yes).to_be_enabled(timeout=10000)
        yes.click()
        page.wait_for_url(re.compile(r"#/broadcasts/\d+$"))
        bid = int(page.url.rsplit("/", 1)[1])
        assert scalar(db, "SELECT channels FROM broadcasts WHERE id = %s", (bid,)) == [
            "telegram-xa",
            "zalo_oa",
        ]
        expect(page.locator("#bc-texts-card h2")).to_have_text("Tin nhắn văn bản")
        with psycopg.connect(db, autocommit=True) as conn:
            delivery.tick(conn, datetime.now(UTC), "Asia/Ho_Chi_Minh", base, SECRET)
        rows = page.locator("#bc-texts tbody tr")
        expect(rows).to_have_count(2)
        expect(page.locator("#bc-texts tr[data-channel=zalo_oa] .bc-dstate")).to_have_text(
            "Chờ gửi", timeout=10000
        )
        with running(alert_settings(db, alerts_file)):
            wait_for(lambda: len(receiver.requests) == 2)
            for channel in ("zalo_oa", "telegram-xa"):
                expect(page.locator(f"#bc-texts tr[data-channel={channel}] .bc-dstate")).to_have_text(
                    "Đã gửi", timeout=15000
                )
        assert any(r["path"] == "/v3.0/oa/message/cs" for r in receiver.requests)
    finally:
        ctx.close()
    assert not errors, errors
