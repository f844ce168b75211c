"""Numbered SQL migrations, applied in order, each in its own transaction.

A migration whose first line is `-- ioc: no transaction` runs one statement at a time outside a
transaction, so it may build indexes CONCURRENTLY: on a database a commune has filled for years,
a plain CREATE INDEX on a table ingest writes would hold ingest up for the whole build. Such a
file ends every statement with `;` at the end of a line and must be safe to run again from the
start (an interrupted CREATE INDEX CONCURRENTLY leaves an invalid index: drop it first).
"""

import logging
from importlib import resources

import psycopg

from services.db import connect

log = logging.getLogger(__name__)

# Any value unique to this purpose: serialises concurrent `ioc migrate` runs.
_LOCK_ID = 0x10C_0001
NO_TRANSACTION = "-- ioc: no transaction"


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
            apply(conn, version, name, sql)
            log.info("applied migration %s", name)
            applied.append(name)
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied


def _is_code(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("--")


def statements(sql: str) -> list[str]:
    """The statements of a no-transaction migration: each ends with `;` at the end of a line."""
    out, current = [], []
    for line in sql.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            if any(_is_code(ln) for ln in current):
                out.append("\n".join(current).strip())
            current = []
    if any(_is_code(ln) for ln in current):
        raise ValueError("a statement of a no-transaction migration does not end with ';'")
    return out


def apply(conn: psycopg.Connection, version: int, name: str, sql: str) -> None:
    """Run one migration on an autocommit connection and record it."""
    record = ("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
    if sql.startswith(NO_TRANSACTION):
        for statement in statements(sql):
            conn.execute(statement)  # type: ignore[arg-type]  # trusted file shipped with the package
        conn.execute(*record)
        return
    with conn.transaction():
        conn.execute(sql)  # type: ignore[arg-type]  # trusted file shipped with the package
        conn.execute(*record)
