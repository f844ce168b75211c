"""Notification channels against real local servers: SMTP (aiosmtpd), HTTP receivers standing
in for a JSON webhook, Telegram's Bot API and Zalo's OA/ZNS APIs; retries with backoff."""

import asyncio
import email
import json
import socket
from collections.abc import Iterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from services.alerts import zalo
from services.alerts.channels import Channels, DeliveryFailed
from services.errors import InvalidInput
from tests.alerts.conftest import (
    Receiver,
    alerts,
    all_online,
    load_registry,
    query,
    running,
    set_state,
    settings,
    write_config,
)
from tests.support import wait_for


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def _send(urls: dict[str, str], name: str, data: dict[str, Any] | None = None) -> float:
    async def go() -> float:
        ch = Channels(urls, timeout_s=5)
        try:
            return await ch.send(
                name,
                "[CẢNH BÁO] Loa 1 mất kết nối",
                "Thiết bị: Loa 1\nTừ lúc: 10:00",
                "critical",
                data or {"device": "Loa 1", "since": "10:00 25/11/2026"},
            )
        finally:
            await ch.aclose()

    return asyncio.run(go())


def test_mailto_delivers_vietnamese_mail(smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    _send(
        {"mail": f"mailto://127.0.0.1:{port}?from=ioc@thoaigiang.vn&to=kythuat@thoaigiang.vn&mode=insecure"},
        "mail",
    )
    (env,) = box.messages
    assert env.mail_from == "ioc@thoaigiang.vn" and env.rcpt_tos == ["kythuat@thoaigiang.vn"]
    msg = email.message_from_bytes(env.content)
    assert str(make_header(decode_header(msg["Subject"]))) == "[CẢNH BÁO] Loa 1 mất kết nối"
    assert "Thiết bị: Loa 1" in msg.get_payload(decode=True).decode()


def test_telegram_request_goes_to_the_configured_bot_api(receiver: Receiver) -> None:
    _send({"tg": f"tgram://123456789:AAbbCCdd_eeFF/-1001234567?api={receiver.url('/bot')}"}, "tg")
    (req,) = receiver.requests
    assert req["path"] == "/bot123456789:AAbbCCdd_eeFF/sendMessage"
    body = json.loads(req["body"])
    assert body["chat_id"] == -1001234567
    assert "Loa 1 mất kết nối" in body["text"] and "Từ lúc: 10:00" in body["text"]


def test_zalo_oa_sends_a_cs_message_with_the_access_token(receiver: Receiver) -> None:
    _send({"zalo": f"zalo://tok-123@oa/5512345678901234567?base=http://127.0.0.1:{receiver.port}"}, "zalo")
    (req,) = receiver.requests
    assert req["path"] == "/v3.0/oa/message/cs"
    assert req["headers"]["access_token"] == "tok-123"
    assert req["headers"]["content-type"] == "application/json"
    assert json.loads(req["body"]) == {
        "recipient": {"user_id": "5512345678901234567"},
        "message": {"text": "[CẢNH BÁO] Loa 1 mất kết nối\nThiết bị: Loa 1\nTừ lúc: 10:00"},
    }


def test_zalo_zns_sends_a_template_to_a_phone(receiver: Receiver) -> None:
    _send(
        {"zns": f"zalo://tok-9@zns/0912345678?template_id=245001&base=http://127.0.0.1:{receiver.port}"},
        "zns",
        {"device": "Loa 1", "since": "10:00 25/11/2026", "link": None, "tracking_id": "7-open"},
    )
    (req,) = receiver.requests
    assert req["path"] == "/message/template" and req["headers"]["access_token"] == "tok-9"
    assert json.loads(req["body"]) == {
        "phone": "84912345678",
        "template_id": "245001",
        "tracking_id": "7-open",
        "template_data": {"device": "Loa 1", "since": "10:00 25/11/2026", "tracking_id": "7-open"},
    }


def test_zalo_error_answer_is_a_failed_delivery(receiver: Receiver) -> None:
    receiver.answer = (200, {"error": -216, "message": "Access token is invalid"})
    with pytest.raises(DeliveryFailed, match="Access token is invalid"):
        _send({"zalo": f"zalo://bad@oa/1?base=http://127.0.0.1:{receiver.port}"}, "zalo")


def test_bad_channel_urls_are_refused() -> None:
    with pytest.raises(InvalidInput, match="oa .*or zns"):
        zalo.parse("zalo://tok@somewhere/1")
    with pytest.raises(InvalidInput, match="template_id"):
        zalo.parse("zalo://tok@zns/0912345678")


def test_a_channel_down_is_retried_and_never_blocks_the_others(
    db_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    flaky = Receiver()
    flaky.answer = (500, {"error": "busy"})
    try:
        load_registry(db_url)
        all_online(db_url)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        doc = {
            "rules": {"offline": {"for_s": 0}},
            "channels": {
                "ops": f"json://127.0.0.1:{receiver.port}/ok",
                "flaky": f"json://127.0.0.1:{flaky.port}/x",
                "dead": f"json://127.0.0.1:{dead_port}/x",
            },
            "routes": [{"channels": ["dead", "flaky", "ops"]}],
            "retry": {"max_attempts": 4, "backoff_s": 0.2, "max_backoff_s": 0.5},
        }
        with running(settings(db_url, write_config(tmp_path, doc))):
            set_state(db_url, "spk-tay-binh-1", "offline")
            wait_for(lambda: len(receiver.requests) == 1)
            wait_for(lambda: len(flaky.requests) >= 2)
            flaky.answer = (200, {"ok": True})
            wait_for(
                lambda: (
                    query(db_url, "SELECT channel, status FROM alert_outbox ORDER BY channel")
                    == [("dead", "failed"), ("flaky", "sent"), ("ops", "sent")]
                )
            )
            set_state(db_url, "eb-tay-binh", "offline")
            wait_for(lambda: len(receiver.requests) == 2)
        deliveries = query(
            db_url,
            "SELECT d.channel, d.ok, d.error IS NOT NULL FROM alert_deliveries d"
            " JOIN alert_outbox o ON o.id = d.outbox_id WHERE o.alert_id = %s ORDER BY d.id",
            (alerts(db_url)[0]["id"],),
        )
        assert [d for d in deliveries if d[0] == "dead"] == [("dead", False, True)] * 4
        flaky_ok = [d[1] for d in deliveries if d[0] == "flaky"]
        assert flaky_ok[-1] is True and flaky_ok.count(True) == 1 and len(flaky_ok) >= 2
        assert sum("spk-tay-binh-1" in m["message"] for m in flaky.json()) == len(flaky_ok)
    finally:
        flaky.close()
