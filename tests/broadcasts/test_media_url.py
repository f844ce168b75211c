"""Signed media URLs: devices fetch audio without a login, for one file, until the expiry."""

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from services import media
from tests.broadcasts.conftest import SECRET, upload, wav
from tests.gateway.conftest import Headers


def test_a_signed_url_serves_its_file_without_a_login(client: TestClient, as_user: Headers) -> None:
    m = upload(client, as_user(), wav(1.0))
    path = media.signed_path(SECRET, m["id"], datetime.now(UTC) + timedelta(minutes=5))
    r = client.get(path)
    assert r.status_code == 200 and r.content == wav(1.0)
    assert r.headers["content-type"] == "audio/wav"


def test_a_signed_url_is_refused_for_another_file(client: TestClient, as_user: Headers) -> None:
    a = upload(client, as_user(), wav(1.0))
    b = upload(client, as_user(), wav(2.0))
    path = media.signed_path(SECRET, a["id"], datetime.now(UTC) + timedelta(minutes=5))
    assert client.get(path.replace(a["id"], b["id"])).status_code == 403


def test_a_signed_url_is_refused_after_its_expiry(client: TestClient, as_user: Headers) -> None:
    m = upload(client, as_user())
    assert (
        client.get(media.signed_path(SECRET, m["id"], datetime.now(UTC) - timedelta(seconds=1))).status_code
        == 403
    )
    path = media.signed_path(SECRET, m["id"], datetime.now(UTC) + timedelta(minutes=5))
    later = path.replace("exp=", "exp=9").split("&sig=")[0] + "&sig=" + path.split("&sig=")[1]
    assert client.get(later).status_code == 403  # a later expiry is another signature
    assert client.get(f"/media/{m['id']}").status_code in (400, 422)


def test_check_signature_follows_the_clock_given() -> None:
    exp = int(datetime(2026, 12, 2, 9, 0, tzinfo=UTC).timestamp())
    sig = media.signature(SECRET, "m-1", exp)
    assert media.check_signature(SECRET, "m-1", exp, sig, datetime(2026, 12, 2, 8, 59, tzinfo=UTC))
    assert not media.check_signature(SECRET, "m-1", exp, sig, datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    assert not media.check_signature(
        "another-key-0123456789", "m-1", exp, sig, datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    )


def test_a_player_may_ask_head_and_ranges_of_a_signed_url(client: TestClient, as_user: Headers) -> None:
    data = wav(1.0)
    m = upload(client, as_user(), data)
    path = media.signed_path(SECRET, m["id"], datetime.now(UTC) + timedelta(minutes=5))
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(data)
    part = client.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert client.head(path.replace("sig=", "sig=0")).status_code == 403
