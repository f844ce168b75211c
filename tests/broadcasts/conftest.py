"""Broadcasts: the gateway in-process on the seeded two-commune database, audio files, a clock."""

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.gateway.conftest import Headers, headers_for, seed

SECRET = "test-secret-key-0123456789"


def wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A real WAV file of silence."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(b"\x80" * int(seconds * rate))
    return buf.getvalue()


def settings(url: str, data_dir: Path, **kw: object) -> GatewaySettings:
    return GatewaySettings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, mqtt_url=None, secret_key=SECRET, data_dir=data_dir, **kw
    )


@pytest.fixture
def seeded(db_url: str) -> str:
    seed(db_url)
    return db_url


@pytest.fixture
def client(seeded: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings(seeded, tmp_path))) as c:
        yield c


@pytest.fixture
def as_user(seeded: str) -> Headers:
    return headers_for(seeded)


def upload(
    client: TestClient, headers: dict[str, str], data: bytes | None = None, ctype: str = "audio/wav"
) -> dict:
    r = client.post("/api/v1/media", files={"file": ("a.wav", data or wav(), ctype)}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()
