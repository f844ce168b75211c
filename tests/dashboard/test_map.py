"""The map: one commune at a time with a selector, fitted to it, the commune's own tiles (MBTiles)
and village boundaries (GeoJSON) served by the gateway — no internet."""

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, expect

from services import registry, registry_file
from tests.dashboard.conftest import shot, sign_in
from tests.dashboard.pipeline import open_alert
from tests.dashboard.serve import gateway
from tests.map_tiles import make_boundaries, make_mbtiles

SECOND = """\
commune: {id: long-thanh, name: "Xã Long Thành", province: "Nghệ An"}
villages:
  - {id: xom-1, name: "Xóm 1"}
devices:
  - {id: lt-gw-xom-1, kind: gateway, village: xom-1, name: "Router xóm 1", lat: 18.98, lon: 105.47}
  - {id: lt-spk-xom-1, kind: speaker, village: xom-1, name: "Loa xóm 1", lat: 18.981, lon: 105.471}
"""


# True when a pixel of the offline colour (#dc2626) is drawn on the markers' canvas inside the
# map's box: the marker is on screen, not merely somewhere on the map.
RED_IN_VIEW = """(map) => {
  const box = map.getBoundingClientRect();
  for (const c of map.querySelectorAll("canvas")) {
    const r = c.getBoundingClientRect();
    const { data, width, height } = c.getContext("2d").getImageData(0, 0, c.width, c.height);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      if (Math.abs(data[i] - 220) < 16 && Math.abs(data[i + 1] - 38) < 16 && Math.abs(data[i + 2] - 38) < 16
          && data[i + 3] > 200) {
        const px = r.left + (x * r.width) / width, py = r.top + (y * r.height) / height;
        if (px >= box.left && px <= box.right && py >= box.top && py <= box.bottom) return true;
      }
    }
  }
  return false;
}"""


@pytest.fixture(scope="module")
def map_url(dash_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with psycopg.connect(dash_db) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(SECOND), None)
    d = tmp_path_factory.mktemp("map")
    make_mbtiles(d / "thoai-giang.mbtiles", 10.27, 105.19, 10.31, 105.23, range(12, 17))
    make_boundaries(d / "ap.geojson", "Ấp Bắc Thạnh", 10.298, 105.214, 10.306, 105.222)
    with gateway(
        dash_db, map_mbtiles=str(d / "thoai-giang.mbtiles"), map_boundaries=str(d / "ap.geojson")
    ) as base:
        yield base


def test_the_map_opens_on_one_commune_with_its_own_tiles_and_village_boundaries(
    browser: Browser, map_url: str
) -> None:
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    sign_in(page, map_url)
    page.click("[data-nav=map]")
    select = page.locator("#map-commune")
    expect(select).to_be_visible()
    # Two communes: the one with an outage (Thoại Giang's offline speaker) opens first, alone, though
    # Long Thành comes first by name; then the other alone (its 2 devices), not two dots on a country.
    expect(select).to_have_value("thoai-giang")
    expect(page.locator("[data-map-count=offline]")).to_have_text("1")
    # (waited for: the markers are drawn once the map has its size)
    page.wait_for_function(f"() => ({RED_IN_VIEW})(document.querySelector('#map'))", timeout=10000)
    select.select_option("long-thanh")
    total = page.locator("[data-map-count]").evaluate_all(
        "els => els.reduce((n, e) => n + +e.textContent, 0)"
    )
    assert total == 2
    # nothing offline there: no red drawn (once the canvas is repainted for it)
    page.wait_for_function(f"() => !({RED_IN_VIEW})(document.querySelector('#map'))", timeout=10000)
    select.select_option("thoai-giang")
    expect(page.locator("[data-map-count=offline]")).to_have_text("1")
    # The commune's tiles come from the gateway and are drawn; the village boundary is labelled.
    tile = page.locator("img.leaflet-tile-loaded").first
    expect(tile).to_be_visible(timeout=15000)
    assert tile.evaluate("img => img.naturalWidth") == 256
    assert tile.get_attribute("src").startswith("/ui/tiles/")
    expect(page.locator(".boundary-label")).to_have_text("Ấp Bắc Thạnh")
    # The offline speaker is on screen at the first view of its commune.
    assert page.locator("#map").evaluate(RED_IN_VIEW)
    shot(page, "map-offline-tiles")
    assert all(u.startswith(map_url) for u in requested), [u for u in requested if not u.startswith(map_url)]
    ctx.close()


def test_tiles_outside_the_installed_area_are_404_and_the_config_points_at_them(map_url: str) -> None:
    import httpx

    config = httpx.get(map_url + "/ui/config.json").json()
    assert config["map_tile_url"] == "/ui/tiles/{z}/{x}/{y}" and config["map_boundaries"] is True
    assert (config["map_min_zoom"], config["map_max_zoom"]) == (12, 16)
    assert httpx.get(map_url + "/ui/tiles/3/1/1").status_code == 404
    assert httpx.get(map_url + "/ui/tiles/99/1/1").status_code == 404
    assert (
        httpx.get(map_url + "/ui/boundaries.geojson").json()["features"][0]["properties"]["name"]
        == "Ấp Bắc Thạnh"
    )


def test_a_wrong_tiles_file_stops_the_gateway_with_one_line(dash_db: str, tmp_path: Path) -> None:
    (tmp_path / "x.mbtiles").write_text("not sqlite")
    with pytest.raises(RuntimeError, match="IOC_MAP_MBTILES"):
        with gateway(dash_db, map_mbtiles=str(tmp_path / "x.mbtiles")):
            pass


def test_a_view_of_one_commune_calls_its_villages_what_that_commune_calls_them(
    browser: Browser, map_url: str, dash_db: str
) -> None:
    """Thoại Giang's villages are ấp, Long Thành's are xóm: the deployment as a whole says
    «xóm / ấp», an alert of one commune says its own word."""
    ids = [open_alert(dash_db, "offline", d) for d in ("lt-spk-xom-1", "spk-tay-binh-1")]
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()
    try:
        sign_in(page, map_url)
        page.click("[data-nav=alerts]")
        label = "#alert-list article[data-alert-id='{}'] [data-field=village] dt"
        expect(page.locator(label.format(ids[0]))).to_have_text("Xóm")
        expect(page.locator(label.format(ids[1]))).to_have_text("Ấp")
        expect(page.locator("#alert-search")).to_have_attribute("placeholder", re.compile("xóm / ấp"))
    finally:
        ctx.close()
        with psycopg.connect(dash_db) as conn:
            conn.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = now() WHERE id = ANY(%s)", (ids,)
            )
