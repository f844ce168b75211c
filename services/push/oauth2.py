"""OAuth2 client credentials (RFC 6749 §4.4) for one upstream: a token reused until it expires.

A token is kept until `expires_in` less a margin (so a push never leaves with a token that dies on
the way), or until the receiver answers 401 (then `invalidate` drops it and the next push asks for
a new one). Tokens live in memory only; after a restart the first push asks again.
"""

import logging
import time
from collections.abc import Callable

import httpx

from services.errors import IocError
from services.push.upstreams import OAuth2

log = logging.getLogger(__name__)

# Without `expires_in` (it is only RECOMMENDED) a token is reused for at most this long.
DEFAULT_LIFETIME_S = 3600.0
MARGIN_S = 30.0


class TokenError(IocError):
    """The token endpoint did not give a token: the upstream's last_error."""

    code = "token_error"


class TokenSource:
    def __init__(
        self, cfg: OAuth2, client: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetched = 0  # tokens obtained, for tests and logs

    async def token(self) -> str:
        """A valid access token, from the cache or a new grant."""
        if self._token is not None and self.clock() < self._expires_at:
            return self._token
        return await self._fetch()

    def invalidate(self, token: str) -> None:
        """The receiver refused `token` (401): never send it again."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> str:
        form = {"grant_type": "client_credentials"}
        if self.cfg.scope:
            form["scope"] = self.cfg.scope
        # RFC 6749 §2.3.1: HTTP Basic must be supported by every server; the body is the fallback.
        auth = httpx.BasicAuth(self.cfg.client_id, self.cfg.client_secret)
        if self.cfg.auth == "post":
            form.update(client_id=self.cfg.client_id, client_secret=self.cfg.client_secret)
        started = self.clock()
        try:
            headers = {"Accept": "application/json"}
            if self.cfg.auth == "post":
                r = await self.client.post(self.cfg.token_url, data=form, headers=headers)
            else:
                r = await self.client.post(self.cfg.token_url, data=form, auth=auth, headers=headers)
        except httpx.HTTPError as err:
            raise TokenError(f"token endpoint: {describe(err)}") from err
        if r.status_code != 200:
            raise TokenError(f"token endpoint answered {r.status_code}{_oauth_error(r)}")
        try:
            doc = r.json()
        except ValueError as err:
            raise TokenError("token endpoint answered 200 without a JSON body") from err
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answered without an access_token")
        kind = doc.get("token_type", "bearer")
        if isinstance(kind, str) and kind.lower() != "bearer":
            raise TokenError(f"token endpoint gave a {kind[:20]!r} token; only bearer tokens are supported")
        lifetime = DEFAULT_LIFETIME_S
        expires_in = doc.get("expires_in")
        if isinstance(expires_in, int | float | str) and not isinstance(expires_in, bool):
            try:
                lifetime = float(expires_in)
            except ValueError:
                pass
        # A short-lived token keeps at least half its life; a long one is renewed MARGIN_S early.
        margin = min(MARGIN_S, lifetime / 2)
        self._token, self._expires_at = token, started + max(0.0, lifetime - margin)
        self.fetched += 1
        log.info("upstream token obtained from %s (valid %.0f s)", self.cfg.token_url, lifetime)
        return token


def _oauth_error(r: httpx.Response) -> str:
    """`: invalid_client` from an RFC 6749 §5.2 error body (never the body itself)."""
    try:
        doc = r.json()
    except ValueError:
        return ""
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, str) and err.replace("_", "").isalnum() and len(err) <= 40:
        return f": {err}"
    return ""


def describe(err: httpx.HTTPError) -> str:
    if isinstance(err, httpx.TimeoutException):
        return "timed out"
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
