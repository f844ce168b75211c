"""The restart and kill matrix at full size: a device (paho, persistent session, retrying what
has no PUBACK) streams N QoS 1 statuses at RATE/s while one process is killed, restarted or
frozen a third of the way through; one JSON line per case:
  published, acknowledged (PUBACKs the device got), stored (rows of the case's block),
  duplicates (rows stored twice: the key forbids them), lost (acknowledged, not stored),
  stored_unacknowledged, redelivered (messages ingest committed again), seconds.
Cases: postgres kill/stop, mosquitto term/kill/stop, ingest term/kill/stop, gateway and alerts
kill/stop (tests/faults/matrix.py; tests/faults/test_restart_matrix.py runs it at 2,000).
Before mosquitto-kill the broker is made to save (SIGUSR1), as its autosave has long done in a
running system: a kill -9 loses what the broker took since its last save and had not passed on.
`mosquitto-kill-backlog` shows that loss: ingest frozen for --stop-s, the broker killed while it
holds their messages (acknowledged to the device, not yet saved), restarted, ingest resumed.

    .venv/bin/python bench/restart_matrix.py [--messages 30000] [--rate 1000] [--stop-s 5]
        [--cases mosquitto-term,ingest-kill] [--broker /usr/sbin/mosquitto]

`--broker /usr/sbin/mosquitto` runs Debian's unpatched 2.0.11 (issue 13's losses).
PostgreSQL runs with fsync on (`--fast-unsafe` turns it off).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults.matrix import CASES, KILL_WITH_BACKLOG, Matrix  # noqa: E402
from tests.fix_pg import private_dir  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=30_000)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--stop-s", type=float, default=5.0, help="how long a SIGSTOP lasts")
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--broker", default=None, help="the mosquitto binary (default: the patched one)")
    ap.add_argument("--fast-unsafe", action="store_true", help="PostgreSQL without fsync")
    args = ap.parse_args()
    every = (*CASES, KILL_WITH_BACKLOG)
    wanted = [c for c in every if not args.cases or c.name in args.cases.split(",")]
    if not wanted:
        ap.error(f"no such case; cases: {', '.join(c.name for c in every)}")
    with Matrix(
        private_dir("ioc-bench-matrix-"), fast_unsafe=args.fast_unsafe, broker_binary=args.broker
    ) as m:
        for case in wanted:
            r = m.run(case, n=args.messages, rate=args.rate, stop_s=args.stop_s, settle_s=180)
            print(r.json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
