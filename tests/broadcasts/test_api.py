"""The broadcast and media API on the real database: bad input, roles, approval, the audit log."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services import media
from tests.broadcasts.conftest import settings, upload, wav
from tests.gateway.conftest import Headers
from tests.support import scalar


def test_a_file_that_is_not_audio_is_422(client: TestClient, as_user: Headers) -> None:
    r = client.post(
        "/api/v1/media", files={"file": ("x.mp3", b"ID3 not really" * 100, "audio/mpeg")}, headers=as_user()
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"]


def test_a_wav_named_and_claimed_mp3_is_taken_as_the_wav_it_is(client: TestClient, as_user: Headers) -> None:
    r = client.post("/api/v1/media", files={"file": ("x.mp3", wav(), "audio/mpeg")}, headers=as_user())
    assert r.status_code == 201
    assert r.json()["content_type"] == "audio/wav"


def test_a_file_over_50_mb_is_413(client: TestClient, as_user: Headers) -> None:
    # 50 MB as SPEC §9 counts them (decimal): one byte over is refused, though under 50 MiB
    head = wav()
    big = head + b"\0" * (50_000_001 - len(head))
    r = client.post("/api/v1/media", files={"file": ("big.wav", big, "audio/wav")}, headers=as_user())
    assert r.status_code == 413


def test_the_upload_limit_is_ioc_media_max_bytes_and_its_413_names_it(
    seeded: str, tmp_path: Path, as_user: Headers
) -> None:
    """A deployment whose speakers fetch over a slow 4G link lowers the limit; the refusal says the
    limit in Vietnamese first and the setting to change, whichever layer refuses it."""
    head = wav()
    limit = 200_000
    with TestClient(create_app(settings(seeded, tmp_path, media_max_bytes=limit))) as c:
        at_limit = head + b"\0" * (limit - len(head))
        r = c.post("/api/v1/media", files={"file": ("ok.wav", at_limit, "audio/wav")}, headers=as_user())
        assert r.status_code == 201, r.text
        # One byte over: the body fits the request limit (file + form framing), the route refuses it.
        r = c.post(
            "/api/v1/media", files={"file": ("big.wav", at_limit + b"\0", "audio/wav")}, headers=as_user()
        )
        assert r.status_code == 413
        assert "Tệp quá lớn: tối đa 0,2 MB" in r.text and "IOC_MEDIA_MAX_BYTES" in r.text
        # Far over, with a Content-Length: refused before a byte of the body is read.
        far = head + b"\0" * (3 * limit)
        r = c.post("/api/v1/media", files={"file": ("far.wav", far, "audio/wav")}, headers=as_user())
        assert r.status_code == 413 and "IOC_MEDIA_MAX_BYTES" in r.text

        # Streamed without a length (chunked): counted as it arrives, refused once past the limit
        # (that the rest is never read, on a real socket: tests/security/test_body_limits.py).
        boundary = "x-ioc-test"

        def form() -> Iterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.wav"\r\n'
                "Content-Type: audio/wav\r\n\r\n"
            ).encode() + head
            for _ in range(100):  # 6.4 MB if it were all read
                yield b"\0" * 64 * 1024
            yield f"\r\n--{boundary}--\r\n".encode()

        r = c.post(
            "/api/v1/media",
            content=form(),
            headers={**as_user(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert r.status_code == 413 and "IOC_MEDIA_MAX_BYTES" in r.text
    assert GatewaySettings(_env_file=None).http_body_max_bytes_by_path == {  # type: ignore[call-arg]
        "/api/v1/media": media.MAX_BYTES + media.FORM_OVERHEAD
    }


def test_upload_reads_duration_and_stores_by_sha256(
    client: TestClient, as_user: Headers, tmp_path: Path
) -> None:
    m = upload(client, as_user(), wav(1.5))
    assert m["duration_s"] == 1.5 and m["content_type"] == "audio/wav"
    assert (tmp_path / "media" / m["sha256"]).read_bytes() == wav(1.5)


def test_viewers_cannot_upload_or_send(client: TestClient, as_user: Headers) -> None:
    r = client.post("/api/v1/media", files={"file": ("a.wav", wav(), "audio/wav")}, headers=as_user("viewer"))
    assert r.status_code == 403
    body = {"title": "x", "text": "y", "targets": {"villages": ["xom-1"]}}
    assert client.post("/api/v1/broadcasts", json=body, headers=as_user("viewer")).status_code == 403
    assert client.get("/api/v1/broadcasts", headers=as_user("viewer")).status_code == 200


def test_unknown_villages_and_devices_are_named_in_a_400(client: TestClient, as_user: Headers) -> None:
    body = {
        "title": "x",
        "text": "y",
        "targets": {"villages": ["xom-99"], "devices": ["spk-nope", "spk-xom-1"]},
    }
    r = client.post("/api/v1/broadcasts", json=body, headers=as_user())
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert "xom-99" in msg and "spk-nope" in msg and "spk-xom-1" not in msg
    assert scalar(client.app.state.settings.database_url, "SELECT count(*) FROM broadcasts") == 0  # type: ignore[attr-defined]


def test_a_broadcast_already_expired_is_refused(client: TestClient, as_user: Headers) -> None:
    past = datetime.now(UTC) - timedelta(hours=3)
    body = {
        "title": "x",
        "text": "y",
        "targets": {"villages": ["xom-1"]},
        "starts_at": past.isoformat(),
        "expires_at": (past + timedelta(hours=1)).isoformat(),
    }
    r = client.post("/api/v1/broadcasts", json=body, headers=as_user())
    assert r.status_code == 400
    assert "expired" in r.json()["error"]["message"]


def test_an_operator_normal_broadcast_waits_for_an_admin(client: TestClient, as_user: Headers) -> None:
    m = upload(client, as_user("op-tg"))
    body = {
        "title": "Bản tin sáng",
        "priority": "normal",
        "media_id": m["id"],
        "targets": {"villages": ["trung-binh"]},
    }
    r = client.post("/api/v1/broadcasts", json=body, headers=as_user("op-tg"))
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["state"] == "awaiting_approval"
    assert client.post(f"/api/v1/broadcasts/{b['id']}/approve", headers=as_user("op-tg")).status_code == 403
    assert client.post(f"/api/v1/broadcasts/{b['id']}/approve", headers=as_user("viewer")).status_code == 403
    r = client.post(f"/api/v1/broadcasts/{b['id']}/approve", headers=as_user("admin"))
    assert r.status_code == 200 and r.json()["state"] == "scheduled" and r.json()["approved_by"] == "admin"
    assert client.post(f"/api/v1/broadcasts/{b['id']}/approve", headers=as_user("admin")).status_code == 409
    actions = {e["action"] for e in client.get("/api/v1/audit", headers=as_user("admin")).json()["items"]}
    assert {
        "POST /api/v1/media",
        "POST /api/v1/broadcasts",
        f"POST /api/v1/broadcasts/{b['id']}/approve",
    } <= actions


def test_an_emergency_from_an_operator_goes_at_once(client: TestClient, as_user: Headers) -> None:
    m = upload(client, as_user("op-tg"))
    body = {
        "title": "Lũ khẩn cấp",
        "priority": "emergency",
        "risk_level": 4,
        "media_id": m["id"],
        "targets": {"communes": ["thoai-giang"], "kinds": ["speaker"]},
    }
    b = client.post("/api/v1/broadcasts", json=body, headers=as_user("op-tg")).json()
    assert b["state"] == "scheduled"
    got = client.get(f"/api/v1/broadcasts/{b['id']}", headers=as_user("op-tg")).json()
    assert {c["village"] for c in got["coverage"]} == {"trung-binh", "tay-binh"}
    assert not any(c["reached"] for c in got["coverage"])


def test_commune_limited_users_neither_target_nor_see_other_communes(
    client: TestClient, as_user: Headers
) -> None:
    body = {"title": "x", "text": "y", "targets": {"communes": ["long-thanh"]}, "priority": "emergency"}
    assert client.post("/api/v1/broadcasts", json=body, headers=as_user("op-tg")).status_code == 403
    b = client.post("/api/v1/broadcasts", json=body, headers=as_user("admin")).json()
    assert client.get(f"/api/v1/broadcasts/{b['id']}", headers=as_user("op-tg")).status_code == 404
    assert client.get("/api/v1/broadcasts", headers=as_user("op-tg")).json()["items"] == []
    assert [i["id"] for i in client.get("/api/v1/broadcasts", headers=as_user("viewer")).json()["items"]] == [
        b["id"]
    ]


def test_only_the_creator_or_an_admin_cancels(client: TestClient, as_user: Headers) -> None:
    body = {
        "title": "x",
        "text": "y",
        "targets": {"villages": ["thoai-giang/tay-binh"]},
        "priority": "emergency",
    }
    b = client.post("/api/v1/broadcasts", json=body, headers=as_user("admin")).json()
    assert client.post(f"/api/v1/broadcasts/{b['id']}/cancel", headers=as_user("op-tg")).status_code == 403
    r = client.post(f"/api/v1/broadcasts/{b['id']}/cancel", headers=as_user("admin"))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    audit = client.get("/api/v1/audit", headers=as_user("admin")).json()["items"]
    cancels = [e for e in audit if e["action"] == f"POST /api/v1/broadcasts/{b['id']}/cancel"]
    assert [e["actor"] for e in cancels] == ["admin"]  # the change is audited, the refusal is not one


def test_the_201_lists_every_delivery_before_the_worker_has_run(client: TestClient, as_user: Headers) -> None:
    m = upload(client, as_user("op-tg"))
    body = {
        "title": "Lũ khẩn cấp",
        "priority": "emergency",
        "media_id": m["id"],
        "targets": {"villages": ["trung-binh", "tay-binh"]},
    }
    r = client.post("/api/v1/broadcasts", json=body, headers=as_user("op-tg"))
    assert r.status_code == 201
    b = r.json()
    # No delivery worker runs in this test: the answer still names what will be delivered.
    assert sorted((d["device_id"], d["state"]) for d in b["deliveries"]) == [
        ("eb-tay-binh", "scheduled"),
        ("spk-tay-binh-1", "scheduled"),
        ("spk-trung-binh-1", "scheduled"),
    ]
    assert {"device_id", "commune", "village", "state", "reason", "updated_at"} <= set(b["deliveries"][0])
    assert (
        client.get(f"/api/v1/broadcasts/{b['id']}", headers=as_user()).json()["deliveries"] == b["deliveries"]
    )


def test_a_camera_named_as_a_target_is_a_400_naming_it(client: TestClient, as_user: Headers) -> None:
    body = {"title": "x", "text": "y", "targets": {"devices": ["cam-ubnd-1", "eb-tay-binh"]}}
    r = client.post("/api/v1/broadcasts", json=body, headers=as_user())
    assert r.status_code == 400
    assert "cam-ubnd-1" in r.json()["error"]["message"] and "eb-tay-binh" not in r.json()["error"]["message"]
