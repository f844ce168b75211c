"""`ioc gateway`: the HTTP API, live feed and dashboard (run any number side by side)."""

import argparse
import copy
import logging
import re
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from cli import context
from gateway.settings import GatewaySettings
from services.db import connect
from services.errors import Unavailable

# Credentials a client may put in a query string (the live feed takes `?token=`; browsers
# cannot set headers on a WebSocket): whatever follows them never reaches a log line.
_SECRET_QUERY = re.compile(r"([?&](?:token|access_token|api_key|apikey|key)=)[^&\s\"']*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", text)


class RedactQueryTokens(logging.Filter):
    """Rewrites credentials in query strings of every record (uvicorn puts the path in `args`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def log_config(verbose: bool = False) -> dict[str, Any]:
    """uvicorn's logging setup, with timestamps and the redacting filter on every handler."""
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["filters"] = {"redact": {"()": RedactQueryTokens}}
    cfg["formatters"]["default"]["fmt"] = "%(asctime)s %(levelprefix)s %(name)s: %(message)s"
    cfg["formatters"]["access"]["fmt"] = (
        '%(asctime)s %(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
    )
    for handler in cfg["handlers"].values():
        handler["filters"] = ["redact"]
    # The application's own loggers (gateway.*, services.*) go through the same handler.
    cfg["root"] = {"handlers": ["default"], "level": "DEBUG" if verbose else "INFO"}
    return cfg


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "gateway",
        parents=[context.common()],
        help="run the HTTP gateway (API, live feed, dashboard)",
        description="Serve the operators' API, the district sharing API, the live feed and the dashboard. "
        "Any number of gateways may run side by side on one database.",
    )
    p.add_argument("--host", help="address to listen on (default IOC_HTTP_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default IOC_HTTP_PORT or 8000)")
    p.set_defaults(func=run)


def serve(
    settings: GatewaySettings, *, host: str | None = None, port: int | None = None, verbose: bool = False
) -> None:
    """Run uvicorn on the gateway app until SIGINT/SIGTERM."""
    # Imported here: every `ioc` command loads this module, few need FastAPI.
    from gateway.app import create_app

    app = create_app(settings)
    context.settle_heap()
    uvicorn.run(
        app,
        host=host or settings.http_host,
        port=port if port is not None else settings.http_port,
        log_config=log_config(verbose),
        server_header=False,
        ws_per_message_deflate=settings.live_deflate,
        # WebSocket clients would otherwise hold a shutdown open forever.
        timeout_graceful_shutdown=5,
    )


def run(args: argparse.Namespace) -> int:
    context.data_dir_arg(args.data_dir)
    s = context.settings(GatewaySettings, need_db=True)
    assert s.database_url
    try:
        connect(s.database_url).close()
    except Unavailable as err:
        raise Unavailable(f"IOC_DATABASE_URL: {err.message}") from err
    serve(s, host=args.host, port=args.port, verbose=getattr(args, "verbose", False))
    return 0
