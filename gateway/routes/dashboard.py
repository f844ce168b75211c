"""The operations dashboard: `/` serves the page, `/ui/...` its scripts, styles and vendored libraries.

Everything is served by the gateway itself, so the page works without internet.
"""

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from gateway.deps import Conn
from gateway.security import CSP
from services import village_terms

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
router = APIRouter(include_in_schema=False)


def _csp(tile_url: str | None) -> str:
    # Map tiles, when configured, are the one thing the page loads from elsewhere.
    if not tile_url:
        return CSP
    parts = urlsplit(tile_url.replace("{s}", "a"))
    origin = f"{parts.scheme}://{parts.netloc}".replace("://a.", "://*.")
    return CSP.replace("img-src 'self' data: blob:", f"img-src 'self' data: blob: {origin}")


def setup(app: FastAPI) -> None:
    def config(request: Request, conn: Conn) -> JSONResponse:
        """Settings the page needs before sign-in: language, time zone, map tiles, the word for villages."""
        s = request.app.state.settings
        return JSONResponse(
            {
                "lang": s.lang,
                "tz": s.tz,
                "map_tile_url": s.map_tile_url,
                "village_term": village_terms.deployment_term(conn),
            },
            headers={"cache-control": "no-cache"},
        )

    # Registered before the mount so that it is not shadowed by the static files.
    app.add_api_route("/ui/config.json", config, include_in_schema=False)
    app.mount("/ui", StaticFiles(directory=DASHBOARD), name="dashboard")


@router.get("/")
def index(request: Request) -> FileResponse:
    """The dashboard page (a sign-in form until signed in)."""
    return FileResponse(
        DASHBOARD / "index.html",
        media_type="text/html",
        headers={
            "cache-control": "no-cache",
            "content-security-policy": _csp(request.app.state.settings.map_tile_url),
        },
    )


@router.get("/docs")
def api_docs() -> FileResponse:
    """Swagger UI on /openapi.json, with its script and styles served by the gateway."""
    return FileResponse(
        DASHBOARD / "api-docs.html", media_type="text/html", headers={"cache-control": "no-cache"}
    )
