"""`ioc ingest`: the device-facing process (MQTT consumer, liveness, ONVIF poller, housekeeping)."""

import argparse
import logging
import signal

from cli import context

log = logging.getLogger("ioc.ingest")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ingest",
        parents=[context.common()],
        help="run the ingest process",
        description="Consume device MQTT messages into TimescaleDB, track liveness, poll ONVIF cameras. "
        "Run several side by side to share the load; give each a distinct stable --id.",
    )
    p.add_argument(
        "--id",
        help="MQTT client id, stable across restarts and distinct per process "
        "(default IOC_INGEST_ID or ioc-ingest-HOSTNAME)",
    )
    p.add_argument("--no-onvif", action="store_true", help="do not poll ONVIF cameras in this process")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Until SIGINT/SIGTERM (a planned stop, exit 0) or a worker fails (exit 1: restart me)."""
    from ingest.service import IngestService, IngestSettings

    context.setup_logging(args.verbose)
    context.data_dir_arg(args.data_dir)
    s = context.settings(IngestSettings, need_db=True, need_mqtt=True)
    if args.id:
        s.ingest_id = args.id
    if args.no_onvif:
        s.ingest_onvif = False
    svc = IngestService(s)
    # The handler only notes the signal. Setting the stop Event from it could deadlock: the handler
    # runs in this thread, which may be holding that Event's lock inside wait() below (a SIGTERM in CI
    # once left ingest waiting forever).
    asked: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: asked.append(signum))
    with svc:
        context.settle_heap()
        log.info("ingest %s running", svc.client_id)
        while not svc.workers.wait(0.5):
            if asked:
                svc.stop.set()
        if svc.workers.failure is None:
            log.info("stopping: finishing the batch in hand")
    svc.workers.raise_failure()
    return 0
