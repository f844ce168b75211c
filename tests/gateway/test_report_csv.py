"""The operator's availability report as a CSV a clerk opens in Excel: BOM, Vietnamese headers
(English with ?lang=en), names not ids, hours, local times, the rows the report page shows."""

import csv
import io
from datetime import UTC, datetime

import psycopg
from fastapi.testclient import TestClient

from tests.gateway.conftest import Headers

# 1 March 2026 in Asia/Ho_Chi_Minh (UTC+7): the speaker of Tây Bình is online 18 h, offline 6 h.
FROM, TO = "2026-03-01T00:00:00+07:00", "2026-03-02T00:00:00+07:00"
ONLINE_AT, OFFLINE_AT = datetime(2026, 2, 28, 17, tzinfo=UTC), datetime(2026, 3, 1, 11, tzinfo=UTC)


def _history(url: str) -> None:
    with psycopg.connect(url) as conn:
        for seq, state, at in ((900001, "online", ONLINE_AT), (900002, "offline", OFFLINE_AT)):
            conn.execute(
                "INSERT INTO state_changes (seq, device_id, commune_id, village_id, kind, state, at)"
                " VALUES (%s, 'spk-tay-binh-1', 'thoai-giang', 'tay-binh', 'speaker', %s, %s)",
                (seq, state, at),
            )


def _sheet(client: TestClient, headers: dict[str, str], **params: str) -> tuple[bytes, list[list[str]]]:
    r = client.get(
        "/api/v1/reports/availability",
        params={"from": FROM, "to": TO, "format": "csv", **params},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    return r.content, list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))


def test_the_report_csv_is_a_vietnamese_sheet_by_village(
    client: TestClient, seeded: str, as_user: Headers
) -> None:
    _history(seeded)
    raw, rows = _sheet(client, as_user())
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with the BOM
    kinds = [
        f"{k}: {w}"
        for k in ("Camera", "Loa", "Bảng điện tử", "Điểm Wi-Fi", "Bộ định tuyến")
        for w in ("số thiết bị", "đang trực tuyến")
    ]
    assert rows[0] == [
        "Xã", "Xóm / ấp", "Tỷ lệ sẵn sàng (%)", "Số thiết bị", "Đang trực tuyến", *kinds,
        "Giờ trực tuyến", "Giờ mất kết nối", "Giờ bảo trì", "Từ lúc", "Đến lúc",
    ]  # fmt: skip
    # Communes and villages by name, in the order people read them; the period on the commune's clock.
    assert [r[:2] for r in rows[1:]] == [
        ["Xã Long Thạnh", "Xóm 1"],
        ["Xã Thoại Giang", "Ấp Tây Bình"],
        ["Xã Thoại Giang", "Ấp Trung Bình"],
    ]
    tay_binh = dict(zip(rows[0], rows[2], strict=True))
    # Numbers as a spreadsheet set to vi-VN reads them: a comma for decimals, none for whole ones
    # (LibreOffice in vi-VN takes «99.5» for text; English sheets keep the dot, below).
    assert tay_binh["Tỷ lệ sẵn sàng (%)"] == "75"
    assert (tay_binh["Giờ trực tuyến"], tay_binh["Giờ mất kết nối"], tay_binh["Giờ bảo trì"]) == (
        "18",
        "6",
        "0",
    )
    assert (
        tay_binh["Loa: số thiết bị"],
        tay_binh["Bảng điện tử: số thiết bị"],
        tay_binh["Camera: số thiết bị"],
    ) == (
        "1",
        "1",
        "0",
    )
    assert (tay_binh["Từ lúc"], tay_binh["Đến lúc"]) == ("01/03/2026 00:00", "02/03/2026 00:00")
    assert dict(zip(rows[0], rows[3], strict=True))["Tỷ lệ sẵn sàng (%)"] == ""  # nothing to judge by


def test_the_report_csv_in_english_and_by_device(client: TestClient, seeded: str, as_user: Headers) -> None:
    _history(seeded)
    _, rows = _sheet(client, as_user(), lang="en", group_by="device", commune="thoai-giang", kind="speaker")
    assert rows[0] == [
        "Commune", "Device name", "Device id", "Device kind", "Village", "Availability (%)", "Devices",
        "Online now", "Hours online", "Hours offline", "Hours in maintenance", "From", "To",
    ]  # fmt: skip
    assert [r[1:5] for r in rows[1:]] == [
        ["spk-tay-binh-1", "spk-tay-binh-1", "Speakers", "Ấp Tây Bình"],
        ["spk-trung-binh-1", "spk-trung-binh-1", "Speakers", "Ấp Trung Bình"],
    ]
    assert rows[1][5] == "75.0"
