"""Audio files of broadcasts: checked with mutagen, stored by sha256, served by signed URLs."""

import hashlib
import hmac
import io
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mutagen
import psycopg
from mutagen.mp3 import MP3
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE
from psycopg.rows import class_row

from services.errors import InvalidInput, NotFound

MAX_BYTES = 50 * 1024 * 1024
# The formats accepted, by the content type a client may claim (mutagen reads the file's own).
_FORMATS: dict[str, tuple[type, ...]] = {
    "audio/mpeg": (MP3,),
    "audio/mp3": (MP3,),
    "audio/wav": (WAVE,),
    "audio/x-wav": (WAVE,),
    "audio/wave": (WAVE,),
    "audio/vnd.wave": (WAVE,),
    "audio/ogg": (OggVorbis, OggOpus, OggFLAC),
}
_TYPE_OF = {
    MP3: "audio/mpeg",
    WAVE: "audio/wav",
    OggVorbis: "audio/ogg",
    OggOpus: "audio/ogg",
    OggFLAC: "audio/ogg",
}
# A client that does not say (or says a generic type) gets what the file is.
_UNSAID = ("", "application/octet-stream")


@dataclass(frozen=True)
class Media:
    id: str
    sha256: str
    content_type: str
    duration_s: float
    size_bytes: int
    uploaded_by: str
    created_at: datetime | None = None


class TooLarge(InvalidInput):
    """A file over MAX_BYTES (413)."""

    code = "too_large"


def inspect(data: bytes, claimed: str) -> tuple[str, float]:
    """(content type, duration in seconds) of an audio file, read from its bytes; InvalidInput
    unless it is MP3, WAV or OGG audio of the type claimed."""
    claimed = claimed.split(";")[0].strip().lower()
    allowed = _FORMATS.get(claimed)
    if allowed is None and claimed not in _UNSAID:
        raise InvalidInput(f"content type {claimed!r} is not accepted: send MP3, WAV or OGG audio")
    try:
        audio = mutagen.File(io.BytesIO(data))  # type: ignore[attr-defined]
    except mutagen.MutagenError as err:
        raise InvalidInput(f"the file is not readable audio: {err}") from err
    if audio is None or type(audio) not in _TYPE_OF:
        raise InvalidInput("the file is not MP3, WAV or OGG audio")
    if allowed is not None and type(audio) not in allowed:
        raise InvalidInput(f"the file is {_TYPE_OF[type(audio)]}, not {claimed} as claimed")
    duration = float(getattr(audio.info, "length", 0) or 0)
    if not duration > 0:
        raise InvalidInput("the audio has no duration")
    return _TYPE_OF[type(audio)], round(duration, 3)


def store(conn: psycopg.Connection, media_dir: Path, data: bytes, claimed: str, actor: str) -> Media:
    """Check and keep an uploaded file (one copy per sha256) and its row."""
    if len(data) > MAX_BYTES:
        raise TooLarge(f"the file is {len(data)} bytes; at most {MAX_BYTES} are accepted")
    content_type, duration = inspect(data, claimed)
    digest = hashlib.sha256(data).hexdigest()
    path = media_dir / digest
    if not path.exists():
        media_dir.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=media_dir, prefix=".upload-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    with conn.cursor(row_factory=class_row(Media)) as cur:
        row = cur.execute(
            "INSERT INTO media (id, sha256, content_type, duration_s, size_bytes, uploaded_by)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
            ("m-" + secrets.token_hex(8), digest, content_type, duration, len(data), actor),
        ).fetchone()
    assert row is not None
    return row


def get(conn: psycopg.Connection, media_id: str) -> Media:
    with conn.cursor(row_factory=class_row(Media)) as cur:
        row = cur.execute("SELECT * FROM media WHERE id = %s", (media_id,)).fetchone()
    if row is None:
        raise NotFound(f"no media {media_id!r}")
    return row


def signature(secret: str, media_id: str, expires: int) -> str:
    """The `sig` of a media URL: HMAC-SHA256 over the media id and the expiry (Unix seconds)."""
    msg = f"media:{media_id}:{expires}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signed_path(secret: str, media_id: str, expires_at: datetime) -> str:
    """`/media/{id}?exp=...&sig=...`, valid until `expires_at`."""
    exp = int(expires_at.timestamp())
    return f"/media/{media_id}?exp={exp}&sig={signature(secret, media_id, exp)}"


def check_signature(secret: str, media_id: str, exp: int, sig: str, now: datetime) -> bool:
    """Whether `sig` was made for this media id and expiry, and the expiry has not passed."""
    good = hmac.compare_digest(signature(secret, media_id, exp), sig)
    return good and now.timestamp() < exp


def file_path(media_dir: Path, m: Media) -> Path:
    return media_dir / m.sha256
