"""`ioc gateway`: the HTTP API, live feed and dashboard (run any number side by side)."""

import argparse
import copy
import logging
import re
import resource
from typing import Any
from urllib.parse import unquote_plus

import uvicorn
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE

from cli import context, http_protocol
from gateway.settings import GatewaySettings
from services.db import connect
from services.errors import Unavailable

# Credentials a client may put in a query string (the live feed takes `?token=`; browsers
# cannot set headers on a WebSocket; signed media URLs carry `sig=`; a careless client sends
# `password=`): whatever follows them never reaches a log line. Names are matched after
# percent-decoding (`pass%77ord=` is `password=` to the server too).
SECRET_PARAMS = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "password", "passwd", "auth", "sig", "secret"}
)
_QUERY_PARAM = re.compile(r"([?&])([^=&\s\"'#?]*)=([^&\s\"'#]*)")
# Control characters (and the C1 range) in what a client sent would let it forge log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
REDACTED = "[redacted]"


def _redact_param(m: re.Match[str]) -> str:
    name = unquote_plus(m[2]).strip().lower()
    return f"{m[1]}{m[2]}={REDACTED}" if name in SECRET_PARAMS else m[0]


def redact(text: str) -> str:
    return _QUERY_PARAM.sub(_redact_param, text) if "=" in text else text


def escape_controls(text: str) -> str:
    """CR, LF and other control characters as visible escapes: one record stays one line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def _clean(value: object) -> object:
    return escape_controls(redact(value)) if isinstance(value, str) else value


class RedactQueryTokens(logging.Filter):
    """Rewrites credentials in query strings of every record (uvicorn puts the path in `args`)
    and escapes control characters in its arguments (what clients sent: paths, headers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
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
        description="Serve the operators' API, the sharing API (the province, neighbouring communes), the live feed and "
        "the dashboard. "
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
    raise_open_files_limit()
    config = uvicorn.Config(
        app,
        host=host or settings.http_host,
        port=port if port is not None else settings.http_port,
        log_config=log_config(verbose),
        server_header=False,
        ws_per_message_deflate=settings.live_deflate,
        # WebSocket clients would otherwise hold a shutdown open forever.
        timeout_graceful_shutdown=5,
        # Slow or silent clients (issue 13): headers within a deadline (408), idle keep-alive
        # connections closed after 5 s; bodies are timed by gateway.body_limits. Past
        # `http_max_connections` open connections uvicorn itself answers 503: the last guard of
        # the process's file descriptors, far above the load limit of gateway.load_shed.
        http=http_protocol.protocol(settings.http_header_timeout_s),
        timeout_keep_alive=5,
        limit_concurrency=settings.http_max_connections,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    # A worker of the app that fails (the live feed, see gateway.app's lifespan) stops the
    # server; the process then exits 1, so that `ioc up` or systemd starts it again.
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn raises the SIGINT it caught again once it has stopped
        pass
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
    workers = getattr(app.state, "workers", None)
    if workers is not None:
        workers.raise_failure()


def raise_open_files_limit() -> None:
    """Lift the soft limit of open files to the hard one: systemd's default soft limit (1024)
    would refuse connections well before the gateway sheds load."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


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
