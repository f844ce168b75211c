"""The operations dashboard: `/` serves the page, `/ui/...` its scripts, styles and vendored libraries.

Everything is served by the gateway itself, so the page works without internet.
"""

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from gateway.deps import Conn
from gateway.security import CSP
from services import map_files, village_terms

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
    settings = app.state.settings
    # Read at start: a wrong file stops the gateway with one line naming the setting.
    tiles = map_files.MbTiles(settings.map_mbtiles) if settings.map_mbtiles else None
    boundaries = map_files.load_boundaries(settings.map_boundaries) if settings.map_boundaries else None

    def config(request: Request, conn: Conn) -> JSONResponse:
        """Settings the page needs before sign-in: language, time zone, map, the word for villages."""
        s = request.app.state.settings
        body: dict[str, object] = {
            "lang": s.lang,
            "tz": s.tz,
            # The commune's own tiles first; online tiles only when a setting names them.
            "map_tile_url": "/ui/tiles/{z}/{x}/{y}" if tiles else s.map_tile_url,
            "map_boundaries": boundaries is not None,
            "village_term": village_terms.deployment_term(conn),
        }
        if tiles:
            body.update(
                map_min_zoom=tiles.min_zoom, map_max_zoom=tiles.max_zoom, map_attribution=tiles.attribution
            )
        return JSONResponse(body, headers={"cache-control": "no-cache"})

    def tile(z: int, x: int, y: int) -> Response:
        """One map tile of the installed MBTiles file (XYZ numbering), or 404."""
        data = tiles.tile(z, x, y) if tiles else None
        if data is None:
            return Response(status_code=404)
        return Response(
            data, media_type=tiles.content_type if tiles else None, headers={"cache-control": "max-age=86400"}
        )

    def village_boundaries() -> JSONResponse:
        """The installed village boundaries (GeoJSON), or 404."""
        if boundaries is None:
            return JSONResponse({"type": "FeatureCollection", "features": []}, status_code=404)
        return JSONResponse(
            boundaries, media_type="application/geo+json", headers={"cache-control": "max-age=3600"}
        )

    # Registered before the mount so that they are not shadowed by the static files.
    app.add_api_route("/ui/config.json", config, include_in_schema=False)
    app.add_api_route("/ui/tiles/{z}/{x}/{y}", tile, include_in_schema=False)
    app.add_api_route("/ui/boundaries.geojson", village_boundaries, include_in_schema=False)
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
