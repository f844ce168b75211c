"""deploy/backup.sh and deploy/restore.sh on a real TimescaleDB cluster: dump, restore into a
new database, same rows in every hypertable, and the restored hypertables still take rows."""

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from cli.embedded import Postgres
from services import registry, registry_file

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REGISTRY = """
commune: {id: thoai-giang, name: "Xã Thoại Giang"}
villages: [{id: trung-binh, name: "Ấp Trung Bình"}]
devices:
  - {id: spk-1, kind: speaker, village: trung-binh}
  - {id: spk-2, kind: speaker, village: trung-binh}
"""


def _seed(url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(REGISTRY), None)
        # Samples over 20 days: many chunks (1-day chunks), like a real history.
        rows = [
            (d, now - timedelta(hours=h), now, Jsonb({"volume": h % 100}))
            for d in ("spk-1", "spk-2")
            for h in range(0, 480, 3)
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO status_samples (device_id, ts, received_at, metrics) VALUES (%s,%s,%s,%s)", rows
            )
            cur.executemany(
                "INSERT INTO device_events (device_id, ts, received_at, type, seq) VALUES (%s,%s,%s,%s,%s)",
                [("spk-1", now - timedelta(days=i), now, "reboot", i + 1) for i in range(30)],
            )
            cur.executemany(
                "INSERT INTO dead_letters (received_at, topic, reason) VALUES (%s, %s, %s)",
                [(now - timedelta(days=i), "ioc/v1/x", "bad_json") for i in range(12)],
            )


def _counts(url: str) -> dict[str, tuple[int, int]]:
    """(rows, chunks) of every hypertable, and rows of a few plain tables."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1"
            )
        ]
        out = {}
        for t in tables:
            rows = conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # noqa: S608 - catalog names
            chunks = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = %s", (t,)
            ).fetchone()[0]
            out[t] = (rows, chunks)
        for t in ("devices", "communes", "schema_migrations"):
            out[t] = (conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0], 0)  # noqa: S608
    return out


def _env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    return env | {"IOC_ENV_FILE": "/nonexistent"} | kw


def test_backup_then_restore_into_a_new_database_keeps_every_hypertable_row(
    own_pg: Postgres, tmp_path: Path
) -> None:
    url = own_pg.url()
    _seed(url)
    before = _counts(url)
    assert {"status_samples", "device_events", "dead_letters"} <= set(before)
    assert before["status_samples"][0] == 320 and before["status_samples"][1] >= 20

    out = tmp_path / "backups"
    r = subprocess.run(
        [str(DEPLOY / "backup.sh"), str(out)],
        env=_env(IOC_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    dump = Path(r.stdout.strip().splitlines()[-1])
    assert dump.parent == out and dump.stat().st_size > 0
    assert dump.stat().st_mode & 0o777 == 0o600

    target = own_pg.url("ioc_restored")
    r = subprocess.run(
        [str(DEPLOY / "restore.sh"), str(dump), target],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _counts(target) == before

    with psycopg.connect(target) as conn:
        # New rows land in new chunks: the restored catalog works, not just the data.
        conn.execute("INSERT INTO status_samples VALUES ('spk-1', now() + interval '3 days', now(), '{}')")
        n = conn.execute("SELECT count(*) FROM status_samples").fetchone()[0]
        restoring = conn.execute("SHOW timescaledb.restoring").fetchone()[0]
    assert n == before["status_samples"][0] + 1
    assert restoring == "off"


def test_restore_refuses_an_existing_database_unless_replace(own_pg: Postgres, tmp_path: Path) -> None:
    url = own_pg.url()
    _seed(url)
    r = subprocess.run(
        [str(DEPLOY / "backup.sh"), str(tmp_path)],
        env=_env(IOC_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    dump = r.stdout.strip().splitlines()[-1]
    r = subprocess.run(
        [str(DEPLOY / "restore.sh"), dump, url], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1 and "exists" in r.stderr
    with psycopg.connect(own_pg.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ioc_copy")
    copy = own_pg.url("ioc_copy")
    r = subprocess.run(
        [str(DEPLOY / "restore.sh"), "--replace", dump, copy],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert _counts(copy) == _counts(url)


def test_backup_keeps_only_the_newest_dumps(own_pg: Postgres, tmp_path: Path) -> None:
    for i in range(3):
        old = tmp_path / f"ioc-2020010{i}T000000Z.dump"
        old.write_bytes(b"old")
        os.utime(old, (1_577_836_800 + i, 1_577_836_800 + i))
    r = subprocess.run(
        [str(DEPLOY / "backup.sh"), str(tmp_path)],
        env=_env(IOC_DATABASE_URL=own_pg.url(), IOC_BACKUP_KEEP="2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    left = sorted(p.name for p in tmp_path.glob("ioc-*.dump"))
    assert len(left) == 2
    assert "ioc-20200102T000000Z.dump" in left
