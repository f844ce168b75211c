"""Audio files of broadcasts: checked with mutagen, stored by sha256, served by signed URLs."""

import hashlib
import hmac
import io
import os
import secrets
import struct
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import mutagen
import psycopg
from mutagen.mp3 import MP3
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from psycopg.rows import class_row

from services.errors import InvalidInput, NotFound

# SPEC §9: "at most 50 MB", in decimal megabytes as people and the page count them (50 MiB would let
# through files of 50-52 MB that a partner's test or the page's own check calls too large).
MAX_BYTES = 50_000_000
# What a multipart form adds around the file (boundaries, part headers): the request body limit of
# the upload path is the file limit plus this much.
FORM_OVERHEAD = 64 * 1024
# What a file is, by its own bytes: mutagen's reading of its headers (a name or a claimed type
# says nothing; a WAV renamed .mp3 is still a WAV, a text file renamed .mp3 is no audio).
_TYPE_OF: dict[type, str] = {
    MP3: "audio/mpeg",
    OggVorbis: "audio/ogg",
    OggOpus: "audio/ogg",
    OggFLAC: "audio/ogg",
    OggSpeex: "audio/ogg",
}
# WAVE format tags whose length is the data size over the block size (one frame a block);
# compressed ones (IMA ADPCM, GSM 6.10, MPEG in RIFF…) say theirs in the fact chunk or the byte rate.
_FRAMED_WAVE = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)
# Sample rates of sound (telephone 8 kHz .. studio 768 kHz); a header outside says it is not.
_WAVE_RATES = range(1000, 768_001)
# No bulletin lasts a day: a length past it is a damaged header (a Xing frame count, a rate).
MAX_DURATION_S = 24 * 3600


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
    """A file over the limit (IOC_MEDIA_MAX_BYTES, default MAX_BYTES): 413."""

    code = "too_large"


def inspect(data: bytes) -> tuple[str, float]:
    """(content type, duration in seconds) of an audio file, read from its bytes; InvalidInput
    unless it is MP3, WAV or OGG audio with a duration."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav", _checked(wave_length(data))
    try:
        audio = mutagen.File(io.BytesIO(data))  # type: ignore[attr-defined]
        if audio is None:
            # mutagen knows an MP3 without ID3 by its first bytes only for some MPEG versions
            # (not MPEG 2.5, the 8 kHz of voice recorders, nor one after a few junk bytes).
            audio = MP3(io.BytesIO(data))
    except mutagen.MutagenError as err:
        raise InvalidInput("the file is not MP3, WAV or OGG audio") from err
    content_type = _TYPE_OF.get(type(audio))
    if content_type is None:
        raise InvalidInput(f"the file is {type(audio).__name__} audio, not MP3, WAV or OGG")
    if isinstance(audio, MP3) and getattr(audio.info, "sketchy", True):
        # One frame header by chance, not followed by another: bytes, not an MP3.
        raise InvalidInput("the file is not MP3, WAV or OGG audio")
    return content_type, _checked(float(getattr(audio.info, "length", 0) or 0))


def _checked(duration: float) -> float:
    """The duration to the millisecond, when it is one a broadcast can have."""
    duration = round(duration, 3)
    if not duration > 0:
        raise InvalidInput("the audio has no duration")
    if duration > MAX_DURATION_S:
        raise InvalidInput(f"the file says it lasts {duration / 3600:.0f} hours: its header is damaged")
    return duration


def wave_length(data: bytes) -> float:
    """The length in seconds of a RIFF WAVE file, from its chunks. A recorder that streamed it
    left a data size it never wrote (0x7ffff000, 0xffffffff): the bytes present count instead."""
    fmt: bytes | None = None
    fact: int | None = None
    data_size: int | None = None
    at = 12
    while at + 8 <= len(data):
        cid, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        body = at + 8
        if cid == b"fmt ":
            fmt = data[body : body + size]
        elif cid == b"fact" and size >= 4:
            fact = int.from_bytes(data[body : body + 4], "little")
        elif cid == b"data":
            data_size = min(size, len(data) - body)
            break
        at = body + size + (size & 1)
    if fmt is None or len(fmt) < 16 or data_size is None:
        raise InvalidInput("the WAV file has no format or no data: it is not playable audio")
    tag, channels, rate, byte_rate, block_align = struct.unpack("<HHIIH", fmt[:14])
    if not channels or rate not in _WAVE_RATES:
        raise InvalidInput(f"the WAV file says {channels} channels at {rate} Hz: it is not playable audio")
    if tag in _FRAMED_WAVE and block_align:
        length = data_size // block_align / rate
    elif fact:
        length = fact / rate
    elif byte_rate:
        length = data_size / byte_rate
    else:
        length = 0.0
    return length


def too_large_text(max_bytes: int) -> str:
    """The 413's sentence, Vietnamese first: the limit in MB and the setting that sets it."""
    mb = f"{max_bytes / 1_000_000:.1f}".replace(".", ",").removesuffix(",0")
    return (
        f"Tệp quá lớn: tối đa {mb} MB ({max_bytes} byte, cài đặt IOC_MEDIA_MAX_BYTES)."
        f" / The file is too large: at most {max_bytes} bytes (IOC_MEDIA_MAX_BYTES)."
    )


def store(
    conn: psycopg.Connection, media_dir: Path, data: bytes, actor: str, max_bytes: int = MAX_BYTES
) -> Media:
    """Check and keep an uploaded file (one copy per sha256) and its row."""
    if len(data) > max_bytes:
        raise TooLarge(too_large_text(max_bytes))
    content_type, duration = inspect(data)
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
