"""Broadcasts as text through the alert channels: asked in the POST (or by default for an
emergency), queued by the delivery worker's round, sent by a real alert engine to local receivers
that check the exact requests (Zalo OA, Telegram's Bot API), retried, and shown per channel."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from services import media
from services.broadcasts import delivery, store
from services.broadcasts import texts as broadcast_texts
from tests.alerts.conftest import Receiver, running, write_config
from tests.alerts.conftest import settings as alert_settings
from tests.broadcasts.conftest import SECRET, settings, upload
from tests.broadcasts.conftest import wav as wav_bytes
from tests.gateway.conftest import Headers
from tests.support import wait_for

TOKEN = "123456789:AAbbCCdd_eeFF"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def alerts_file(tmp_path: Path, receiver: Receiver) -> Path:
    base = f"http://127.0.0.1:{receiver.port}"
    return write_config(
        tmp_path,
        {
            "channels": {
                "zalo_oa": f"zalo://tok-123@oa/5512345678901234567?base={base}",
                "telegram-xa": f"tgram://{TOKEN}/-1001234567?api={base}/bot",
            },
            "routes": [{"match": {"rule": "none"}, "channels": ["zalo_oa"]}],
            "retry": {"backoff_s": 0.2, "max_backoff_s": 0.5},
        },
    )


@pytest.fixture
def http(seeded: str, tmp_path: Path, alerts_file: Path) -> Iterator[TestClient]:
    s = settings(seeded, tmp_path, alerts_file=alerts_file, broadcast_emergency_channels="zalo_oa, gone")
    with TestClient(create_app(s)) as c:
        yield c


def post(http: TestClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    body = {
        "title": "Cảnh báo lũ",
        "priority": "emergency",
        "risk_level": 3,
        "media_id": upload(http, auth)["id"],
        "targets": {"villages": ["trung-binh"], "kinds": ["speaker"]},
        **body,
    }
    r = http.post("/api/v1/broadcasts", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return r.json()


def round_(db_url: str, at: datetime | None = None) -> None:
    """One round of the delivery worker."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        delivery.tick(conn, at or datetime.now(UTC), "Asia/Ho_Chi_Minh", "http://ioc.example:8000", SECRET)


def texts(http: TestClient, auth: dict[str, str], bid: int) -> list[dict[str, Any]]:
    r = http.get(f"/api/v1/broadcasts/{bid}", headers=auth)
    assert r.status_code == 200
    return r.json()["texts"]


def test_a_broadcast_goes_out_as_text_to_the_channels_it_names(
    seeded: str, http: TestClient, as_user: Headers, receiver: Receiver, alerts_file: Path
) -> None:
    auth = as_user("op-tg")
    b = post(http, auth, channels=["zalo_oa", "telegram-xa"])
    assert b["channels"] == ["zalo_oa", "telegram-xa"] and b["texts"] == []
    round_(seeded)
    assert {(t["channel"], t["state"]) for t in texts(http, auth, b["id"])} == {
        ("telegram-xa", "scheduled"),
        ("zalo_oa", "scheduled"),
    }
    with running(alert_settings(seeded, alerts_file)):
        wait_for(lambda: len(receiver.requests) == 2)
        wait_for(lambda: all(t["state"] == "sent" for t in texts(http, auth, b["id"])))
    by_path = {r["path"]: r for r in receiver.requests}
    zalo = by_path["/v3.0/oa/message/cs"]
    assert zalo["headers"]["access_token"] == "tok-123"
    text = json.loads(zalo["body"])["message"]["text"]
    lines = text.split("\n")
    assert lines[:6] == [
        "[KHẨN CẤP] Cảnh báo lũ",
        "Thông báo của Xã Thoại Giang",
        "Mức ưu tiên: Khẩn cấp",
        "Cấp độ rủi ro thiên tai: cấp 3, rủi ro lớn",
        "Gửi tới: Ấp Trung Bình",
        lines[5],
    ]
    assert lines[5].startswith("Phát lúc ") and ", hiệu lực đến " in lines[5] and len(lines) == 6
    assert json.loads(zalo["body"])["recipient"] == {"user_id": "5512345678901234567"}
    telegram = json.loads(by_path[f"/bot{TOKEN}/sendMessage"]["body"])
    assert telegram["chat_id"] == -1001234567
    assert "[KHẨN CẤP] Cảnh báo lũ" in telegram["text"] and "Gửi tới: Ấp Trung Bình" in telegram["text"]
    (sent,) = [t for t in texts(http, auth, b["id"]) if t["channel"] == "zalo_oa"]
    assert sent["error"] is None and sent["attempts"] == 1 and sent["updated_at"]


def test_a_channel_that_fails_is_retried_and_its_error_shown(
    seeded: str, http: TestClient, as_user: Headers, receiver: Receiver, alerts_file: Path
) -> None:
    auth = as_user("op-tg")
    receiver.answer = (200, {"error": -216, "message": "Access token is invalid"})
    b = post(http, auth, channels=["zalo_oa"], priority="normal")  # an operator's: awaits approval
    r = http.post(f"/api/v1/broadcasts/{b['id']}/approve", headers=as_user("admin"))
    assert r.status_code == 200
    round_(seeded)
    with running(alert_settings(seeded, alerts_file)):
        (failing,) = wait_for(lambda: [t for t in texts(http, auth, b["id"]) if t["state"] == "retrying"])
        assert "Access token is invalid" in failing["error"]
        receiver.answer = (200, {"error": 0, "message": "Success"})
        (sent,) = wait_for(lambda: [t for t in texts(http, auth, b["id"]) if t["state"] == "sent"])
    assert sent["attempts"] >= 2 and len(receiver.requests) == sent["attempts"]
    assert json.loads(receiver.requests[-1]["body"])["message"]["text"].startswith(
        "[THÔNG THƯỜNG] Cảnh báo lũ"
    )


def test_an_emergency_takes_the_default_channels_and_unknown_ones_are_refused(
    http: TestClient, as_user: Headers
) -> None:
    auth = as_user("op-tg")
    # IOC_BROADCAST_EMERGENCY_CHANNELS names zalo_oa and a channel the file lost: skipped.
    assert post(http, auth)["channels"] == ["zalo_oa"]
    assert post(http, auth, channels=[])["channels"] == []
    assert post(http, auth, priority="priority")["channels"] == []
    r = http.post(
        "/api/v1/broadcasts",
        json={
            "title": "x",
            "priority": "emergency",
            "text": "x",
            "targets": {"villages": ["tay-binh"]},
            "channels": ["zalo_oa", "facebook"],
        },
        headers=auth,
    )
    assert r.status_code == 400 and "'facebook'" in r.text and "telegram-xa" in r.text


def test_texts_of_a_cancelled_broadcast_are_cancelled_and_unsent_ones_expire(
    seeded: str, http: TestClient, as_user: Headers
) -> None:
    auth = as_user("op-tg")
    cancelled = post(http, auth, channels=["zalo_oa"])
    expiry = datetime.now(UTC) + timedelta(minutes=10)
    lasting = post(http, auth, channels=["telegram-xa"], expires_at=expiry.isoformat())
    round_(seeded)
    assert http.post(f"/api/v1/broadcasts/{cancelled['id']}/cancel", headers=auth).status_code == 200
    assert [t["state"] for t in texts(http, auth, cancelled["id"])] == ["cancelled"]
    round_(seeded, expiry)
    (gone,) = texts(http, auth, lasting["id"])
    assert gone["state"] == "failed" and gone["error"] == "expired before it was sent"


def test_the_compose_form_learns_the_channel_names_and_never_their_urls(
    http: TestClient, as_user: Headers
) -> None:
    r = http.get("/api/v1/broadcasts/channels", headers=as_user("viewer"))
    assert r.status_code == 200
    assert r.json() == {"channels": ["telegram-xa", "zalo_oa"], "emergency": ["zalo_oa"]}
    assert "tok-123" not in r.text and TOKEN not in r.text
    assert http.get("/api/v1/broadcasts/channels").status_code == 401


def test_each_occurrence_of_a_repeated_broadcast_sends_its_texts_once(seeded: str, tmp_path: Path) -> None:
    t0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)  # 08:00 in the commune
    with psycopg.connect(seeded, autocommit=True) as conn:
        m = media.store(conn, tmp_path, wav_bytes(), "admin")
        with conn.transaction():
            b = store.create(
                conn,
                title="Bản tin sáng",
                priority="normal",
                media_id=m.id,
                text=None,
                targets={"villages": ["trung-binh"]},
                starts_at=t0,
                rrule="FREQ=DAILY",
                expires_at=t0 + timedelta(minutes=30),
                risk_level=None,
                volume=None,
                actor="admin",
                role="admin",
                scope=None,
                now=t0,
                tz="Asia/Ho_Chi_Minh",
                channels=["zalo_oa"],
                known_channels=["zalo_oa", "telegram-xa"],
            )
        for at in (t0, t0 + timedelta(minutes=1), t0 + timedelta(days=1), t0 + timedelta(days=1, minutes=5)):
            delivery.tick(conn, at, "Asia/Ho_Chi_Minh", "http://ioc.example:8000", SECRET)
        rows = conn.execute(
            "SELECT occurrence_at, title FROM alert_outbox WHERE broadcast_id = %s ORDER BY id", (b.id,)
        ).fetchall()
        assert [r[0] for r in rows] == [t0, t0 + timedelta(days=1)]
        assert rows[0][1] == "[THÔNG THƯỜNG] Bản tin sáng"
        latest = store.get(conn, b.id)
        assert [(x["channel"], x["state"]) for x in broadcast_texts.rows(conn, latest)] == [
            ("zalo_oa", "scheduled")
        ]
