"""Alert text in the page's language: the dashboard words each built-in rule from the alert's fields,
whatever language the server wrote its `message` in (IOC_LANG, for notifications)."""

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, expect
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services import feed
from services.alerts import store
from tests.dashboard.conftest import PASSWORD, shot

pytestmark = pytest.mark.browser

# rule, device (None: IOC-wide), details as the evaluator stores them, then the text in Vietnamese
# and in English. The server's message is a placeholder: only an unknown rule may show it.
CASES: list[tuple[str, str | None, dict[str, Any], str, str]] = [
    ("offline", "gw-tay-binh", {}, "Router ấp Tây Bình mất kết nối", "Router ấp Tây Bình is offline"),
    (
        "offline",
        "spk-trung-binh-2",
        {"flapping": True, "flaps": 4},
        "Loa ấp Trung Bình 2 chập chờn: mất kết nối 4 lần liên tiếp",
        "Loa ấp Trung Bình 2 is flapping: offline 4 times in a row",
    ),
    (
        "camera_tamper",
        "cam-ubnd-1",
        {"event": "globalscenechange"},
        "Camera cổng UBND bị che, xoay hoặc phá (tamper)",
        "Camera cổng UBND is tampered with (covered, moved or damaged)",
    ),
    (
        "camera_clock_skew",
        "cam-ben-do",
        {"value": -75.4, "threshold": 60},
        "Camera bến đò lệch giờ -75 giây (ngưỡng 60 giây)",
        "Camera bến đò clock is off by -75 s (threshold 60 s)",
    ),
    (
        "eboard_screen_off",
        "eb-ubnd",
        {"on_hours": "06:00-22:00"},
        "Bảng tin UBND tắt màn hình trong giờ hoạt động (06:00-22:00)",
        "Bảng tin UBND screen is off during on-hours (06:00-22:00)",
    ),
    (
        "speaker_battery_low",
        "spk-bac-thanh-1",
        {"value": 15, "threshold": 20},
        "Loa ấp Bắc Thạnh 1 đang chạy pin, còn 15% (ngưỡng 20%)",
        "Loa ấp Bắc Thạnh 1 is on battery at 15% (threshold 20%)",
    ),
    (
        "uplink_down",
        "wifi-cho",
        {},
        "Wi-Fi chợ mất đường truyền Internet (uplink)",
        "Wi-Fi chợ lost its Internet uplink",
    ),
    (
        "uplink_down",
        "gw-trung-binh",
        {},
        "Router ấp Trung Bình mất đường truyền Internet (uplink)",
        "Router ấp Trung Bình lost its Internet uplink",
    ),
    (
        "temperature_high",
        "spk-trung-binh-1",
        {"value": 72.46, "threshold": 70},
        "Loa ấp Trung Bình 1 nhiệt độ cao 72,5 °C (ngưỡng 70 °C)",
        "Loa ấp Trung Bình 1 temperature is 72.5 °C (threshold 70 °C)",
    ),
    (
        "broker_lost",
        None,
        {"last_heard": "2026-03-01T08:00:00+00:00"},
        "Trung tâm mất kết nối với máy chủ nhận tin thiết bị (MQTT): trạng thái thiết bị tạm dừng cập nhật",
        "The IOC lost its connection to the server that receives device messages (MQTT): device states are frozen",
    ),
    (
        "gateway_cpu",
        "gw-bac-thanh",
        {"metric": "cpu_pct", "op": ">", "value": 95.5, "threshold": 90},
        "Router ấp Bắc Thạnh Tải CPU = 95,5 (ngưỡng > 90)",
        "Router ấp Bắc Thạnh CPU load = 95.5 (threshold > 90)",
    ),
    (
        "unscheduled_broadcast",
        "spk-tay-binh-1",
        {"source": "usb", "playing": True},
        "Loa ấp Tây Bình 1 đang phát nội dung không do Trung tâm gửi (nguồn: usb)",
        "Loa ấp Tây Bình 1 is playing something the IOC did not send (source: usb)",
    ),
    # What a device calls its source is text, never markup, nor a pattern of replaceAll ("$&").
    (
        "unscheduled_broadcast",
        "spk-bac-thanh-1",
        {"source": "<b>fm</b> $&", "playing": True},
        "Loa ấp Bắc Thạnh 1 đang phát nội dung không do Trung tâm gửi (nguồn: <b>fm</b> $&)",
        "Loa ấp Bắc Thạnh 1 is playing something the IOC did not send (source: <b>fm</b> $&)",
    ),
    (
        "broadcast_not_reached",
        None,
        {"broadcast": 7, "title": "Bão số 5", "villages": "Ấp Tây Bình", "missed": 1, "targeted": 3},
        "Bản tin khẩn cấp «Bão số 5» chưa đến 1/3 ấp sau 2 phút: Ấp Tây Bình",
        "The emergency broadcast «Bão số 5» has not reached 1 of 3 villages after 2 minutes: Ấp Tây Bình",
    ),
    # A rule the page has no words for keeps the server's text.
    ("generator_stopped", "eb-ubnd", {}, "Máy phát điện UBND đã dừng", "Máy phát điện UBND đã dừng"),
]


def raise_alert(db_url: str, rule: str, device_id: str | None, details: dict[str, Any], message: str) -> int:
    """An open alert written as the evaluator writes one (row, then its feed message); returns its id."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        place = (
            conn.execute(
                "SELECT commune_id, village_id, kind FROM devices WHERE id = %s", (device_id,)
            ).fetchone()
            if device_id
            else None
        ) or (None, None, None)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, details,"  # noqa: S608
                " since, opened_at) VALUES (%s, %s, %s, %s, %s, 'warning', %s, %s, %s, %s)"
                f" RETURNING {store.COLUMNS}",
                (rule, device_id, *place, message, Jsonb(details), now, now),
            ).fetchone()
        assert row is not None
        feed.publish(conn, [store.feed_item(row)])
        return int(row["id"])


@pytest.fixture
def alerts(dash_url: str, dash_db: str) -> Iterator[list[int]]:
    """One open alert per case, resolved afterwards."""
    ids = [
        raise_alert(dash_db, rule, device, details, "Máy phát điện UBND đã dừng")
        for rule, device, details, _vi, _en in CASES
    ]
    yield ids
    with httpx.Client(base_url=dash_url) as api:
        r = api.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        for alert_id in ids:
            api.post(f"/api/v1/alerts/{alert_id}/resolve", headers=headers).raise_for_status()


def test_expected_texts_are_composed_vietnamese() -> None:
    # The words compared below are the precomposed (NFC) forms Vietnamese keyboards type.
    for *_, vi, en in CASES:
        assert unicodedata.is_normalized("NFC", vi) and unicodedata.is_normalized("NFC", en)


def test_alert_text_follows_the_language_switch_without_reload(page: Page, alerts: list[int]) -> None:
    page.click("[data-nav=alerts]")
    messages = [page.locator(f"#alert-list article[data-alert-id='{i}'] .alert-msg") for i in alerts]
    for msg, (*_, vi, _en) in zip(messages, CASES, strict=True):
        expect(msg).to_have_text(vi)
    page.evaluate("window.__noReload = true")
    page.click("#lang-switch")
    expect(page.locator("[data-nav=alerts]")).to_contain_text("Alerts")
    for msg, (*_, en) in zip(messages, CASES, strict=True):
        expect(msg).to_have_text(en)
    shot(page, "alerts-english")
    # The CSV carries the same words as the page (here English), not the server's IOC_LANG text.
    with page.expect_download() as info:
        page.click("#alerts-csv")
    text = Path(info.value.path()).read_text(encoding="utf-8-sig")
    by_id = {int(row["No."]): row["Message"] for row in csv.DictReader(io.StringIO(text))}
    assert [by_id[i] for i in alerts] == [en for *_, en in CASES]
    broker_lost = alerts[next(i for i, case in enumerate(CASES) if case[0] == "broker_lost")]
    broker = page.locator(f"#alert-list article[data-alert-id='{broker_lost}']")
    expect(broker.locator(".alert-rule")).to_have_text(
        "The IOC lost the server that receives device messages"
    )

    # The overview's open alerts read the same way, and back in Vietnamese.
    page.click("[data-nav=overview]")
    gone = page.locator(f"#alerts li[data-alert-id='{alerts[0]}'] strong")
    expect(gone).to_have_text("Router ấp Tây Bình is offline")
    page.click("#lang-switch")
    expect(gone).to_have_text("Router ấp Tây Bình mất kết nối")
    assert page.evaluate("window.__noReload") is True


def test_broadcast_alert_links_to_its_broadcast_and_says_how_it_ended(page: Page, dash_db: str) -> None:
    details = {"broadcast": 7, "title": "Bão số 5", "villages": "Ấp Tây Bình", "missed": 1, "targeted": 3}
    alert_id = raise_alert(dash_db, "broadcast_not_reached", None, details, "Máy phát điện UBND đã dừng")
    # The overview's open alerts link it too, where a device alert names its device.
    page.click("[data-nav=overview]")
    row = page.locator(f"#alerts li[data-alert-id='{alert_id}']")
    expect(row.locator("a[data-broadcast-link]")).to_have_attribute("href", "#/broadcasts/7")
    expect(row.locator("a[data-broadcast-link]")).to_have_text("Bản tin #7")
    expect(row.locator("a[href^='#/device/']")).to_have_count(0)
    expect(row.locator("small")).not_to_contain_text("· ·")  # no village: nothing between the separators
    page.set_viewport_size({"width": 390, "height": 844})
    row.scroll_into_view_if_needed()
    shot(page, "overview-broadcast-alert-390")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.click("[data-nav=alerts]")
    card = page.locator(f"#alert-list article[data-alert-id='{alert_id}']")
    link = card.locator("[data-field=broadcast] a")
    expect(link).to_have_attribute("href", "#/broadcasts/7")
    expect(link).to_have_text("Bão số 5 #7")
    expect(card.locator("[data-field=device]")).to_have_count(0)
    expect(card.locator("[data-field=outcome]")).to_have_count(0)  # not over yet
    # The CSV says which broadcast, in a column of its own (empty for alerts of a device).
    with page.expect_download() as info:
        page.click("#alerts-csv")
    text = Path(info.value.path()).read_text(encoding="utf-8-sig")
    by_id = {int(r["Số"]): r for r in csv.DictReader(io.StringIO(text))}
    assert by_id[alert_id]["Số bản tin"] == "7"
    assert all(r["Số bản tin"] == "" for r in by_id.values() if r["Mã thiết bị"])

    # Resolved by itself as services/broadcasts/alerting.py resolves it: the broadcast expired.
    with psycopg.connect(dash_db) as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = now(), updated_at = now(),"  # noqa: S608
            f" details = details || %s WHERE id = %s RETURNING {store.COLUMNS}",
            (Jsonb({"outcome": "expired", "not_reached": "Ấp Tây Bình"}), alert_id),
        ).fetchone()
        assert row is not None
        feed.publish(conn, [store.feed_item(row)])
    page.click("[data-tab=resolved]")
    outcome = card.locator("[data-field=outcome] dd")
    expect(outcome).to_have_text(
        "Bản tin đã hết hạn; chưa đến: Ấp Tây Bình. Cần báo cho những nơi này bằng cách khác."
    )
    expect(card.locator("[data-field=resolved_by] dd")).to_have_text(
        "tự kết thúc theo bản tin (đến đủ nơi, hết hạn hoặc bị hủy)"
    )
    page.set_viewport_size({"width": 390, "height": 844})
    card.scroll_into_view_if_needed()
    shot(page, "alerts-broadcast-390")
    page.click("#lang-switch")
    expect(outcome).to_have_text("The broadcast expired; never reached: Ấp Tây Bình. Warn them another way.")
    expect(card.locator("[data-field=broadcast] dt")).to_have_text("Broadcast")
    page.click("#lang-switch")
    expect(card.locator("[data-field=outcome] dt")).to_have_text("Kết quả")
    card.locator("[data-field=broadcast] a").click()
    expect(page).to_have_url(re.compile(r"#/broadcasts/7$"))
