"""Sources in the database: brokers and registry profiles (written by the registry import), the
secrets of sources, source health (one row per broker a bridge listens to) and dead letters of
readings that could not be mapped."""

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import psycopg
from psycopg.types.json import Jsonb

from services import storage
from services.sources.model import Broker
from services.sources.profiles import Profile, ProfileError, parse
from services.vault import Vault

log = logging.getLogger(__name__)

HEALTH_KIND = "source"
# A bridge reports every 2 s; older than this, nobody is listening to that broker.
STALE_S = 15.0
DEAD_REASON = "unmappable"


def health_name(broker_id: str) -> str:
    """The health row of a vendor broker (its id) or of a vendor list's server (`http://host:port`)."""
    return f"source:{broker_id}" if "://" in broker_id else f"source:mqtt:{broker_id}"


def upsert_brokers(
    conn: psycopg.Connection, brokers: Iterable[Broker], passwords: Mapping[str, str], vault: Vault | None
) -> None:
    for b in brokers:
        secret = vault.encrypt(passwords[b.id]) if vault and b.id in passwords else None
        conn.execute(
            "INSERT INTO mqtt_brokers (id, url, username, password_secret, client_id, ca_file, options)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url,"
            " username = EXCLUDED.username, password_secret = EXCLUDED.password_secret,"
            " client_id = EXCLUDED.client_id, ca_file = EXCLUDED.ca_file, options = EXCLUDED.options,"
            " updated_at = now()",
            (
                b.id,
                b.url,
                b.username,
                secret,
                b.client_id,
                b.ca_file,
                Jsonb({"keepalive_s": b.keepalive_s, "session_expiry_s": b.session_expiry_s}),
            ),
        )


def upsert_profiles(conn: psycopg.Connection, profiles: Iterable[Profile]) -> None:
    for p in profiles:
        conn.execute(
            "INSERT INTO source_profiles (name, body) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body, updated_at = now()",
            (p.name, Jsonb(p.body)),
        )


def brokers(conn: psycopg.Connection) -> dict[str, Broker]:
    out = {}
    for bid, url, username, client_id, ca_file, options in conn.execute(
        "SELECT id, url, username, client_id, ca_file, options FROM mqtt_brokers ORDER BY id"
    ):
        out[bid] = Broker(
            bid,
            url,
            client_id,
            username,
            ca_file,
            int(options.get("keepalive_s", 30)),
            int(options.get("session_expiry_s", 7 * 24 * 3600)),
        )
    return out


def broker_secret(conn: psycopg.Connection, broker_id: str) -> bytes | None:
    """The stored (encrypted) password of a broker; it changes with every import that names one."""
    row = conn.execute("SELECT password_secret FROM mqtt_brokers WHERE id = %s", (broker_id,)).fetchone()
    return bytes(row[0]) if row and row[0] is not None else None


def broker_password(conn: psycopg.Connection, vault: Vault | None, broker_id: str) -> str | None:
    token = broker_secret(conn, broker_id)
    if token is None:
        return None
    if vault is None:
        log.warning("broker %s has a stored password but IOC_SECRET_KEY is not set", broker_id)
        return None
    return vault.decrypt(token)


def registry_profiles(conn: psycopg.Connection) -> list[Profile]:
    """The registry's profiles (a stored one that no longer parses is logged and left out)."""
    out = []
    for name, body in conn.execute("SELECT name, body FROM source_profiles ORDER BY name"):
        try:
            out.append(parse(name, body))
        except ProfileError as err:
            log.warning("stored profile %s does not parse: %s", name, err)
    return out


def source_secrets(conn: psycopg.Connection, vault: Vault, device_id: str) -> dict[str, str]:
    """The secrets of a device's source (SNMP community or v3 keys, HTTP password); for pollers."""
    row = conn.execute("SELECT source_secret FROM devices WHERE id = %s", (device_id,)).fetchone()
    if not row or row[0] is None:
        return {}
    return dict(orjson.loads(vault.decrypt(row[0])))


def encrypt_secrets(vault: Vault, secrets: Mapping[str, str]) -> bytes:
    return vault.encrypt(orjson.dumps(dict(secrets)).decode())


def report(
    conn: psycopg.Connection,
    broker_id: str,
    listening_since: datetime | None,
    error: str | None = None,
    *,
    refused: bool = False,
) -> None:
    """A bridge's health row: it is alive, since when it hears its broker (None: it does not), and
    whether the broker refuses its credentials."""
    info = {
        "broker": broker_id,
        "listening_since": listening_since.isoformat() if listening_since else None,
        "error": error,
        "refused": refused,
    }
    conn.execute(
        "INSERT INTO process_health (name, kind, seen_at, info) VALUES (%s, %s, now(), %s)"
        " ON CONFLICT (name) DO UPDATE SET seen_at = now(), info = EXCLUDED.info",
        (health_name(broker_id), HEALTH_KIND, Jsonb(info)),
    )


@dataclass(frozen=True)
class SourceHealth:
    broker_id: str
    seen_at: datetime
    listening_since: datetime | None
    error: str | None
    refused: bool = False  # the broker answers but refuses the bridge's credentials

    def lost(self, now: datetime, stale_s: float = STALE_S) -> bool:
        """Nobody hears this broker: its bridge failed to reach it (not: is still connecting for the
        first time), or no bridge has reported lately."""
        return self.stale(now, stale_s) or (self.listening_since is None and self.error is not None)

    def stale(self, now: datetime, stale_s: float = STALE_S) -> bool:
        """No bridge has reported on this broker lately."""
        return (now - self.seen_at) > timedelta(seconds=stale_s)


def health(conn: psycopg.Connection) -> dict[str, SourceHealth]:
    """Every broker a bridge has reported on, by broker id."""
    out = {}
    for seen_at, info in conn.execute(
        "SELECT seen_at, info FROM process_health WHERE kind = %s", (HEALTH_KIND,)
    ):
        since = info.get("listening_since")
        bid = str(info.get("broker"))
        out[bid] = SourceHealth(
            bid,
            seen_at,
            datetime.fromisoformat(since) if since else None,
            info.get("error"),
            info.get("refused") is True,
        )
    return out


def listening(conn: psycopg.Connection, now: datetime) -> dict[str, datetime | None]:
    """Per broker, since when it has been heard without a gap (None: lost now)."""
    return {bid: (None if h.lost(now) else h.listening_since) for bid, h in health(conn).items()}


def refusing(conn: psycopg.Connection, now: datetime) -> set[str]:
    """Brokers that answer but refuse their bridge's credentials, as a bridge reported lately: their
    devices are auth_failed (SPEC §8), and the one source_lost alert says why."""
    return {bid for bid, h in health(conn).items() if h.refused and h.lost(now) and not h.stale(now)}


@dataclass(frozen=True)
class Unmappable:
    """A reading that does not fit its profile."""

    received_at: datetime
    topic: str
    detail: str
    device_id: str | None
    payload: bytes


def dead_letters(conn: psycopg.Connection, items: Sequence[Unmappable], reason: str = DEAD_REASON) -> None:
    """Keep them with their reason and count them on /metrics, in one transaction."""
    if not items:
        return
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (received_at, topic, reason, detail, device_id, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [(d.received_at, d.topic, reason, d.detail, d.device_id, d.payload) for d in items],
            )
        storage.bump_counters(conn, {("ioc_ingest_dead_letters_total", reason): len(items)})
