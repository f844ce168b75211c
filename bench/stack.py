"""The IOC as a benchmark runs it: its own PostgreSQL+TimescaleDB and Mosquitto on free loopback
ports in a private temp dir, migrated and seeded, then one `ioc ingest` and one `ioc gateway`."""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cli.embedded import Mosquitto, Postgres
from services.migrate import migrate
from tests.dashboard.serve import gateway
from tests.fix_pg import private_dir

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stack:
    db_url: str
    mqtt_url: str
    gateway_url: str
    base: Path


@contextmanager
def stack(
    prefix: str, seed: Callable[[str], None], ingest_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Start everything; `seed(db_url)` fills the registry before ingest loads it; `ingest_env`: more
    settings for ingest (e.g. IOC_SECRET_KEY, to read the secrets the seed encrypted)."""
    base = private_dir(prefix)
    pg = Postgres(base / "pg", fast_unsafe=True)
    mq = Mosquitto(base / "mqtt")
    ingest: subprocess.Popen[bytes] | None = None
    try:
        pg.start()
        mq.start()
        migrate(pg.url())
        seed(pg.url())
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
        env.update(
            IOC_DATABASE_URL=pg.url(), IOC_MQTT_URL=mq.url(), IOC_DATA_DIR=str(base), PYTHONPATH=str(ROOT)
        )
        env.update(ingest_env or {})
        with (base / "ingest.log").open("wb") as log:
            ingest = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "ingest", "--no-onvif", "--id", "bench"],
                env=env,
                cwd=base,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        with gateway(pg.url(), mqtt_url=mq.url()) as gw:
            yield Stack(pg.url(), mq.url(), gw, base)
    finally:
        if ingest is not None:
            ingest.terminate()
            try:
                ingest.wait(15)
            except subprocess.TimeoutExpired:
                ingest.kill()
        mq.stop()
        pg.stop()


def wait_states(db_url: str, state: str, n: int, timeout_s: float = 120) -> None:
    """Wait until n devices are in `state` (ingest has caught up with what was published)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM device_state WHERE state = %s", (state,)).fetchone()
            if row is not None and row[0] >= n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {row[0] if row else 0} of {n} devices {state} after {timeout_s} s")
            time.sleep(0.2)
