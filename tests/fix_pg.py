"""PostgreSQL+TimescaleDB for tests: one private cluster per session on a free loopback port,
a migrated template database, and a fresh clone of it per test."""

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cli.embedded import Postgres
from services.migrate import migrate

_counter = itertools.count()


def private_dir(prefix: str) -> Path:
    """A temp dir the unprivileged server users can enter."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Postgres]:
    pg = Postgres(private_dir("ioc-pg-"), fast_unsafe=True)
    pg.start()
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ioc_template")
    migrate(pg.url("ioc_template"))
    yield pg
    pg.stop()


def clone_db(pg: Postgres) -> str:
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE ioc_template')
    return name


def drop_db(pg: Postgres, name: str) -> None:
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server: Postgres) -> Iterator[str]:
    """A migrated, empty database of its own for this test."""
    name = clone_db(pg_server)
    yield pg_server.url(name)
    drop_db(pg_server, name)


@pytest.fixture
def own_pg() -> Iterator[Postgres]:
    """A private, migrated cluster that the test may kill and restart."""
    pg = Postgres(private_dir("ioc-ownpg-"), fast_unsafe=True)
    pg.start()
    migrate(pg.url())
    yield pg
    pg.stop()
