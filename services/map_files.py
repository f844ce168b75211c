"""The map's offline background: raster tiles from an MBTiles file of the commune's area and village
boundaries from a GeoJSON file, both installed by the commune (docs/live-feed.md says how to make
them from OpenStreetMap). Nothing is fetched from the internet."""

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from services.errors import ConfigError

# MBTiles `format` metadata -> content type; vector tiles (pbf) cannot be drawn by the raster map.
_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
MAX_BOUNDARIES_BYTES = 20 * 1024 * 1024


class MbTiles:
    """Read-only access to one MBTiles file (SQLite; rows in TMS order: y counts from the south)."""

    def __init__(self, path: str) -> None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"IOC_MAP_MBTILES: no file {path}")
        try:
            self._db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, check_same_thread=False)
            meta = dict(self._db.execute("SELECT name, value FROM metadata").fetchall())
        except sqlite3.Error as err:
            raise ConfigError(f"IOC_MAP_MBTILES: {path} is not an MBTiles file ({err})") from err
        fmt = str(meta.get("format", "png")).lower()
        if fmt not in _TYPES:
            raise ConfigError(
                f"IOC_MAP_MBTILES: tiles of format {fmt!r} cannot be drawn; use png, jpg or webp"
            )
        self.content_type = _TYPES[fmt]
        self.min_zoom = int(meta.get("minzoom", 0))
        self.max_zoom = int(meta.get("maxzoom", 19))
        self.attribution = str(meta.get("attribution", "© OpenStreetMap contributors"))
        self._lock = threading.Lock()

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """The tile at z/x/y in the web map's (XYZ) numbering, or None."""
        if not (0 <= z <= 30 and 0 <= x < 2**z and 0 <= y < 2**z):
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, 2**z - 1 - y),
            ).fetchone()
        return bytes(row[0]) if row else None


def load_boundaries(path: str) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of village boundaries (each feature's `name` is shown)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"IOC_MAP_BOUNDARIES: no file {path}")
    if p.stat().st_size > MAX_BOUNDARIES_BYTES:
        raise ConfigError(f"IOC_MAP_BOUNDARIES: {path} is over {MAX_BOUNDARIES_BYTES // 2**20} MB")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"IOC_MAP_BOUNDARIES: {path} is not GeoJSON ({err})") from err
    if (
        not isinstance(doc, dict)
        or doc.get("type") != "FeatureCollection"
        or not isinstance(doc.get("features"), list)
    ):
        raise ConfigError(f"IOC_MAP_BOUNDARIES: {path} must be a GeoJSON FeatureCollection")
    return doc
