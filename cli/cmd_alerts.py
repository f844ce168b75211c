"""`ioc alerts`: the alert evaluator and notifier (run any number; exactly one is active)."""

import argparse
import asyncio
import logging
import signal

import psycopg

from cli import context
from services import words
from services.alerts.channels import Channels, DeliveryFailed
from services.alerts.engine import AlertsSettings, Engine, check_config
from services.errors import InvalidInput
from services.push import outbox
from services.push.upstreams import Upstream
from services.push.worker import PushSettings, PushWorker, check_upstreams
from services.workers import Tasks

log = logging.getLogger(__name__)


class Settings(AlertsSettings, PushSettings):
    """`ioc alerts`: the alert evaluator and notifier, and the pushes to upstreams and subscribers."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "alerts",
        parents=[context.common()],
        help="run the alert evaluator (one active per deployment)",
        description="Evaluate alert rules and send notifications, and push data to the province's "
        "upstreams (IOC_UPSTREAMS_FILE) and to NGSI-LD subscribers. Several may run: one holds the "
        "lock and evaluates, one pushes, the others stand by and take over within seconds. Rules, "
        "channels and routes come from IOC_ALERTS_FILE (YAML) and from edits saved through "
        "/api/v1/alert-rules.",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate IOC_ALERTS_FILE and its channel URLs, and IOC_UPSTREAMS_FILE, then exit",
    )
    p.add_argument(
        "--requeue",
        metavar="TARGET",
        help="send a push target's dead (refused) pushes again, e.g. upstream:lgsp-an-giang, then exit",
    )
    p.add_argument("--test", metavar="CHANNEL", help="send a test notification to one channel, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    context.data_dir_arg(args.data_dir)
    context.setup_logging(getattr(args, "verbose", False))
    s = context.settings(Settings, need_db=not (args.check or args.test))
    cfg = check_config(s)
    ups = check_upstreams(s)
    if args.check:
        print(
            f"alert configuration OK: {len(cfg.rules)} rule(s), {len(cfg.channels)} channel(s), "
            f"{len(cfg.routes)} route(s)"
        )
        print(f"upstreams OK: {', '.join(u.id for u in ups) or 'none'}")
        return 0
    if args.test:
        if args.test not in cfg.channels:
            raise InvalidInput(
                f"no channel {args.test!r} in IOC_ALERTS_FILE (have: {', '.join(cfg.channels) or 'none'})"
            )
        return asyncio.run(_send_test(dict(cfg.channels), args.test, s.lang))
    if args.requeue:
        return asyncio.run(_requeue(s, args.requeue))
    return asyncio.run(_serve(s, ups))


async def _requeue(s: Settings, target: str) -> int:
    assert s.database_url is not None
    async with await psycopg.AsyncConnection.connect(s.database_url, autocommit=True) as conn:
        n = await outbox.requeue_dead(conn, target)
    print(f"{n} dead push(es) of {target} queued again (the running pusher sends them next)")
    return 0


async def _send_test(urls: dict[str, str], name: str, lang: str) -> int:
    channels = Channels(urls)
    title, body = words.text("nt.test_title", lang), words.text("nt.test_body", lang)
    try:
        took = await channels.send(name, title, body, "info", {"status": body})
    except DeliveryFailed as err:
        print(f"ioc: {err.message}")
        return 1
    finally:
        await channels.aclose()
    print(f"sent a test notification to {name} in {took:.2f} s")
    return 0


async def _serve(s: Settings, ups: tuple[Upstream, ...]) -> int:
    """Until SIGINT/SIGTERM (exit 0) or the engine or the pusher fails (exit 1: restart me)."""
    engine = Engine(s)
    pusher = PushWorker(s, ups)
    loop = asyncio.get_running_loop()
    async with Tasks() as workers:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, workers.stop.set)
        context.settle_heap()
        log.info("alert evaluator %s starting (standby until it holds the lock)", engine.name)
        workers.start("alerts.engine", lambda: engine.run(workers.stop))
        workers.start("push", lambda: pusher.run(workers.stop))
        await workers.wait()
        # Deliveries in flight finish (no duplicates after a restart), then whatever is left is cancelled.
        await workers.close(grace_s=20)
    workers.raise_failure()
    return 0
