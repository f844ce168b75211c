"""`ioc ingest`: the device-facing process (MQTT consumer, liveness, ONVIF poller, housekeeping)."""

import argparse
import logging
import signal
import threading

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
    from ingest.service import IngestService, IngestSettings

    context.setup_logging(args.verbose)
    context.data_dir_arg(args.data_dir)
    s = context.settings(IngestSettings, need_db=True, need_mqtt=True)
    if args.id:
        s.ingest_id = args.id
    if args.no_onvif:
        s.ingest_onvif = False
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with IngestService(s) as svc:
        context.settle_heap()
        log.info("ingest %s running", svc.client_id)
        while not stop.wait(0.5):
            pass
        log.info("stopping: finishing the batch in hand")
    return 0
