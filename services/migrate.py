"""Numbered SQL migrations, applied in order, each in its own transaction."""

import logging
from importlib import resources

from services.db import connect

log = logging.getLogger(__name__)

# Any value unique to this purpose: serialises concurrent `ioc migrate` runs.
_LOCK_ID = 0x10C_0001


def available() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package."""
    files = resources.files("services") / "migrations"
    out = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {[n for _, n, _ in out]}")
    return out


def migrate(url: str) -> list[str]:
    """Apply what is missing; returns the names applied."""
    applied: list[str] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in available():
            if version in done:
                continue
            with conn.transaction():
                conn.execute(sql)  # type: ignore[arg-type]  # trusted file shipped with the package
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            log.info("applied migration %s", name)
            applied.append(name)
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
