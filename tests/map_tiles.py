"""Small MBTiles and GeoJSON files for tests of the map's offline background."""

import json
import math
import sqlite3
import struct
import zlib
from pathlib import Path


def png(width: int = 256, height: int = 256, rgb: tuple[int, int, int] = (200, 230, 200)) -> bytes:
    """A plain PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))

    ihdr = struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def xyz(lat: float, lon: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def make_mbtiles(
    path: Path, south: float, west: float, north: float, east: float, zooms: range, fmt: str = "png"
) -> int:
    """Tiles covering the box at each zoom (TMS rows, as MBTiles stores them); returns how many."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name text, value text)")
    db.execute("CREATE TABLE tiles (zoom_level int, tile_column int, tile_row int, tile_data blob)")
    meta = {"name": "test", "format": fmt, "minzoom": str(zooms.start), "maxzoom": str(zooms.stop - 1)}
    db.executemany("INSERT INTO metadata VALUES (?, ?)", meta.items())
    n, data = 0, png()
    for z in zooms:
        x0, y0 = xyz(north, west, z)
        x1, y1 = xyz(south, east, z)
        for x in range(x0 - 1, x1 + 2):
            for y in range(y0 - 1, y1 + 2):
                db.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, 2**z - 1 - y, data))
                n += 1
    db.commit()
    db.close()
    return n


def make_boundaries(path: Path, name: str, south: float, west: float, north: float, east: float) -> None:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    feature = {
        "type": "Feature",
        "properties": {"name": name},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]}, ensure_ascii=False), encoding="utf-8"
    )
