"""Audio files of broadcasts: uploaded by operators, fetched by devices through signed URLs."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse

from gateway import params
from gateway.deps import Conn, Operator
from services import audit, media
from services.errors import InvalidInput, NotFound

router = APIRouter(tags=["broadcasts"])


def media_dir(request: Request) -> Path:
    settings = request.app.state.settings
    return Path(settings.media_dir or settings.data_dir / "media")


@router.post("/api/v1/media", status_code=201, dependencies=[Depends(params.known_only)])
async def upload(
    request: Request, conn: Conn, user: Operator, file: Annotated[UploadFile, File()]
) -> dict[str, Any]:
    """Operators and admins: one audio file (MP3, WAV or OGG, at most 50 MB, IOC_MEDIA_MAX_BYTES)
    for broadcasts. Its format and duration are read from its bytes, never from its name or
    claimed type: 422 when it is not MP3, WAV or OGG audio, 413 when too large. / Tải lên tệp âm
    thanh cho bản tin."""
    max_bytes = request.app.state.settings.media_max_bytes
    # The form was spooled to disk as it streamed in (counted by gateway.body_limits): one over the
    # limit is refused by its size, never read into memory.
    if file.size is not None and file.size > max_bytes:
        raise HTTPException(413, media.too_large_text(max_bytes))
    data = await file.read(max_bytes + 1)

    def keep() -> media.Media:
        m = media.store(conn, media_dir(request), data, user.username, max_bytes)
        audit.record(
            conn,
            actor_kind="user",
            actor=user.username,
            action="POST /api/v1/media",
            params={
                "media_id": m.id,
                "filename": file.filename,
                "claimed_type": file.content_type,
                "sha256": m.sha256,
                "bytes": m.size_bytes,
            },
            status=201,
            communes=user.communes,
        )
        return m

    try:
        m = await anyio.to_thread.run_sync(keep)
    except media.TooLarge as err:
        raise HTTPException(413, err.message) from err
    except InvalidInput as err:
        raise HTTPException(422, err.message) from err
    return {"id": m.id, "duration_s": m.duration_s, "sha256": m.sha256, "content_type": m.content_type}


@router.get("/media/{media_id}", response_class=FileResponse, dependencies=[Depends(params.known_only)])
@router.head("/media/{media_id}", include_in_schema=False, dependencies=[Depends(params.known_only)])
def fetch(
    request: Request, conn: Conn, media_id: str, exp: Annotated[int, Query()], sig: Annotated[str, Query()]
) -> FileResponse:
    """Devices: the audio of a broadcast by the signed URL of its `cmd` (no sign-in); the URL is
    valid until the broadcast expires, for this file only (403 otherwise). HEAD and `Range`
    requests are answered too (players that stream, or resume a fetch over a weak link)."""
    secret = request.app.state.settings.secret()
    if not media.check_signature(secret, media_id, exp, sig, datetime.now(UTC)):
        raise HTTPException(403, "the media URL is not valid (wrong signature, another file, or expired)")
    try:
        m = media.get(conn, media_id)
    except NotFound as err:
        raise HTTPException(404, err.message) from err
    return FileResponse(media.file_path(media_dir(request), m), media_type=m.content_type)
