"""Migrations: the runner, and a no-transaction migration run again after an interruption."""

import psycopg
import pytest

from services import migrate


def _indexes(url: str, table: str) -> dict[str, tuple[bool, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
            (table,),
        ).fetchall()
    return {name: (valid, definition) for name, valid, definition in rows}


def test_statements_of_a_no_transaction_migration_are_split_at_line_ends() -> None:
    sql = "-- ioc: no transaction\n-- a comment;\nDROP INDEX a;\nCREATE INDEX\n  b ON t (x);\n\n-- tail\n"
    assert migrate.statements(sql) == ["DROP INDEX a;", "CREATE INDEX\n  b ON t (x);"]
    with pytest.raises(ValueError, match="does not end with ';'"):
        migrate.statements("-- ioc: no transaction\nDROP INDEX a")


def test_an_interrupted_concurrent_index_build_is_redone_when_migrate_runs_again(db_url: str) -> None:
    # Leave what a build killed half-way leaves: an invalid index of the migration's name.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP INDEX state_changes_device_at")
        conn.execute("CREATE INDEX state_changes_device ON state_changes (device_id, at)")
        conn.execute("INSERT INTO communes (id, name) VALUES ('c', 'C')")
        conn.execute("INSERT INTO devices (id, commune_id, kind) VALUES ('d', 'c', 'speaker')")
        for seq in (1, 2):
            conn.execute(
                "INSERT INTO state_changes (seq, device_id, commune_id, kind, state, at)"
                " VALUES (%s, 'd', 'c', 'speaker', 'online', now())",
                (seq,),
            )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY state_changes_device_at ON state_changes (device_id)"
            )
        conn.execute("DELETE FROM schema_migrations WHERE version IN (8, 9)")  # later ones stay applied
    assert _indexes(db_url, "state_changes")["state_changes_device_at"][0] is False

    applied = migrate.migrate(db_url)

    assert applied == ["008_availability_speed.sql", "009_rollup_vacuum.sql"]
    indexes = _indexes(db_url, "state_changes")
    valid, definition = indexes["state_changes_device_at"]
    assert valid and "INCLUDE (state, prev_state)" in definition and "UNIQUE" not in definition
    assert "state_changes_device" not in indexes
    assert migrate.migrate(db_url) == []
