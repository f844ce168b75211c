"""How one outbox row is POSTed: to an upstream (OAuth2 + fixed headers) or an NGSI-LD subscriber."""

import importlib
import logging
import ssl
from datetime import datetime
from types import ModuleType
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from services.push.oauth2 import TokenError, TokenSource, describe
from services.push.outbox import Outcome, Row
from services.push.upstreams import Upstream

log = logging.getLogger(__name__)
USER_AGENT = "commune-ioc/1 (push)"


def _detail(r: httpx.Response) -> str:
    """A short, one-line excerpt of an error answer (what the receiver said, for last_error)."""
    text = " ".join(r.text[:200].split())
    return text[:160]


def tls(up: Upstream) -> ssl.SSLContext | bool:
    """Certificates verified by default; `ca_file` adds a private CA; `insecure` turns it off."""
    if up.insecure:
        return False
    if up.ca_file is not None:
        return ssl.create_default_context(cafile=str(up.ca_file))
    return True


class UpstreamSender:
    """POSTs rows to one upstream with `Authorization: Bearer`, the fixed headers and the row's key."""

    def __init__(self, up: Upstream, client: httpx.AsyncClient | None = None) -> None:
        self.up = up
        self.client = client or httpx.AsyncClient(
            verify=tls(up),
            timeout=up.timeout_s,
            follow_redirects=False,  # a redirect would carry the token elsewhere
            headers={"User-Agent": USER_AGENT},
        )
        self.tokens = TokenSource(up.oauth2, self.client) if up.oauth2 is not None else None

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __call__(self, row: Row) -> Outcome:
        headers = {
            **dict(self.up.headers),
            "Content-Type": "application/json",
            "Idempotency-Key": row.idempotency_key,
        }
        for attempt in (1, 2):
            token = None
            if self.tokens is not None:
                try:
                    token = await self.tokens.token()
                except TokenError as err:
                    return Outcome("retry", err.message)
                headers["Authorization"] = f"Bearer {token}"
            try:
                r = await self.client.post(self.up.url, content=row.body, headers=headers)
            except httpx.HTTPError as err:
                return Outcome("retry", describe(err))
            if r.status_code == 401 and self.tokens is not None and token is not None:
                # The receiver no longer takes this token (revoked, rotated, clock skew): a new one.
                self.tokens.invalidate(token)
                if attempt == 1:
                    continue
                return Outcome("retry", f"HTTP 401 with a new token: {_detail(r)}".rstrip(": "), status=401)
            return Outcome.of_status(r.status_code, r.headers, _detail(r) if r.status_code >= 300 else "")
        raise AssertionError("unreachable")


def ngsi_module() -> ModuleType | None:
    """services.ngsi_subscriptions once it exists (the NGSI-LD side of the push interface)."""
    try:
        return importlib.import_module("services.ngsi_subscriptions")
    except ModuleNotFoundError as err:
        if err.name != "services.ngsi_subscriptions":
            raise
        return None


class NgsiSender:
    """POSTs notifications to the endpoint a subscription names (ETSI GS CIM 009 §5.11)."""

    def __init__(self, pool: AsyncConnectionPool, module: ModuleType, timeout_s: float = 30.0) -> None:
        self.pool = pool
        self.module = module
        self.client = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __call__(self, row: Row) -> Outcome:
        sub_id = row.target.removeprefix("ngsi:")
        async with self.pool.connection() as conn:
            target: Any = await self.module.notification_target(conn, sub_id)
        if target is None:
            return Outcome("drop", f"subscription {sub_id} is gone, inactive or expired")
        headers = {
            "Content-Type": "application/json",
            **dict(target.headers),
            "Idempotency-Key": row.idempotency_key,
        }
        try:
            r = await self.client.post(target.uri, content=row.body, headers=headers)
        except httpx.HTTPError as err:
            return Outcome("retry", describe(err))
        return Outcome.of_status(r.status_code, r.headers, _detail(r) if r.status_code >= 300 else "")

    async def on_attempt(
        self, conn: psycopg.AsyncConnection, target: str, ok: bool, error: str | None, at: datetime
    ) -> None:
        await self.module.record_delivery(conn, target.removeprefix("ngsi:"), ok, error, at)
