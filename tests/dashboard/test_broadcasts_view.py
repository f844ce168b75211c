"""The «Phát thanh» view in headless Chromium on the real stack: a gateway process, `ioc ingest`'s
delivery worker, Mosquitto and PostgreSQL. Speakers and e-boards are played by this module: it reads
their `cmd` from the broker and answers `cmd_result` as a device does."""

import csv
import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from playwright.sync_api import Browser, FilePayload, Page, ViewportSize, expect
from pydantic import SecretStr

from cli.embedded import Mosquitto
from ingest.service import IngestService, IngestSettings
from services import auth
from tests.broadcasts.conftest import SECRET, wav
from tests.dashboard.conftest import PASSWORD, SCREENSHOTS, seed, sign_in
from tests.dashboard.serve import gateway
from tests.fix_pg import clone_db, drop_db, private_dir
from tests.support import scalar, wait_for

pytestmark = pytest.mark.browser
PHONE: ViewportSize = {"width": 390, "height": 844}
PC: ViewportSize = {"width": 1366, "height": 768}
ONLINE_PLAYERS = ("spk-trung-binh-1", "spk-trung-binh-2", "spk-bac-thanh-1", "eb-ubnd")


class Devices:
    """Speakers and e-boards on the real broker: each answers a `play` with accepted, playing and
    done (an e-board's `show` with accepted), and sends its status so that it stays online."""

    def __init__(self, url: str, db_url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        with psycopg.connect(db_url) as conn:
            self.topics = {
                r[0]: f"ioc/v1/{r[1]}/{r[2]}/{r[0]}"
                for r in conn.execute(
                    "SELECT id, commune_id, kind FROM devices WHERE id = ANY(%s)", (list(ONLINE_PLAYERS),)
                )
            }
        self.seen: list[dict[str, Any]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-players")
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect(host, int(port))
        self.client.subscribe([(f"{t}/cmd", 1) for t in self.topics.values()])
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def heartbeat(self) -> None:
        for device, topic in self.topics.items():
            body = {"volume": 60, "playing": False} if device.startswith("spk") else {"screen_on": True}
            self.client.publish(f"{topic}/status", json.dumps(body), qos=1).wait_for_publish(10)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        cmd = json.loads(msg.payload)
        self.seen.append(cmd)
        base = msg.topic.removesuffix("/cmd")
        steps = {"play": ["accepted", "playing", "done"], "show": ["accepted"]}.get(cmd["type"], [])
        for status in steps:
            self.client.publish(f"{base}/cmd_result", json.dumps({"id": cmd["id"], "status": status}), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def bc_db(pg_server: Any) -> Iterator[str]:
    name = clone_db(pg_server)
    url = pg_server.url(name)
    seed(url)
    with psycopg.connect(url) as conn:
        auth.add_user(conn, "operator", PASSWORD, "operator")
        auth.add_user(conn, "ky-thuat", PASSWORD, "technician")
    yield url
    drop_db(pg_server, name)


@pytest.fixture(scope="module")
def bc_broker() -> Iterator[str]:
    m = Mosquitto(private_dir("ioc-mqtt-"))
    m.start()
    yield m.url()
    m.stop()


@pytest.fixture(scope="module")
def bc_url(bc_db: str) -> Iterator[str]:
    with gateway(bc_db, secret_key=SECRET) as base:
        yield base


@pytest.fixture(scope="module")
def players(bc_db: str, bc_broker: str, bc_url: str) -> Iterator[Devices]:
    """The delivery worker of `ioc ingest` and the devices that answer it."""
    settings = IngestSettings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=bc_db,
        mqtt_url=bc_broker,
        ingest_id="ingest-dashboard-broadcasts",
        ingest_onvif=False,
        ingest_sources=False,
        ingest_poll=False,
        secret_key=SecretStr(SECRET),
        public_url=bc_url,
    )
    with IngestService(settings) as svc:
        wait_for(lambda: svc.health.check())
        devices = Devices(bc_broker, bc_db)
        try:
            yield devices
        finally:
            devices.close()


@pytest.fixture
def open_page(browser: Browser, bc_url: str) -> Iterator[Callable[..., Page]]:
    """Signed-in pages: open_page(user, phone=False)."""
    contexts = []
    errors: list[str] = []

    def make(user: str, phone: bool = False) -> Page:
        ctx = browser.new_context(viewport=PHONE if phone else PC, accept_downloads=True)
        contexts.append(ctx)
        pg = ctx.new_page()
        pg.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(pg, bc_url, user)
        return pg

    yield make
    for ctx in contexts:
        ctx.close()
    assert not errors, errors


@contextmanager
def api_as(base: str, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/api/v1/auth/login", json={"username": user, "password": PASSWORD})
        r.raise_for_status()
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        yield client


def shot(page: Page, name: str, full: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full)


def form_shots(page: Page, name: str) -> None:
    """The form as a clerk scrolls it, top and bottom: a full-page shot would draw its sticky send
    bar where the first screen ends."""
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, name)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    shot(page, f"{name}-end")


def upload_audio(page: Page, seconds: float = 3.0, name: str = "thong-bao.wav") -> None:
    page.set_input_files(
        "#bc-form input[name=file]", files=[FilePayload(name=name, mimeType="audio/wav", buffer=wav(seconds))]
    )
    expect(page.locator("#bc-media")).to_have_attribute("data-state", "ok")


def count(db: str) -> int:
    return int(scalar(db, "SELECT count(*) FROM broadcasts"))


@pytest.mark.timeout(240)
def test_an_operator_bulletin_waits_for_the_admin_and_is_watched_village_by_village(
    open_page: Callable[..., Page], bc_db: str, players: Devices
) -> None:
    players.heartbeat()
    op = open_page("operator")
    op.click("[data-nav=broadcasts]")
    op.click("#bc-new")
    form = op.locator("#bc-form")
    form.locator("input[name=title]").fill("Thông báo tiêm phòng cho gia súc")
    expect(form.locator("input[name=priority][value=normal]")).to_be_checked()
    expect(op.locator("#bc-prio-hint")).to_contain_text("chờ quản trị viên duyệt")
    form.locator("label[data-risk='2']").click()
    upload_audio(op, 3.0)
    expect(op.locator("#bc-media")).to_contain_text("3,0 giây")
    # A village found by typing without diacritics, another tapped on the map.
    form.locator("input[name=vq]").fill("bac thanh")
    expect(op.locator("#bc-vlist li[data-key]:visible")).to_have_count(1)
    op.locator("#bc-vlist li[data-key='thoai-giang/bac-thanh'] input").check()
    form.locator("input[name=vq]").fill("")
    op.locator("#bc-map path[data-village='thoai-giang/tay-binh']").click()
    expect(op.locator("#bc-vlist li[data-key='thoai-giang/tay-binh'] input")).to_be_checked()
    expect(op.locator("#bc-picked-n")).to_have_text("đã chọn 2/3")
    form_shots(op, "broadcast-compose")
    op.click("#bc-send")
    dlg = op.locator("#bc-confirm")
    expect(dlg).to_be_visible()
    expect(dlg.locator("#bc-confirm-villages li")).to_have_text(["Ấp Bắc Thạnh", "Ấp Tây Bình"])
    expect(dlg.locator("#bc-confirm-count")).to_have_text("2 ấp · 2 loa · 0 bảng điện tử")
    expect(dlg).to_contain_text("chờ quản trị viên duyệt")
    shot(op, "broadcast-confirm")
    dlg.locator("#bc-confirm-yes").click()
    op.wait_for_url(re.compile(r"#/broadcasts/\d+$"))
    bid = int(op.url.rsplit("/", 1)[1])
    expect(op.locator("#bc-awaiting-note")).to_have_text("Chờ quản trị viên duyệt")
    expect(op.locator("#bc-approve")).to_have_count(0)
    expect(op.locator(".bc-state")).to_have_text("Chờ duyệt")
    row = scalar(bc_db, "SELECT row_to_json(b) FROM broadcasts b WHERE id = %s", (bid,))
    assert (row["state"], row["priority"], row["risk_level"], row["created_by"]) == (
        "awaiting_approval",
        "normal",
        2,
        "operator",
    )
    assert row["media_id"] and sorted(row["targets"]["villages"]) == [
        "thoai-giang/bac-thanh",
        "thoai-giang/tay-binh",
    ]

    # The admin sees it awaiting and approves it from the list.
    admin = open_page("admin")
    admin.click("[data-nav=broadcasts]")
    item = admin.locator(f"#bc-awaiting li[data-broadcast='{bid}']")
    expect(item).to_contain_text("Thông báo tiêm phòng cho gia súc")
    expect(item).to_contain_text("operator")
    item.locator("[data-approve]").click()
    expect(admin.locator("#bc-notice")).to_have_text(f"Đã duyệt bản tin #{bid}")
    admin.click(f"#bc-table tr[data-broadcast='{bid}'] a")

    # Delivery, live: Bắc Thạnh's speaker plays it; Tây Bình's is offline.
    expect(admin.locator("#bc-reach")).to_have_text("1/2 ấp đã nghe", timeout=30000)
    bac = admin.locator("#bc-villages tr[data-village='thoai-giang/bac-thanh']")
    expect(bac).to_have_attribute("data-reached", "true")
    expect(bac).to_contain_text("Đã nghe")
    tay = admin.locator("#bc-villages tr[data-village='thoai-giang/tay-binh']")
    expect(tay).to_contain_text("Chưa nghe")
    expect(tay).to_contain_text("thiết bị mất kết nối")
    expect(admin.locator("#bc-not-reached")).to_have_text("Chưa nghe: Ấp Tây Bình (thiết bị mất kết nối)")
    expect(admin.locator("#bc-devices tr[data-device='spk-bac-thanh-1']")).to_contain_text("đã phát xong")
    expect(admin.locator("#bc-devices tr[data-device='spk-tay-binh-1']")).to_contain_text(
        "thiết bị mất kết nối: sẽ gửi khi thiết bị kết nối lại"
    )
    # The operator's page, left open, followed without a reload.
    # (asked every 10 s while it awaited approval, every 2 s once under way)
    expect(op.locator("#bc-reach")).to_have_text("1/2 ấp đã nghe", timeout=30000)
    expect(op.locator("#bc-awaiting-note")).to_have_count(0)
    shot(admin, "broadcast-delivery", full=True)
    phone = open_page("admin", phone=True)
    phone.goto(phone.url.split("#")[0] + f"#/broadcasts/{bid}")
    expect(phone.locator("#bc-reach")).to_have_text("1/2 ấp đã nghe")
    shot(phone, "broadcast-delivery-phone", full=True)

    # Cancel asks first; then the broadcast is over and the offline speaker will not get it.
    admin.click("#bc-cancel")
    expect(admin.locator("#bc-actions")).to_contain_text("Dừng bản tin này ở mọi thiết bị?")
    admin.click("#bc-cancel-yes")
    expect(admin.locator(".bc-state")).to_have_text("Đã hủy")
    expect(admin.locator("#bc-devices tr[data-device='spk-tay-binh-1']")).to_contain_text("admin đã hủy")


def test_a_file_that_is_not_audio_or_too_large_is_refused_in_words(
    open_page: Callable[..., Page], bc_db: str, tmp_path: Path
) -> None:
    op = open_page("operator")
    op.goto(op.url.split("#")[0] + "#/broadcasts/new")
    op.set_input_files(
        "#bc-form input[name=file]",
        files=[FilePayload(name="ghi-chu.txt", mimeType="text/plain", buffer=b"khong phai am thanh\n" * 20)],
    )
    media = op.locator("#bc-media")
    expect(media).to_have_attribute("data-state", "error")
    expect(media).to_have_text(
        "Tệp «ghi-chu.txt» không phải âm thanh MP3, WAV hoặc OGG đọc được. Hãy chọn tệp âm thanh khác."
    )
    # A file named .mp3 that is not MP3 inside is refused the same way (the server reads the bytes).
    op.set_input_files(
        "#bc-form input[name=file]",
        files=[FilePayload(name="gia.mp3", mimeType="audio/mpeg", buffer=b"ID3 not really audio" * 50)],
    )
    expect(media).to_contain_text("«gia.mp3» không phải âm thanh")
    expect(op.locator("#bc-form input[name=file]")).to_have_attribute("aria-invalid", "true")
    # Over 50 MB: said at once, nothing is uploaded (a sparse file: 51 MB on the page, not on disk).
    big = tmp_path / "ban-tin-dai.wav"
    with big.open("wb") as f:
        f.write(wav(0.5))
        f.truncate(51 * 1024 * 1024)
    uploads = []
    op.on("request", lambda r: uploads.append(r.url) if r.url.endswith("/api/v1/media") else None)
    op.set_input_files("#bc-form input[name=file]", str(big))
    expect(media).to_have_text("Tệp «ban-tin-dai.wav» quá lớn: tối đa 50 MB.")
    assert uploads == []
    # "Pick all" picks what the search shows; "clear" leaves them.
    op.fill("#bc-form input[name=vq]", "trung")
    op.click("#bc-form [data-pick=all]")
    expect(op.locator("#bc-picked-n")).to_have_text("đã chọn 1/3")
    op.fill("#bc-form input[name=vq]", "")
    op.click("#bc-form [data-pick=all]")
    expect(op.locator("#bc-picked-n")).to_have_text("đã chọn 3/3")
    expect(op.locator("#bc-send-summary")).to_have_text("Phát tới 3 ấp")
    op.click("#bc-form [data-pick=none]")
    expect(op.locator("#bc-picked-n")).to_have_text("đã chọn 0/3")
    # Sending with no content says so and asks nothing.
    op.locator("#bc-form input[name=title]").fill("Thử")
    op.click("#bc-send")
    expect(op.locator("#bc-error")).to_contain_text("Chọn tệp âm thanh hoặc nhập nội dung chữ.")
    expect(op.locator("#bc-error")).to_contain_text("Chọn ít nhất một ấp.")
    expect(op.locator("#bc-confirm")).not_to_be_visible()
    assert scalar(bc_db, "SELECT count(*) FROM broadcasts WHERE title = 'Thử'") == 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("phone", [False, True], ids=["pc", "phone"])
def test_an_emergency_is_two_clicks_from_the_overview_and_its_confirmation_names_every_village(
    open_page: Callable[..., Page], bc_db: str, players: Devices, phone: bool
) -> None:
    players.heartbeat()
    op = open_page("operator", phone=phone)
    op.click("#ov-emergency")
    expect(op.locator("#bc-form input[name=priority][value=emergency]")).to_be_checked()
    expect(op.locator("#bc-picked-n")).to_have_text("đã chọn 3/3")
    expect(op.locator("#bc-send")).to_have_text("Phát khẩn cấp")
    expect(op.locator("#bc-prio-hint")).to_contain_text("phát ngay")
    op.locator("#bc-form label[data-risk='4']").click()
    upload_audio(op, 2.0, "canh-bao-lu.wav")
    suffix = "-phone" if phone else ""
    form_shots(op, f"broadcast-compose-emergency{suffix}")
    before = count(bc_db)
    op.click("#bc-send")
    dlg = op.locator("#bc-confirm")
    expect(dlg.locator("h2")).to_have_text("Phát KHẨN CẤP tới 3 ấp?")
    expect(dlg.locator("#bc-confirm-villages li")).to_have_text(
        ["Ấp Bắc Thạnh", "Ấp Tây Bình", "Ấp Trung Bình"]
    )
    expect(dlg.locator("#bc-confirm-count")).to_have_text("3 ấp · 4 loa · 1 bảng điện tử")
    yes = dlg.locator("#bc-confirm-yes")
    # Not armed at once, and not where the send button was.
    expect(yes).to_be_disabled()
    send_box = op.locator("#bc-send").bounding_box()
    yes_box = yes.bounding_box()
    assert send_box and yes_box
    assert not (
        yes_box["x"] <= send_box["x"] + send_box["width"] / 2 <= yes_box["x"] + yes_box["width"]
        and yes_box["y"] <= send_box["y"] + send_box["height"] / 2 <= yes_box["y"] + yes_box["height"]
    ), (send_box, yes_box)
    shot(op, f"broadcast-confirm-emergency{suffix}")
    op.keyboard.press("Enter")
    expect(yes).to_be_enabled(timeout=10000)
    # Enter does not press it even when it has the focus.
    yes.focus()
    op.keyboard.press("Enter")
    expect(dlg).to_be_visible()
    assert count(bc_db) == before
    yes.click()
    op.wait_for_url(re.compile(r"#/broadcasts/\d+$"))
    bid = int(op.url.rsplit("/", 1)[1])
    assert scalar(bc_db, "SELECT state FROM broadcasts WHERE id = %s", (bid,)) in ("scheduled", "active")
    # No approval for an emergency: it plays; the offline village is named as not reached.
    expect(op.locator("#bc-reach")).to_have_text("2/3 ấp đã nghe", timeout=30000)
    expect(op.locator("#bc-not-reached")).to_contain_text("Ấp Tây Bình (thiết bị mất kết nối)")
    expect(op.locator(".bc-risk")).to_contain_text("Cấp 4")
    op.click("#bc-cancel")
    op.click("#bc-cancel-yes")
    expect(op.locator(".bc-state")).to_have_text("Đã hủy")


def test_viewers_and_technicians_see_no_send_button_and_the_server_refuses_them(
    open_page: Callable[..., Page], bc_url: str
) -> None:
    for user, role in (("viewer", "Người xem"), ("ky-thuat", "Kỹ thuật viên")):
        pg = open_page(user)
        expect(pg.locator("#kpis .kpi")).not_to_have_count(0)
        expect(pg.locator("#ov-emergency")).to_have_count(0)
        pg.click("[data-nav=broadcasts]")
        expect(pg.locator("#bc-view-only")).to_contain_text("chỉ xem được")
        expect(pg.locator("#bc-new, #bc-emergency")).to_have_count(0)
        pg.goto(pg.url.split("#")[0] + "#/broadcasts/emergency")
        expect(pg.locator("#bc-view-only")).to_contain_text(f"vai trò {role}: chỉ xem được")
        expect(pg.locator("#bc-send")).to_have_count(0)
        status = pg.evaluate(
            """() => fetch("/api/v1/broadcasts", {method: "POST", headers: {"Content-Type": "application/json"},
                 body: JSON.stringify({title: "x", text: "y", targets: {villages: ["trung-binh"]}})}).then((r) => r.status)"""
        )
        assert status == 403


def test_history_filters_and_downloads_a_csv_with_vietnamese_headers(
    open_page: Callable[..., Page], bc_url: str, bc_db: str
) -> None:
    with api_as(bc_url, "operator") as op:
        for title, prio in (("Bản tin sáng thứ Hai", "normal"), ("Lịch cúp điện", "priority")):
            r = op.post(
                "/api/v1/broadcasts",
                json={
                    "title": title,
                    "priority": prio,
                    "text": "Nội dung",
                    "targets": {"villages": ["trung-binh"]},
                    "rrule": "FREQ=WEEKLY;BYDAY=MO" if prio == "normal" else None,
                },
            )
            assert r.status_code == 201, r.text
    admin = open_page("admin")
    admin.click("[data-nav=broadcasts]")
    table = admin.locator("#bc-table")
    expect(table).to_contain_text("Bản tin sáng thứ Hai")
    expect(table).to_contain_text("hằng tuần: Thứ Hai")
    admin.select_option("#bc-filters select[name=priority]", "priority")
    expect(table.locator("tbody .bc-prio")).to_have_text(["Ưu tiên"])
    admin.select_option("#bc-filters select[name=priority]", "")
    admin.fill("#bc-filters input[name=q]", "ban tin sang")
    expect(table.locator("tbody tr[data-broadcast]")).to_have_count(1)
    admin.fill("#bc-filters input[name=q]", "")
    shot(admin, "broadcast-history", full=True)
    with admin.expect_download() as info:
        admin.click("#bc-csv")
    raw = Path(info.value.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows
    header = list(rows[0].keys())
    for col in (
        "Tiêu đề",
        "Mức ưu tiên",
        "Tình trạng",
        "Bắt đầu phát",
        "Số ấp đã nghe",
        "Người tạo",
        "Lặp lại",
    ):
        assert col in header, header
    monday = next(r for r in rows if r["Tiêu đề"] == "Bản tin sáng thứ Hai")
    assert (monday["Mức ưu tiên"], monday["Tình trạng"], monday["Lặp lại"]) == (
        "Thông thường",
        "Chờ duyệt",
        "hằng tuần: Thứ Hai",
    )
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", monday["Bắt đầu phát"]), monday
    assert monday["Các ấp được chọn"] == "Ấp Trung Bình"
    # Counted as the share log counts: one village targeted (by its e-board), not reached yet.
    assert (monday["Số ấp được phát tới"], monday["Số ấp đã nghe"]) == ("1", "0")
    phone = open_page("operator", phone=True)
    phone.click("[data-nav=broadcasts]")
    expect(phone.locator("#bc-table")).to_contain_text("Lịch cúp điện")
    shot(phone, "broadcast-history-phone", full=True)


def test_an_admin_schedules_a_weekly_text_notice_in_local_time_without_approval(
    open_page: Callable[..., Page], bc_db: str
) -> None:
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    tomorrow = (datetime.now(tz) + timedelta(days=1)).date()
    admin = open_page("admin")
    admin.goto(admin.url.split("#")[0] + "#/broadcasts/new")
    form = admin.locator("#bc-form")
    form.locator("input[name=title]").fill("Lịch họp dân")
    form.locator("textarea[name=text]").fill("Họp dân 19:00 tại nhà văn hóa")
    admin.locator("#bc-vlist li[data-key='thoai-giang/trung-binh'] input").check()
    # Text alone cannot go to speakers only: said before anything is sent.
    form.locator("input[name=kinds][value=eboard]").uncheck()
    admin.click("#bc-send")
    expect(admin.locator("#bc-error")).to_contain_text("cần bảng điện tử")
    form.locator("input[name=kinds][value=eboard]").check()
    # The expiry follows a start typed by hand (one hour after it).
    form.locator("input[name=starts_at]").fill(f"{tomorrow:%d/%m/%Y} 07:00")
    form.locator("input[name=starts_at]").dispatch_event("change")
    expect(form.locator("input[name=expires_at]")).to_have_value(f"{tomorrow:%d/%m/%Y} 08:00")
    form.locator("select[name=repeat]").select_option("weekly")
    form.locator("input[name=byday][value=MO]").check()
    form.locator("input[name=set_volume]").check()
    form.locator("input[name=volume]").fill("70")
    expect(admin.locator("#bc-prio-hint")).to_contain_text("không cần duyệt")
    admin.click("#bc-send")
    dlg = admin.locator("#bc-confirm")
    expect(dlg).to_contain_text(f"Bắt đầu lúc {tomorrow:%d/%m/%Y} 07:00.")
    expect(dlg.locator("#bc-confirm-count")).to_have_text("1 ấp · 0 loa · 1 bảng điện tử")
    expect(dlg).not_to_contain_text("chờ quản trị viên duyệt")
    dlg.locator("#bc-confirm-yes").click()
    admin.wait_for_url(re.compile(r"#/broadcasts/\d+$"))
    bid = int(admin.url.rsplit("/", 1)[1])
    expect(admin.locator(".bc-state")).to_have_text("Đã lên lịch")
    expect(admin.locator("#bc-head")).to_contain_text("hằng tuần: Thứ Hai")
    expect(admin.locator("#bc-head")).to_contain_text(f"{tomorrow:%d/%m/%Y} 07:00")
    with psycopg.connect(bc_db) as conn:
        row = conn.execute(
            "SELECT state, starts_at, expires_at, rrule, volume, text, media_id, targets FROM broadcasts WHERE id = %s",
            (bid,),
        ).fetchone()
    assert row is not None
    state, starts, expires, rrule, volume, text, media_id, targets = row
    assert (state, rrule, volume, text, media_id) == (
        "scheduled",
        "FREQ=WEEKLY;BYDAY=MO",
        70,
        "Họp dân 19:00 tại nhà văn hóa",
        None,
    )
    assert starts == datetime.combine(tomorrow, time(7, 0), tz)
    assert expires == datetime.combine(tomorrow, time(8, 0), tz)
    assert targets["kinds"] == ["speaker", "eboard"] and targets["villages"] == ["thoai-giang/trung-binh"]
    with api_as(admin.url.split("#")[0].rstrip("/"), "admin") as api:
        api.post(f"/api/v1/broadcasts/{bid}/cancel").raise_for_status()


def test_an_approval_the_server_refuses_is_said_in_words(open_page: Callable[..., Page], bc_url: str) -> None:
    with api_as(bc_url, "operator") as op:
        r = op.post(
            "/api/v1/broadcasts",
            json={
                "title": "Thông báo thu gom rác",
                "text": "Thứ Bảy",
                "targets": {"villages": ["bac-thanh"]},
            },
        )
        assert r.status_code == 201, r.text
        bid = r.json()["id"]
        admin = open_page("admin")
        admin.click("[data-nav=broadcasts]")
        button = admin.locator(f"#bc-awaiting li[data-broadcast='{bid}'] [data-approve]")
        expect(button).to_be_visible()
        # Its creator cancels it while the admin's page still shows it awaiting approval.
        op.post(f"/api/v1/broadcasts/{bid}/cancel").raise_for_status()
    button.click()
    expect(admin.locator("#bc-notice")).to_have_text(
        "Bản tin này không còn chờ duyệt (đã được duyệt hoặc đã hủy)."
    )
    expect(admin.locator(f"#bc-awaiting li[data-broadcast='{bid}']")).to_have_count(0)
    expect(admin.locator(f"#bc-table tr[data-broadcast='{bid}'] .bc-state")).to_have_text("Đã hủy")
