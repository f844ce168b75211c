"""The housekeeper: one per deployment, runs rollup, retention and feed pruning."""

import threading
from datetime import UTC, datetime, timedelta

import psycopg

from ingest.housekeeping import Housekeeper
from services import feed
from services.settings import IocSettings
from tests.ingest.conftest import load_registry
from tests.support import scalar, wait_for


def test_housekeeper_rolls_up_drops_old_chunks_and_prunes_the_feed(db_url: str) -> None:
    load_registry(db_url)
    old = datetime.now(UTC) - timedelta(days=200)
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO status_samples VALUES ('spk-1', %s, %s, '{}'), ('spk-1', %s, %s, '{}')",
            (old, old, now, now),
        )
        feed.record_changes(
            conn,
            [
                (
                    "spk-1",
                    "thoai-giang",
                    "trung-binh",
                    "speaker",
                    "online",
                    "unknown",
                    now - timedelta(hours=2),
                    "status received",
                )
            ],
        )
        conn.execute(
            "INSERT INTO feed (seq_first, seq_last, at, items) VALUES (1, 1, now() - interval '2 hours', '[]')"
        )
    stop = threading.Event()
    keeper = Housekeeper(IocSettings(database_url=db_url), lock_id=0x10C_0002)
    t = threading.Thread(target=keeper.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: scalar(db_url, "SELECT count(*) FROM status_samples") == 1, timeout=30)
        wait_for(
            lambda: scalar(db_url, "SELECT count(*) FROM availability_hourly WHERE device_id='spk-1'") >= 2
        )
        wait_for(lambda: scalar(db_url, "SELECT count(*) FROM feed") == 0)
    finally:
        stop.set()
        t.join(10)
    online = scalar(db_url, "SELECT sum(online_s) FROM availability_hourly WHERE device_id='spk-1'")
    assert 3600 <= online <= 3 * 3600


def test_one_housekeeper_leads_and_a_standby_takes_over(db_url: str) -> None:
    settings = IocSettings(database_url=db_url)
    keepers = [Housekeeper(settings, lock_id=0x10C_0002) for _ in range(2)]
    stops = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(target=k.run, args=(s,), daemon=True) for k, s in zip(keepers, stops, strict=True)
    ]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: any(k.is_leader for k in keepers), timeout=30)
        leader = next(i for i, k in enumerate(keepers) if k.is_leader)
        assert not keepers[1 - leader].is_leader
        stops[leader].set()  # the leader stops: its connection closes and the lock is released
        threads[leader].join(15)
        wait_for(lambda: keepers[1 - leader].is_leader, timeout=30)
    finally:
        for s in stops:
            s.set()
        for t in threads:
            t.join(15)
