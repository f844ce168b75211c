"""What the end-to-end source tests share: the vault key, importing a registry text, and ingest's
settings on the test database and broker (the tests start the bridges or the poller themselves
unless `poll` is asked)."""

import psycopg

from ingest.service import IngestSettings
from services import registry, registry_file
from services.vault import Vault

SECRET = "test-secret-key-0123456789"


def load(db_url: str, text: str) -> None:
    """Import a registry text as `ioc devices import` does (secrets encrypted with SECRET)."""
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(text, profiles_dir=None), Vault(SECRET))


def ingest_settings(db_url: str, mqtt_url: str, ingest_id: str, *, poll: bool = False) -> IngestSettings:
    return IngestSettings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        mqtt_url=mqtt_url,
        secret_key=SECRET,
        ingest_id=ingest_id,
        ingest_onvif=False,
        ingest_sources=False,
        ingest_poll=poll,
    )
