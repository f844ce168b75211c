"""The long HTTP fuzz run (`make fuzz`): the gateway's whole OpenAPI document under schemathesis —
operator routes with an admin's token, /api/share/v1 and /ngsi-ld/v1 with an API key — on its own
PostgreSQL+TimescaleDB, every distinct failure collected instead of stopping at the first.

    .venv/bin/python bench/fuzz_http.py [--examples 200] [--seed N] [--only operator|share]

Prints JSON: examples tried, answers by status, distinct failures (operation, check, message and a
curl command to reproduce each). Exit status 1 when there is any failure.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.embedded import Postgres  # noqa: E402
from services.migrate import migrate  # noqa: E402
from tests.fix_pg import private_dir  # noqa: E402
from tests.gateway import fuzz_http  # noqa: E402

PARTS = {"operator": fuzz_http.OPERATOR, "share": fuzz_http.SHARE}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--examples", type=int, default=200, help="examples per operation and mode (positive, negative)"
    )
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a random one, printed)")
    p.add_argument("--only", choices=sorted(PARTS), help="fuzz only the operator or only the sharing routes")
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    pg = Postgres(private_dir("ioc-fuzz-"), fast_unsafe=True)
    pg.start()
    findings = fuzz_http.Findings()
    operations = 0
    started = time.monotonic()
    try:
        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE fuzz")
        migrate(pg.url("fuzz"))
        with fuzz_http.world(pg.url("fuzz")) as w:
            for name, regex in PARTS.items():
                if args.only in (None, name):
                    operations += fuzz_http.run(
                        w, regex, max_examples=args.examples, seed=seed, collect=findings
                    )
    finally:
        pg.stop()
    print(
        json.dumps(
            {
                "seed": seed,
                "examples_per_operation_and_mode": args.examples,
                "operations": operations,
                "examples": findings.examples,
                "statuses": dict(sorted(findings.statuses.items())),
                "distinct_failures": len(findings.failures),
                "failures": list(findings.failures.values()),
                "duration_s": round(time.monotonic() - started, 1),
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return 1 if findings.failures else 0


if __name__ == "__main__":
    sys.exit(main())
