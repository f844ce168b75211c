"""GET /api/v1/reports/criteria: JSON, CSV and the PDF (rendered to PNG pages and read back as text),
periods, commune scope, and criteria files with mistakes."""

import csv
import io
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import auth
from services.criteria import CriteriaError, catalogue
from tests.share import world

PASSWORD = "correct-horse-1"
OUT = Path(__file__).resolve().parents[2] / "test-output" / "criteria"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        world.seed(c)
        c.execute("UPDATE villages SET former_commune = 'Xã Bình Thành' WHERE id = 'tay-binh'")
        for d in world.A_DEVICES + world.B_DEVICES:
            world.change(c, d, "online", T0 - timedelta(days=1))
        world.change(c, "spk-tay-binh-1", "offline", T0 + timedelta(days=10))
        auth.add_user(c, "admin", PASSWORD, "admin")
        auth.add_user(c, "op", PASSWORD, "operator", ["thoai-giang"])
        c.commit()
        yield c


def make_client(db_url: str, criteria_file: Path | None = None) -> TestClient:
    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None, database_url=db_url, mqtt_url=None, criteria_file=criteria_file
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(conn: psycopg.Connection, db_url: str) -> Iterator[TestClient]:
    with make_client(db_url) as c:
        yield c


def login(client: TestClient, user: str = "admin") -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def get(client: TestClient, user: str = "admin", **params: str) -> object:
    return client.get("/api/v1/reports/criteria", params=params, headers=login(client, user))


def test_json_a_month_for_one_commune(client: TestClient) -> None:
    r = client.get(
        "/api/v1/reports/criteria",
        params={"period": "2026-11", "commune": "thoai-giang"},
        headers=login(client),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"]["from"] == "2026-11-01" and body["period"]["to"] == "2026-11-30"
    assert body["period"]["start_at"] == "2026-10-31T17:00:00+00:00"
    assert [c["id"] for c in body["communes"]] == ["thoai-giang"]
    items = {i["id"]: i for i in body["items"]}
    assert list(items) == [
        "radio_villages",
        "cameras_online",
        "eboards_online",
        "public_wifi_online",
        "broadcast_reach",
        "data_shared",
    ]
    assert items["radio_villages"]["value"] == 50.0 and items["radio_villages"]["met"] is False
    assert items["radio_villages"]["evidence"][0]["former_commune"] == "Xã Bình Thành"
    assert items["cameras_online"]["value"] == 100.0 and items["cameras_online"]["met"] is True
    assert items["radio_villages"]["source"].startswith("Quyết định 318/QĐ-TTg")
    assert {(r["village"], r["kind"]) for r in body["availability"]} >= {
        ("tay-binh", "speaker"),
        ("trung-binh", "camera"),
    }


def test_from_to_as_days_and_english_names(client: TestClient) -> None:
    r = client.get(
        "/api/v1/reports/criteria",
        params={"from": "2026-11-01", "to": "2026-11-10", "lang": "en"},
        headers=login(client),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["period"]["from"], body["period"]["to"]) == ("2026-11-01", "2026-11-10")
    radio = body["items"][0]
    assert radio["name"] == "Loudspeakers reaching every village" and radio["value"] == 100.0
    assert [c["id"] for c in body["communes"]] == ["thoai-giang", "vong-the"]


def test_a_user_of_one_commune_sees_only_it(client: TestClient) -> None:
    h = login(client, "op")
    r = client.get("/api/v1/reports/criteria", params={"period": "2026-11"}, headers=h)
    assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["communes"]] == ["thoai-giang"]
    villages = {e["village"] for e in r.json()["items"][0]["evidence"]}
    assert villages == {"trung-binh", "tay-binh"}
    r = client.get("/api/v1/reports/criteria", params={"period": "2026-11", "commune": "vong-the"}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = client.get("/api/v1/reports/criteria", params={"period": "2026-11", "format": "pdf"}, headers=h)
    assert r.status_code == 200
    assert "Xã Vọng Thê" not in pdf_text(r.content)


def test_unknown_communes_and_no_sign_in(client: TestClient) -> None:
    r = client.get("/api/v1/reports/criteria", params={"commune": "khong-co"}, headers=login(client))
    assert r.status_code == 404
    client.cookies.clear()  # the sign-in's session cookie
    assert client.get("/api/v1/reports/criteria").status_code == 401


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"period": "2026-13"}, "YYYY-MM"),
        ({"period": "11/2026"}, "YYYY-MM"),
        ({"period": "2026-11", "from": "2026-11-01"}, "not both"),
        ({"from": "2026-11-01"}, "both from and to"),
        ({"from": "2026-02-30", "to": "2026-03-01"}, "not a day of the calendar"),
        ({"from": "1.11.2026", "to": "2026-11-02"}, "YYYY-MM-DD"),
        ({"from": "2026-11-10", "to": "2026-11-01"}, "before it starts"),
        ({"from": "2025-01-01", "to": "2026-11-01"}, "at most 366 days"),
        ({"period": "9999-01"}, "out of range"),
        ({"period": "2026-11", "format": "xlsx"}, "format"),
        ({"period": "2026-11", "perod": "x"}, "perod"),
    ],
)
def test_bad_periods_and_parameters_are_400(client: TestClient, params: dict[str, str], needle: str) -> None:
    r = client.get("/api/v1/reports/criteria", params=params, headers=login(client))
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_csv_is_the_table_with_vietnamese_headers_and_a_bom(client: TestClient) -> None:
    r = client.get(
        "/api/v1/reports/criteria",
        params={"period": "2026-11", "commune": "thoai-giang", "format": "csv"},
        headers=login(client),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="tieu-chi-thoai-giang-2026-11-01-2026-11-30.csv"' in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["Mã chỉ tiêu", "Chỉ tiêu", "Căn cứ", "Kết quả", "Đơn vị", "Mục tiêu", "Đánh giá"]
    by = {row[0]: row for row in rows[1:]}
    assert by["radio_villages"][3:] == ["50", "%", "100", "Chưa đạt"]
    assert by["cameras_online"][3:] == ["100", "%", "95", "Đạt"]
    assert by["eboards_online"][3] == ""  # no e-board: no value
    assert by["data_shared"][4] == "lần"
    r = client.get(
        "/api/v1/reports/criteria",
        params={"period": "2026-11", "format": "csv", "lang": "en"},
        headers=login(client),
    )
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Indicator id", "Indicator", "Source"] and rows[1][-1] == "Not met"


def test_csv_cells_never_become_formulas(conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "indicators:\n"
        '  - {id: x, name: "=HYPERLINK(\\"http://evil.example\\")", source: "@SUM(A1)", measure: data_shared,'
        " target: 1}\n",
        encoding="utf-8",
    )
    with make_client(db_url, f) as client:
        r = client.get(
            "/api/v1/reports/criteria", params={"period": "2026-11", "format": "csv"}, headers=login(client)
        )
    row = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))[1]
    assert row[1].startswith("'=HYPERLINK") and row[2] == "'@SUM(A1)"


def pdf_text(body: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=body, capture_output=True, check=True, timeout=60
    ).stdout.decode("utf-8")


@pytest.mark.skipif(
    shutil.which("pdftoppm") is None, reason="poppler-utils: deploy/install-deps.sh installs it"
)
def test_the_pdf_is_a4_in_vietnamese_with_charts_and_a_signature_block(client: TestClient) -> None:
    r = client.get(
        "/api/v1/reports/criteria",
        params={"period": "2026-11", "commune": "thoai-giang", "format": "pdf"},
        headers=login(client),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert 'filename="tieu-chi-thoai-giang-2026-11-01-2026-11-30.pdf"' in r.headers["content-disposition"]
    text = pdf_text(r.content)
    for words in (
        "BÁO CÁO TỰ ĐÁNH GIÁ TIÊU CHÍ XÃ THÔNG MINH",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        "UBND XÃ THOẠI GIANG",
        "Xã Thoại Giang — tỉnh An Giang",
        "tháng 11/2026 (từ ngày 01/11/2026 đến ngày 30/11/2026)",
        "Đài truyền thanh và hệ thống loa",
        "Quyết định 318/QĐ-TTg",
        "Chưa đạt",
        "Đạt",
        "Tỷ lệ hoạt động theo ấp và loại thiết bị",
        "Ấp Tây Bình",
        "thuộc Xã Bình Thành cũ",
        "NGƯỜI LẬP",
        "CHỦ TỊCH UBND XÃ",
        "(Ký tên, đóng dấu)",
        "Thoại Giang, ngày … tháng … năm …",
    ):
        assert words in text, words
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "thoai-giang-2026-11.pdf").write_bytes(r.content)
    for old in OUT.glob("page-*.png"):
        old.unlink()
    subprocess.run(
        ["pdftoppm", "-r", "80", "-png", str(OUT / "thoai-giang-2026-11.pdf"), str(OUT / "page")],
        check=True,
        timeout=60,
    )
    pages = sorted(OUT.glob("page-*.png"))
    assert 1 <= len(pages) <= 3
    info = subprocess.run(["pdfinfo", "-"], input=r.content, capture_output=True, check=True).stdout.decode()
    assert "595.276 x 841.89 pts (A4)" in info
    # Every font embedded, with a Unicode map (the diacritics are the font's glyphs, and copy out as
    # text), and DejaVu's: a fallback font would draw «ạ» or «ữ» from another face, or as boxes.
    fonts = subprocess.run(
        ["pdffonts", str(OUT / "thoai-giang-2026-11.pdf")], capture_output=True, check=True, text=True
    ).stdout.splitlines()[2:]
    assert fonts, "no font in the PDF"
    for line in fonts:
        name, *_, emb, _sub, uni, _obj, _gen = line.split()
        assert "DejaVu" in name and emb == "yes" and uni == "yes", line


def test_the_pdf_of_every_commune_has_a_section_each(client: TestClient) -> None:
    r = client.get(
        "/api/v1/reports/criteria", params={"period": "2026-11", "format": "pdf"}, headers=login(client)
    )
    assert r.status_code == 200
    text = pdf_text(r.content)
    assert "UBND XÃ THOẠI GIANG" in text and "UBND XÃ VỌNG THÊ" in text
    assert 'filename="tieu-chi-all-2026-11-01-2026-11-30.pdf"' in r.headers["content-disposition"]


def test_a_criteria_file_with_a_typo_stops_the_gateway_with_its_lines(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    f = tmp_path / "criteria.yaml"
    text = catalogue.DEFAULT_FILE.read_text(encoding="utf-8")
    f.write_text(text.replace("measure: broadcast_reach", "measure: broadcast_rech"), encoding="utf-8")
    line = text.splitlines().index("    measure: broadcast_reach") + 1
    with pytest.raises(CriteriaError) as err, make_client(db_url, f):
        pass
    assert f"{f}:{line}: unknown measure 'broadcast_rech'" in str(err.value)


def test_a_file_broken_while_running_is_refused_with_its_lines(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    f = tmp_path / "criteria.yaml"
    f.write_text(catalogue.DEFAULT_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    with make_client(db_url, f) as client:
        h = login(client)
        assert client.get("/api/v1/reports/criteria", headers=h).status_code == 200
        f.write_text(
            "indicators:\n  - {id: a, name: A, source: S, measure: data_shared, target: lots}\n",
            encoding="utf-8",
        )
        r = client.get("/api/v1/reports/criteria", headers=h)
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "config"
    assert r.json()["error"]["detail"] == [
        f"{f}:2: target 'lots' must be a number (met when the value reaches it)"
    ]


def test_the_pdf_in_english(client: TestClient) -> None:
    r = client.get(
        "/api/v1/reports/criteria",
        params={"period": "2026-11", "commune": "thoai-giang", "format": "pdf", "lang": "en"},
        headers=login(client),
    )
    assert r.status_code == 200
    text = pdf_text(r.content)
    for words in (
        "SMART-COMMUNE CRITERIA SELF-ASSESSMENT",
        "SOCIALIST REPUBLIC OF VIETNAM",
        "Loudspeakers reaching every village",
        "Not met",
        "Availability by village and device kind",
        "PREPARED BY",
    ):
        assert words in text, words
