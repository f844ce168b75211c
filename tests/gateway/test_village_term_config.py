"""The page learns the village word from /ui/config.json: the registry's when a commune says it."""

import psycopg
from fastapi.testclient import TestClient

from services import registry, registry_file
from tests.gateway.conftest import LONG_THANH


def test_config_says_the_registry_s_village_word_once_every_commune_agrees(
    client: TestClient, seeded: str
) -> None:
    # Thoại Giang's villages are "Ấp …", Long Thạnh's "Xóm 1": two words, the page says «xóm / ấp».
    assert client.get("/ui/config.json").json()["village_term"] is None
    said = LONG_THANH.replace('name: "Xã Long Thạnh"}', 'name: "Xã Long Thạnh", village_term: ấp}')
    assert said != LONG_THANH
    with psycopg.connect(seeded) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(said), None)
    assert client.get("/ui/config.json").json()["village_term"] == "ấp"
