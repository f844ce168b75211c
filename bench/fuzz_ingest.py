"""The long run of ingest's property test (tests/ingest/fuzzing.py) on the real stack: a private
PostgreSQL and Mosquitto, a real ingest (fast or plain paho, per IOC_INGEST_FAST), generated traffic.

Prints JSON: examples tried, messages published, dead letters by reason, and the distinct
failures hypothesis found (each with its shrunk example), so a `make fuzz` target can run it.

    .venv/bin/python bench/fuzz_ingest.py [--examples 2000] [--seed 1]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import psycopg
from hypothesis import HealthCheck, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.embedded import Mosquitto, Postgres  # noqa: E402
from ingest.service import IngestService, IngestSettings  # noqa: E402
from services.migrate import migrate  # noqa: E402
from services.registry_cache import RegistryCache  # noqa: E402
from tests.ingest.conftest import REGISTRY, Publisher  # noqa: E402
from tests.ingest.fuzzing import Checker, Message, traffic  # noqa: E402
from tests.support import load_registry, wait_for  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ioc-fuzz-"))
    base.chmod(0o755)
    pg, broker = Postgres(base / "pg", fast_unsafe=True), Mosquitto(base / "mqtt")
    pg.start()
    broker.start()
    failures: list[str] = []
    t0 = time.perf_counter()
    try:
        url = pg.url()
        migrate(url)
        load_registry(url, REGISTRY)
        fast = os.environ.get("IOC_INGEST_FAST", "true").lower() not in ("false", "0", "no", "off")
        s = IngestSettings(
            database_url=url,
            mqtt_url=broker.url(),
            ingest_id="fuzz-ingest",
            ingest_onvif=False,
            ingest_fast=fast,
        )
        cache = RegistryCache()
        with psycopg.connect(url) as conn:
            cache.refresh_if_due(conn, force=True)
        with IngestService(s) as svc:
            wait_for(lambda: svc.health.check())
            pub = Publisher(broker.url(), "fuzz-pub")
            writer = svc.mqtt._writer  # noqa: SLF001 - watched, as in the test
            checker = Checker(
                url, cache.devices, pub.publish_many, lambda: writer is not None and writer.is_alive()
            )

            @seed(args.seed)
            @settings(
                max_examples=args.examples,
                deadline=None,
                database=None,
                report_multiple_bugs=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(traffic())
            def run(msgs: list[Message]) -> None:
                checker.run(msgs)

            try:
                run()
            except BaseException as err:  # noqa: BLE001 - every failure is reported, none stops the report
                group = getattr(err, "exceptions", None) or [err]
                failures = ["".join(traceback.format_exception_only(e)).strip()[:2000] for e in group]
            pub.close()
        result = {
            "seed": args.seed,
            "fast": fast,
            "examples_tried": checker.examples,
            "messages_published": checker.messages,
            "dead_letters_by_reason": dict(checker.reasons.most_common()),
            "unstorable_details": dict(checker.refusals.most_common()),
            "distinct_failures": len(failures),
            "failures": failures,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(result, indent=2, ensure_ascii=False))
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
