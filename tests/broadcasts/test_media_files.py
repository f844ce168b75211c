"""Uploads of real audio files (made by Debian's encoders: tests/broadcasts/audio/make.sh): the
format and the duration come from the bytes, never from the name or the claimed type."""

import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import media
from services.errors import InvalidInput
from tests.gateway.conftest import Headers

AUDIO = Path(__file__).parent / "audio"
# file -> (content type read from it, its length as LAME/sox decode it)
REAL = {
    "pcm16-1.5s.wav": ("audio/wav", 1.5),
    "ulaw-1.5s.wav": ("audio/wav", 1.5),
    "ima-adpcm-1.5s.wav": ("audio/wav", 1.5),  # mutagen alone said 0.003 s (blocks, not samples)
    "piped-1.5s.wav": ("audio/wav", 1.5),  # mutagen alone said 134,217 s (the unfixed header)
    "cbr-id3-2s.mp3": ("audio/mpeg", 2.05),
    "vbr-2s.mp3": ("audio/mpeg", 2.0),
    "mpeg25-bare-1.5s.mp3": ("audio/mpeg", 1.59),  # mutagen alone did not know it as MP3
    "vorbis-2s.ogg": ("audio/ogg", 2.0),
    "opus-2s.ogg": ("audio/ogg", 2.0),
    "speex-1.5s.ogg": ("audio/ogg", 1.5),
}
# A file without a Xing/Info frame is timed from its bit rate: a few percent off.
TOLERANCE_S = 0.1


@pytest.mark.parametrize("name", sorted(REAL))
def test_a_real_audio_file_is_read_for_its_format_and_duration_whatever_its_name_claims(
    client: TestClient, as_user: Headers, name: str
) -> None:
    data = (AUDIO / name).read_bytes()
    # Named and typed as something else: a clerk's renamed file, a browser's guess.
    r = client.post(
        "/api/v1/media", files={"file": ("ban-tin.bin", data, "application/octet-stream")}, headers=as_user()
    )
    assert r.status_code == 201, r.text
    m = r.json()
    content_type, seconds = REAL[name]
    assert m["content_type"] == content_type
    assert abs(m["duration_s"] - seconds) <= TOLERANCE_S, m
    assert set(m) == {"id", "duration_s", "sha256", "content_type"}
    other = "x.ogg" if content_type != "audio/ogg" else "x.mp3"
    again = client.post("/api/v1/media", files={"file": (other, data, "audio/ogg")}, headers=as_user())
    assert again.status_code == 201 and again.json()["content_type"] == content_type


@pytest.mark.parametrize(
    ("name", "data", "ctype"),
    [
        ("bao-cao.mp3", "Kính gửi UBND xã,\nbản tin sáng nay…\n".encode() * 200, "audio/mpeg"),
        ("make.mp3", (AUDIO / "make.sh").read_bytes(), "audio/mpeg"),
        ("anh.wav", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, "audio/wav"),
        ("tai-lieu.ogg", b"%PDF-1.4\n" + b"1 0 obj << >> endobj\n" * 300, "audio/ogg"),
        ("rong.wav", b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\x00" * 16, "audio/wav"),
    ],
)
def test_a_file_that_is_not_audio_is_422_whatever_its_name(
    client: TestClient, as_user: Headers, name: str, data: bytes, ctype: str
) -> None:
    r = client.post("/api/v1/media", files={"file": (name, data, ctype)}, headers=as_user())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "unprocessable" and r.json()["error"]["message"]


def test_audio_of_another_format_is_422_naming_it(client: TestClient, as_user: Headers) -> None:
    data = (AUDIO / "native-1.5s.flac").read_bytes()
    r = client.post("/api/v1/media", files={"file": ("x.mp3", data, "audio/mpeg")}, headers=as_user())
    assert r.status_code == 422
    assert "FLAC" in r.json()["error"]["message"]


_REAL_BYTES = [(AUDIO / n).read_bytes() for n in sorted(REAL)]


@st.composite
def _damaged(draw: st.DrawFn) -> bytes:
    """A real file truncated, with bytes overwritten, or with junk before it."""
    data = bytearray(draw(st.sampled_from(_REAL_BYTES)))
    rng = random.Random(draw(st.integers()))
    cut = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        data = data[:cut]
    for _ in range(draw(st.integers(0, 20))):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    if draw(st.booleans()):
        data = bytearray(draw(st.binary(max_size=64))) + data
    return bytes(data)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.one_of(_damaged(), st.binary(max_size=4096)))
def test_damaged_files_are_audio_with_a_duration_or_refused_in_words(data: bytes) -> None:
    try:
        content_type, seconds = media.inspect(data)
    except InvalidInput as err:
        assert err.message
        return
    assert content_type in ("audio/mpeg", "audio/wav", "audio/ogg")
    assert 0 < seconds < 24 * 3600
