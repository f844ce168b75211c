"""A wrong link followed in a browser gets a page in Vietnamese; API clients keep the JSON error."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    settings = GatewaySettings(_env_file=None, database_url=db_url, mqtt_url=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as c:
        yield c


def test_an_unknown_page_in_a_browser_is_a_vietnamese_page_with_a_way_home(client: TestClient) -> None:
    r = client.get("/thiet-bi/khong-co", headers=BROWSER)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Không tìm thấy trang" in r.text and 'href="/"' in r.text


@pytest.mark.parametrize("path", ["/api/v1/khong-co", "/api/share/v1/khong-co", "/ngsi-ld/v1/khong-co"])
def test_unknown_api_paths_keep_their_machine_errors_even_for_a_browser(
    client: TestClient, path: str
) -> None:
    r = client.get(path, headers=BROWSER)
    assert r.status_code == 404
    assert "json" in r.headers["content-type"]


def test_an_api_client_asking_for_an_unknown_page_gets_the_json_error(client: TestClient) -> None:
    r = client.get("/thiet-bi/khong-co", headers={"accept": "application/json"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
