"""Retention by drop_chunks, and `ioc keys` from the command line."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services import keys, retention
from services.errors import InvalidInput
from services.settings import IocSettings
from tests.share import world


def test_retention_drops_old_chunks_and_keeps_recent_ones(db_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        world.seed(conn)
        for age in (100, 95, 1):
            world.sample(conn, "spk-vt-1", now - timedelta(days=age), {"volume": age})
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, reason) VALUES (%s, 't', 'json'), (%s, 't', 'json')",
            (now - timedelta(days=60), now),
        )
        conn.commit()
        settings = IocSettings(_env_file=None, retention_samples_days=90, retention_dead_letters_days=30)  # type: ignore[call-arg]
        assert retention.run(conn, settings) >= 3
        assert [r[0] for r in conn.execute("SELECT (metrics->>'volume')::int FROM status_samples")] == [1]
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)
        assert retention.run(conn, settings) == 0


def test_rate_and_expiry_parsing() -> None:
    assert keys.parse_rate("600/min") == 600
    assert keys.parse_rate("10/s") == 600
    assert keys.parse_rate("120") == 120
    assert keys.parse_rate("90/h") == 2
    with pytest.raises(InvalidInput):
        keys.parse_rate("lots")
    assert keys.parse_expiry("2027-01-01") == datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        keys.parse_expiry("soon")


def ioc(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"IOC_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "IOC_DATA_DIR": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_keys_cli_prints_the_key_once_and_stores_only_its_hash(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        world.seed(conn)  # the key's communes must exist
    r = ioc(
        db_url,
        "keys",
        "create",
        "--name",
        "UBND huyện Thoại Sơn",
        "--communes",
        "thoai-giang,vong-the",
        "--kinds",
        "speaker,camera",
        "--rate",
        "120/min",
        "--expires",
        "2099-01-01",
    )
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip().splitlines()[-1]
    assert secret.startswith("ioc_") and len(secret) > 40
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT prefix, communes, kinds, rate_per_min, key_hash FROM api_keys").fetchone()
        assert row[:4] == (secret[:12], ["thoai-giang", "vong-the"], ["camera", "speaker"], 120)
        assert bytes(row[4]) == keys.key_hash(secret)
        assert keys.authenticate(conn, secret).name == "UBND huyện Thoại Sơn"
    listed = ioc(db_url, "keys", "list")
    assert listed.returncode == 0 and secret[:12] in listed.stdout and secret not in listed.stdout
    assert "active" in listed.stdout
    assert ioc(db_url, "keys", "revoke", "1").returncode == 0
    assert "revoked" in ioc(db_url, "keys", "list").stdout
    again = ioc(db_url, "keys", "revoke", "1")
    assert again.returncode == 1 and "already revoked" in again.stderr
    assert (
        ioc(db_url, "keys", "create", "--name", "x").returncode == 2
    )  # neither --communes nor --all-communes
    bad = ioc(db_url, "keys", "create", "--name", "x", "--all-communes", "--kinds", "toaster")
    assert bad.returncode == 1 and "kinds must be among" in bad.stderr


def test_keys_cli_refuses_a_commune_the_registry_does_not_hold(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        world.seed(conn)
    r = ioc(db_url, "keys", "create", "--name", "huyen", "--communes", "thoai-giang,thoai-gaing,nowhere")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "ioc: no commune thoai-gaing, nowhere in the registry (import it first: ioc devices import FILE)"
    ]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
        with pytest.raises(InvalidInput, match="no commune nowhere"):
            keys.create(conn, "x", ["nowhere"])
