"""The map's offline background files: MBTiles tiles by web-map numbering, boundaries as GeoJSON."""

from pathlib import Path

import pytest

from services.errors import ConfigError
from services.map_files import MbTiles, load_boundaries
from tests.map_tiles import make_boundaries, make_mbtiles, png, xyz


def test_a_tile_is_found_by_its_web_map_numbers_though_mbtiles_counts_rows_from_the_south(
    tmp_path: Path,
) -> None:
    path = tmp_path / "xa.mbtiles"
    make_mbtiles(path, 10.29, 105.21, 10.31, 105.23, range(14, 15))
    tiles = MbTiles(str(path))
    x, y = xyz(10.30, 105.22, 14)
    assert tiles.tile(14, x, y) == png()
    assert tiles.content_type == "image/png" and (tiles.min_zoom, tiles.max_zoom) == (14, 14)
    assert tiles.tile(14, x, 2**14 - 1 - y) is None  # the TMS row is not the XYZ row
    assert tiles.tile(15, x, y) is None
    assert tiles.tile(14, -1, y) is None and tiles.tile(14, x, 2**14) is None


def test_files_that_cannot_serve_the_map_stop_the_gateway_with_a_line_naming_the_setting(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="IOC_MAP_MBTILES: no file"):
        MbTiles(str(tmp_path / "missing.mbtiles"))
    (tmp_path / "text.mbtiles").write_text("not sqlite")
    with pytest.raises(ConfigError, match="not an MBTiles file"):
        MbTiles(str(tmp_path / "text.mbtiles"))
    make_mbtiles(tmp_path / "vector.mbtiles", 10.29, 105.21, 10.31, 105.23, range(14, 15), fmt="pbf")
    with pytest.raises(ConfigError, match="cannot be drawn"):
        MbTiles(str(tmp_path / "vector.mbtiles"))
    (tmp_path / "b.geojson").write_text('{"type": "Point", "coordinates": [1, 2]}')
    with pytest.raises(ConfigError, match="FeatureCollection"):
        load_boundaries(str(tmp_path / "b.geojson"))
    (tmp_path / "bad.geojson").write_text("{")
    with pytest.raises(ConfigError, match="not GeoJSON"):
        load_boundaries(str(tmp_path / "bad.geojson"))
    make_boundaries(tmp_path / "ok.geojson", "Ấp Bắc Thạnh", 10.29, 105.21, 10.31, 105.23)
    assert (
        load_boundaries(str(tmp_path / "ok.geojson"))["features"][0]["properties"]["name"] == "Ấp Bắc Thạnh"
    )
