"""Retention: old chunks of the time series are dropped whole with TimescaleDB's `drop_chunks`
(the Apache edition has no retention policies, so ingest's housekeeping calls `run` daily).

Windows come from IocSettings: `retention_samples_days` (status samples), `retention_events_days`
(device events), `retention_dead_letters_days`; 0 keeps everything. A chunk goes only once all of
it is older than the window, so up to one chunk interval more is kept. State changes and the
availability rollup are small and kept for reports.
"""

from datetime import timedelta

import psycopg

from services import keys
from services.settings import IocSettings


def run(conn: psycopg.Connection, settings: IocSettings) -> int:
    """Drop expired chunks; returns how many were dropped."""
    dropped = 0
    with conn.transaction():
        for table, days in (
            ("status_samples", settings.retention_samples_days),
            ("device_events", settings.retention_events_days),
            ("dead_letters", settings.retention_dead_letters_days),
        ):
            if days > 0:
                rows = conn.execute(
                    "SELECT drop_chunks(%s::regclass, older_than => %s::interval)",
                    (table, timedelta(days=days)),
                ).fetchall()
                dropped += len(rows)
        keys.forget_windows(conn)
    return dropped
