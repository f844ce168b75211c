"""The gateway's log (issue 13, items 7 and 9): credentials in query strings never reach it, and
what a client sent cannot forge a line of it."""

import io
import logging

import httpx
from uvicorn.logging import AccessFormatter

from cli.cmd_gateway import RedactQueryTokens, log_config
from tests.dashboard.serve import gateway

SECRETS = {
    "password": "hunter2-pw",
    "auth": "AUTH-VALUE",
    "token": "TOKEN-VALUE",
    "access_token": "ACCESS-VALUE",
    "key": "KEY-VALUE",
    "sig": "SIG-VALUE",
    "secret": "SECRET-VALUE",
    "pass%77ord": "ENCODED-NAME-VALUE",  # `password` once decoded, as the server reads it
    "Password": "CASE-VALUE",
}


def _access_line(path_with_query: str) -> str:
    """One access-log record through the gateway's own filter and format."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactQueryTokens())
    handler.setFormatter(AccessFormatter(log_config()["formatters"]["access"]["fmt"], use_colors=False))
    logger = logging.getLogger("test.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path_with_query, "1.1", 200)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_credentials_in_query_strings_are_redacted() -> None:
    query = "&".join(f"{k}={v}" for k, v in SECRETS.items())
    line = _access_line(f"/api/v1/status?limit=5&{query}&village=tay-binh")
    for value in SECRETS.values():
        assert value not in line
    assert "limit=5&password=[redacted]&auth=[redacted]" in line
    assert "pass%77ord=[redacted]" in line and line.endswith('&village=tay-binh HTTP/1.1" 200 OK\n')
    # A name that merely contains a secret's name is not one.
    assert "monkey=banana" in _access_line("/x?monkey=banana")


def test_control_characters_from_clients_cannot_forge_a_log_line() -> None:
    forged = '/a\n2026-12-02 12:00:00,000 INFO:     127.0.0.1:1 - "GET /forged HTTP/1.1" 200\r\x1b[2J\u2028'
    line = _access_line(forged)
    assert line.count("\n") == 1 and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert "/a\\x0a2026-12-02" in line and "\\x0d\\x1b[2J\\u2028" in line
    # The application's own records get the same treatment for what they quote.
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactQueryTokens())
    logger = logging.getLogger("test.app")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("could not write the audit row of %s", "/api/share/v1/x\nFORGED")
    finally:
        logger.removeHandler(handler)
    assert out.getvalue() == "could not write the audit row of /api/share/v1/x\\x0aFORGED\n"


def test_the_real_gateway_log_holds_no_query_credentials(db_url: str) -> None:
    query = "&".join(f"{k}={v}" for k, v in SECRETS.items())
    with gateway(db_url) as base:
        httpx.get(f"{base}/api/v1/status?{query}", timeout=10)
        httpx.get(f"{base}/healthz?sig=SIG-VALUE", timeout=10)
        httpx.post(f"{base}/api/v1/auth/login?password=hunter2-pw", json={}, timeout=10)
    log = gateway.last_log  # type: ignore[attr-defined]
    assert "GET /api/v1/status?password=[redacted]&auth=[redacted]" in log
    assert "/healthz?sig=[redacted]" in log and "/api/v1/auth/login?password=[redacted]" in log
    for value in SECRETS.values():
        assert value not in log
